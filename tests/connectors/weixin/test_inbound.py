"""normalize() on WeixinMessages shaped as iLink sends them (recorded.json, field names from
Tencent's openclaw-weixin plugin and public iLink clients)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Account, Attachment, ChangeKind, ChatType, Envelope
from connectors.weixin.inbound import delivery_id, normalize

RECORDED: dict[str, Any] = json.loads((Path(__file__).parent / "recorded.json").read_text())
BOT = "e06c1ba7f1b4@im.bot"
ACCOUNT = Account(id="acc-1", user_id="u-1", platform="weixin", external_id=BOT, name="bot", credentials={})


def envelope(name_or_payload: Any) -> Envelope:
    payload = RECORDED[name_or_payload] if isinstance(name_or_payload, str) else name_or_payload
    return Envelope("weixin", "acc-1", delivery_id(payload) if isinstance(payload, dict) else "?", 1764489999000, payload)


def only(name: str) -> Any:
    changes = normalize(envelope(name), ACCOUNT)
    assert len(changes) == 1
    return changes[0]


def test_text_in_a_direct_chat() -> None:
    change = only("text")
    m = change.message
    assert (change.kind, change.chat_id, change.native_id) == (ChangeKind.UPSERT, "o9cq80Alice@im.wechat", "7446285013385318401")
    assert (m.chat_type, m.sender_id, m.is_self, m.sent_at) == (ChatType.DM, "o9cq80Alice@im.wechat", False, 1764480000123)
    assert m.text == "你好 👋 are you there?" and m.content_type == "text"
    assert m.attachments == [] and m.reply_to_id is None and m.thread_id is None and m.mentions == []


def test_image() -> None:
    m = only("image").message
    assert m.content_type == "image" and m.text == ""
    assert m.attachments == [Attachment(name=None, url=None, content_type="image/jpeg", size=80311)]


def test_voice_keeps_the_transcript() -> None:
    m = only("voice").message
    assert (m.content_type, m.text) == ("voice", "明天见")
    assert m.attachments[0].content_type == "audio/silk"


def test_file_with_a_cdn_url() -> None:
    m = only("file").message
    assert m.content_type == "file"
    assert m.attachments == [Attachment(name="report.pdf", content_type=None, size=48213,
                                        url="https://novac2c.cdn.weixin.qq.com/c2c/download?encrypted_query_param=ZmlsZQ%3D%3D")]


def test_video() -> None:
    m = only("video").message
    assert m.content_type == "video" and m.attachments[0].size == 1048576


def test_quote_is_a_reply() -> None:
    m = only("quote").message
    assert m.reply_to_id == "7446285013385318401" and m.text == "this one"


def test_group_message() -> None:
    change = only("group")
    assert change.chat_id == "48213377@chatroom" and change.message.chat_type == ChatType.GROUP
    assert change.message.sender_id == "o9cq80Bob@im.wechat"


def test_recall_is_a_delete_with_its_own_delivery_id() -> None:
    change = only("recalled")
    assert (change.kind, change.chat_id, change.native_id, change.at) == (
        ChangeKind.DELETE, "o9cq80Alice@im.wechat", "7446285013385318401", 1764480060000)
    assert delivery_id(RECORDED["recalled"]) == "7446285013385318401:deleted" != delivery_id(RECORDED["text"])


def test_own_message_is_self_under_our_client_id() -> None:
    change = only("bot_reply")
    m = change.message
    assert (change.chat_id, change.native_id, m.is_self) == ("o9cq80Alice@im.wechat", "loomi-0123456789abcdef01234567", True)
    by_id = dict(RECORDED["text"], from_user_id=BOT)  # a user-typed message from our own id (the owner on the bot)
    assert normalize(envelope(by_id), ACCOUNT)[0].message.is_self is True


def test_reply_still_generating_is_skipped() -> None:
    assert normalize(envelope("generating"), ACCOUNT) == []


@pytest.mark.parametrize("payload", [None, [], {"message_id": "1", "from_user_id": "x"}, {"message_id": 1},
                                     {"message_id": True, "from_user_id": "x"}, {"seq": 3, "from_user_id": ""}])
def test_unreadable_payloads_raise(payload: Any) -> None:
    with pytest.raises(ValueError):
        normalize(envelope(payload), ACCOUNT)


def test_odd_items_are_tolerated() -> None:
    msg = dict(RECORDED["text"], item_list=[None, {"type": 99}, {"type": 1, "text_item": None}, {"type": 2}])
    m = normalize(envelope(msg), ACCOUNT)[0].message
    assert m.text == "" and m.content_type == "image" and m.attachments == [Attachment(content_type="image/jpeg")]
