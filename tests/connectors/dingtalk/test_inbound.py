"""normalize on recorded robot payloads (tests/connectors/dingtalk/recorded.json)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from connectors.base import ChangeKind, ChatType, Envelope, Message
from connectors.dingtalk.connector import DingTalkConnector
from connectors.dingtalk.inbound import stored_payload
from tests.connectors.dingtalk.conftest import make_account

RECORDED: dict[str, Any] = json.loads((Path(__file__).parent / "recorded.json").read_text())


def message(name: str) -> Message:
    payload = copy.deepcopy(RECORDED[name])
    changes = DingTalkConnector.normalize(None, Envelope("dingtalk", "acc", payload["msgId"], 1, payload),  # type: ignore[arg-type]
                                          make_account())
    assert len(changes) == 1 and changes[0].kind is ChangeKind.UPSERT
    assert changes[0].message is not None and changes[0].native_id == payload["msgId"]
    return changes[0].message


def test_dm_text() -> None:
    m = message("dm_text")
    assert (m.chat_id, m.chat_type, m.chat_name) == ("user:manager4961", ChatType.DM, "Alice Wang")
    assert (m.sender_id, m.sender_name, m.text, m.content_type) == ("manager4961", "Alice Wang", "hello robot", "text")
    assert m.sent_at == 1732944600123 and not m.is_self and m.mentions == [] and m.reply_to_id is None


def test_group_mention_uses_the_open_conversation_id() -> None:
    m = message("group_at")
    assert (m.chat_id, m.chat_type, m.chat_name) == ("group:cidGroupXYZ==", ChatType.GROUP, "Project Phoenix")
    assert m.mentions == ["$:LWCP_v1:$botUser01", "staff-carol"]
    assert m.text == "please ask @Carol about the launch"


def test_quoted_reply() -> None:
    m = message("quote_reply")
    assert m.reply_to_id == "msgG001" and m.text == "next Tuesday" and m.thread_id is None


@pytest.mark.parametrize(
    ("name", "content_type", "text", "attachment"),
    [
        ("rich_text", "text", "look at this\nnice?", (None, "image")),
        ("picture", "image", "", (None, "image")),
        ("file", "file", "", ("Q4 plan.pdf", None)),
        ("audio", "voice", "call me back", (None, "audio")),
        ("video", "video", "", (None, "video/mp4")),
    ],
)
def test_media(name: str, content_type: str, text: str, attachment: tuple[str | None, str | None]) -> None:
    m = message(name)
    assert (m.content_type, m.text) == (content_type, text)
    assert [(a.name, a.content_type, a.url) for a in m.attachments] == [(*attachment, None)]


def test_sender_outside_the_organisation_has_no_staff_id() -> None:
    m = message("external_sender")
    assert m.chat_id == "user:$:LWCP_v1:$partner" and m.sender_id == "$:LWCP_v1:$partner"


def test_unknown_message_types_are_kept_as_other() -> None:
    m = message("interactive_card")
    assert (m.content_type, m.text, m.attachments) == ("other", "", [])


def test_session_webhook_is_not_stored() -> None:
    kept = stored_payload(RECORDED["dm_text"])
    assert "sessionWebhook" not in kept and kept["sessionWebhookExpiredTime"] == 1732950000000
    assert "SECRET" not in json.dumps(kept)


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"msgId": "m1", "conversationType": "3", "createAt": 1},
        {"msgId": "m1", "conversationType": "2", "createAt": 1},  # group without conversationId
        {"msgId": "m1", "conversationType": "1", "senderStaffId": "s", "createAt": "yesterday"},
        {"unreadable_frame": {"messageId": "x"}},
    ],
)
def test_unreadable_payloads_raise(payload: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        DingTalkConnector.normalize(None, Envelope("dingtalk", "acc", "d", 1, payload), make_account())  # type: ignore[arg-type]
