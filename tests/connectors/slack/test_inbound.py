"""normalize() on recorded Events API bodies (recorded.json) and on backfill records: pure."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Account, Attachment, ChangeKind, ChatType, Envelope, Reaction
from connectors.slack.inbound import normalize, ts_ms

RECORDED: dict[str, Any] = json.loads((Path(__file__).parent / "recorded.json").read_text())
ACCOUNT = Account(id="acct_slack", user_id="usr_1", platform="slack", external_id="T0FAKE", name="Fake",
                  credentials={"access_token": "xoxb-1", "bot_user_id": "UBOT", "bot_id": "BBOT"})


def envelope(payload: Any, source: str = "listen") -> Envelope:
    delivery = payload.get("event_id", "x") if isinstance(payload, dict) else "x"
    return Envelope("slack", "acct_slack", delivery, 0, payload, source)


def one(name: str, account: Account = ACCOUNT) -> Any:
    changes = normalize(envelope(copy.deepcopy(RECORDED[name])), account)
    assert len(changes) == 1
    return changes[0]


def test_ts_to_ms() -> None:
    assert ts_ms("1700000000.123456") == 1700000000123
    assert ts_ms("1700000000.1") == 1700000000100
    assert ts_ms("1700000000") == 1700000000000
    for bad in (None, "", "abc", "1.2.3", True, {"ts": 1}):
        with pytest.raises(ValueError):
            ts_ms(bad)


def test_message() -> None:
    change = one("message")
    msg = change.message
    assert (change.kind, change.chat_id, change.native_id) == (ChangeKind.UPSERT, "C1", "1700000000.123456")
    assert (msg.chat_id, msg.native_id, msg.sent_at) == ("C1", "1700000000.123456", 1700000000123)
    assert (msg.chat_type, msg.thread_id, msg.reply_to_id) == (ChatType.CHANNEL, None, None)
    assert (msg.sender_id, msg.sender_name, msg.is_self) == ("U1", "alice", False)
    assert msg.text.startswith("hi <@U2|bob>") and msg.content_type == "text"
    assert msg.mentions == ["U2", "W3"]
    assert msg.attachments == [] and msg.edited_at is None


def test_chat_types() -> None:
    assert one("dm").message.chat_type == ChatType.DM
    assert one("mpim").message.chat_type == ChatType.GROUP
    assert one("file_share").message.chat_type == ChatType.CHANNEL  # channel_type "group": a private channel


def test_thread_reply_and_parent() -> None:
    reply = one("thread_reply").message
    assert (reply.thread_id, reply.reply_to_id, reply.sender_id) == ("1700000000.123456", "1700000000.123456", "U2")
    history = {"type": "history", "channel": "C1", "channel_type": "channel", "channel_name": "general",
               "message": RECORDED["thread_parent_history"]}
    (parent,) = normalize(envelope(history, "backfill"), ACCOUNT)
    assert parent.message.thread_id == "1700000000.123456"  # thread_ts == ts, but it has replies
    assert parent.message.reply_to_id is None and parent.message.chat_name == "general"
    lonely = dict(RECORDED["thread_parent_history"], reply_count=0, latest_reply=None, thread_ts=None)
    (plain,) = normalize(envelope(dict(history, message=lonely), "backfill"), ACCOUNT)
    assert plain.message.thread_id is None


def test_file_share() -> None:
    msg = one("file_share").message
    assert msg.content_type == "file" and msg.text == ""
    assert msg.attachments == [
        Attachment("report.pdf", "https://files.slack.com/files-pri/T0FAKE-F1/report.pdf", "application/pdf", 52061),
        Attachment("cat.png", "https://files.slack.com/files-pri/T0FAKE-F2/cat.png", "image/png", 1024),
    ]


def test_message_changed_is_an_edit() -> None:
    change = one("message_changed")
    assert (change.kind, change.chat_id, change.native_id) == (ChangeKind.EDIT, "C1", "1700000000.123456")
    assert change.at == 1700000009999  # edited.ts
    assert change.message.text == "hi <@U2>, edited" and change.message.mentions == ["U2"]
    assert change.message.edited_at == 1700000009999 and change.message.sent_at == 1700000000123
    unfurl = one("message_changed_unfurl")
    assert unfurl.kind == ChangeKind.EDIT and unfurl.at == 1700000011000  # no `edited`: event_ts


def test_tombstone_edit_is_a_delete() -> None:
    payload = copy.deepcopy(RECORDED["message_changed"])
    payload["event"]["message"] |= {"subtype": "tombstone", "text": "This message was deleted.", "user": "USLACKBOT"}
    (change,) = normalize(envelope(payload), ACCOUNT)
    assert (change.kind, change.native_id, change.message) == (ChangeKind.DELETE, "1700000000.123456", None)


def test_message_deleted() -> None:
    change = one("message_deleted")
    assert (change.kind, change.chat_id, change.native_id) == (ChangeKind.DELETE, "C1", "1700000000.123456")
    assert change.at == 1700000012000 and change.message is None


def test_bot_echo_is_self() -> None:
    assert one("bot_echo", ACCOUNT).message.is_self is True  # from the account's credentials
    assert one("bot_echo").message.sender_name == "loomi"
    other = Account(**{**ACCOUNT.__dict__, "credentials": {"bot_user_id": "UOTHER", "bot_id": "BOTHER2"}})
    assert one("bot_echo", other).message.is_self is False
    assert one("message", ACCOUNT).message.is_self is False
    legacy = one("legacy_bot_message", ACCOUNT).message
    assert (legacy.sender_id, legacy.sender_name, legacy.is_self, legacy.content_type) == (
        "BOTHER", "deploybot", False, "text")
    by_bot_id = Account(**{**ACCOUNT.__dict__, "credentials": {"bot_id": "BOTHER"}})
    assert one("legacy_bot_message", by_bot_id).message.is_self is True


def test_system_messages_are_kept_as_system() -> None:
    msg = one("channel_join").message
    assert msg.content_type == "system" and msg.mentions == ["U2"]


@pytest.mark.parametrize("name", ["message_replied"])
def test_other_events_give_nothing(name: str) -> None:
    assert normalize(envelope(RECORDED[name]), ACCOUNT) == []


def test_other_payload_types_give_nothing() -> None:
    assert normalize(envelope({"type": "app_rate_limited", "team_id": "T0FAKE", "minute_rate_limited": 1}), ACCOUNT) == []


@pytest.mark.parametrize("payload", [
    "garbage",
    [],
    {},
    {"type": 7},
    {"type": "event_callback"},
    {"type": "event_callback", "event": "message"},
    {"type": "event_callback", "event": {"type": "message", "text": "no channel", "ts": "1.2"}},
    {"type": "event_callback", "event": {"type": "message", "channel": "C1", "text": "no ts"}},
    {"type": "event_callback", "event": {"type": "message", "channel": "C1", "ts": "not-a-ts"}},
    {"type": "event_callback", "event": {"type": "message", "channel": "C1", "ts": "1.2", "text": 5}},
    {"type": "event_callback", "event": {"type": "message", "subtype": "message_changed", "channel": "C1"}},
    {"type": "event_callback", "event": {"type": "message", "subtype": "message_deleted", "channel": "C1",
                                         "ts": "1.2"}},
    {"type": "history", "channel": "C1"},
    {"unreadable_frame": {"envelope_id": "e1"}},
])
def test_garbage_raises_value_error(payload: Any) -> None:
    with pytest.raises(ValueError):
        normalize(envelope(payload), ACCOUNT)


def test_reactions_and_renames() -> None:
    added = {"type": "event_callback", "team_id": "T0FAKE", "event_id": "Ev1", "event": {
        "type": "reaction_added", "user": "U1", "reaction": "thumbsup", "event_ts": "1700000001.000100",
        "item": {"type": "message", "channel": "C1", "ts": "1700000000.123456"}}}
    (change,) = normalize(envelope(added), ACCOUNT)
    assert (change.kind, change.chat_id, change.native_id, change.at) == (
        ChangeKind.REACTION, "C1", "1700000000.123456", 1700000001000)
    assert change.reaction == Reaction("thumbsup", "U1", True)
    removed = copy.deepcopy(added)
    removed["event"]["type"] = "reaction_removed"
    assert normalize(envelope(removed), ACCOUNT)[0].reaction == Reaction("thumbsup", "U1", False)
    on_file = copy.deepcopy(added)
    on_file["event"]["item"] = {"type": "file", "file": "F1"}
    assert normalize(envelope(on_file), ACCOUNT) == []
    rename = {"type": "event_callback", "team_id": "T0FAKE", "event_id": "Ev2",
              "event": {"type": "channel_rename", "channel": {"id": "C1", "name": "launch", "created": 1}}}
    (chat,) = normalize(envelope(rename), ACCOUNT)
    assert (chat.kind, chat.chat_id, chat.chat.name) == (ChangeKind.CHAT, "C1", "launch")
