"""normalize() on Updates as the Bot API sends them (updates.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Account, Attachment, ChangeKind, ChatType, Envelope, Reaction
from connectors.telegram.inbound import normalize as normalize_update

UPDATES: dict[str, Any] = json.loads((Path(__file__).parent / "updates.json").read_text())
BOT_ID = 123456
ACCOUNT = Account("acc-1", "user-1", "telegram", str(BOT_ID), "@loomi_test_bot", {})


def normalize(env: Envelope, account: Account = ACCOUNT) -> list[Any]:
    return normalize_update(env, account)


def envelope(name_or_payload: Any) -> Envelope:
    """A recorded update by name, or any payload as given."""
    payload = UPDATES[name_or_payload] if isinstance(name_or_payload, str) else name_or_payload
    delivery = str(payload.get("update_id")) if isinstance(payload, dict) else "?"
    return Envelope("telegram", "acc-1", delivery, 1717999999000, payload)


def only(name: str) -> Any:
    changes = normalize(envelope(name))
    assert len(changes) == 1
    return changes[0]


def test_private_message() -> None:
    change = only("private_text")
    m = change.message
    assert (change.kind, change.chat_id, change.native_id) == (ChangeKind.UPSERT, "5001", "15")
    assert (m.chat_id, m.native_id, m.chat_type, m.chat_name) == ("5001", "15", ChatType.DM, "Alice Smith")
    assert (m.sender_id, m.sender_name, m.is_self) == ("5001", "Alice Smith", False)
    assert m.sent_at == 1717000000 * 1000 and m.edited_at is None
    assert m.text == "👋 hi @loomi_test_bot, ask @bob_jones" and m.content_type == "text"
    assert m.mentions == ["@loomi_test_bot", "@bob_jones"]  # offsets are UTF-16 units: 👋 counts 2
    assert m.thread_id is None and m.reply_to_id is None and m.attachments == []


def test_group_reply_with_text_mention() -> None:
    m = only("group_reply").message
    assert (m.chat_id, m.chat_type, m.chat_name) == ("-1001500000001", ChatType.GROUP, "Team chat")
    assert m.reply_to_id == "87" and m.thread_id is None
    assert (m.sender_id, m.sender_name) == ("5002", "Bob")
    assert m.mentions == ["5003"]  # a text_mention names a user without a username: keep the id


def test_topic_message_is_threaded_not_a_reply() -> None:
    m = only("topic_message").message
    assert (m.chat_type, m.thread_id) == (ChatType.GROUP, "400")
    assert m.reply_to_id is None  # the implicit reply to the topic's creation message


def test_explicit_reply_inside_a_topic() -> None:
    m = only("topic_reply").message
    assert (m.thread_id, m.reply_to_id) == ("400", "412")


def test_edited_message() -> None:
    change = only("edited_message")
    assert (change.kind, change.chat_id, change.native_id) == (ChangeKind.EDIT, "5001", "15")
    assert change.at == 1717000300 * 1000 and change.message.edited_at == change.at
    assert change.message.text == "hi there" and change.message.sent_at == 1717000000 * 1000


def test_photo_with_caption() -> None:
    m = only("photo_with_caption").message
    assert (m.chat_type, m.chat_name) == (ChatType.GROUP, "Old group")  # a basic group
    assert m.text == "whiteboard @alice_s" and m.content_type == "image"
    assert m.attachments == [Attachment(name=None, url=None, content_type="image/jpeg", size=80311)]  # the largest size
    assert m.mentions == ["@alice_s"]  # from caption_entities


def test_document() -> None:
    m = only("document").message
    assert m.text == "" and m.content_type == "file"
    assert m.attachments == [Attachment(name="report.pdf", url=None, content_type="application/pdf", size=52344)]


def test_channel_post_and_its_edit() -> None:
    post = only("channel_post")
    m = post.message
    assert (post.kind, m.chat_type, m.chat_name, m.native_id) == (ChangeKind.UPSERT, ChatType.CHANNEL, "Announcements", "7")
    assert (m.sender_id, m.sender_name) == ("-1001500000003", "Announcements")
    edit = only("edited_channel_post")
    assert (edit.kind, edit.native_id, edit.at, edit.message.text) == (ChangeKind.EDIT, "7", 1717000660000, "We ship on Monday")


def test_message_on_behalf_of_a_chat_uses_sender_chat() -> None:
    m = only("anonymous_admin").message
    assert (m.sender_id, m.sender_name, m.is_self) == ("-1001500000001", "Team chat", False)


def test_is_self_from_the_accounts_bot_id() -> None:
    update = json.loads(json.dumps(UPDATES["private_text"]))
    update["message"]["from"] = {"id": BOT_ID, "is_bot": True, "first_name": "Loomi", "username": "loomi_test_bot"}
    assert normalize(envelope(update))[0].message.is_self is True
    other_bot = Account("acc-2", "user-1", "telegram", "777", "@other_bot", {})
    assert normalize(envelope(update), other_bot)[0].message.is_self is False  # the same update seen by another bot
    assert normalize(envelope("private_text"))[0].message.is_self is False
    assert "_loomi" not in json.dumps(update)  # nothing is smuggled into the payload


@pytest.mark.parametrize("name", ["callback_query", "my_chat_member"])
def test_other_update_kinds_give_nothing(name: str) -> None:
    assert normalize(envelope(name)) == []


def test_reactions_are_the_difference_between_old_and_new() -> None:
    update = {"update_id": 9, "message_reaction": {
        "chat": {"id": -100123, "type": "supergroup", "title": "Team"}, "message_id": 42, "date": 1717000000,
        "user": {"id": 5001, "is_bot": False, "first_name": "Alice"},
        "old_reaction": [{"type": "emoji", "emoji": "👍"}],
        "new_reaction": [{"type": "emoji", "emoji": "🔥"}, {"type": "custom_emoji", "custom_emoji_id": "5368"}]}}
    changes = normalize(envelope(update))
    assert [(c.kind, c.chat_id, c.native_id, c.at) for c in changes] == [(ChangeKind.REACTION, "-100123", "42", 1717000000000)] * 3
    assert [c.reaction for c in changes] == [Reaction("🔥", "5001", True), Reaction("5368", "5001", True), Reaction("👍", "5001", False)]
    with pytest.raises(ValueError):
        normalize(envelope({"update_id": 1, "message_reaction": {"chat": {"id": 1}}}))  # no message_id


def test_a_renamed_group_is_a_chat_change() -> None:
    update = {"update_id": 10, "message": {"message_id": 7, "date": 1717000000, "chat": {"id": -5, "type": "group", "title": "New"},
                                           "from": {"id": 5001, "is_bot": False, "first_name": "Alice"}, "new_chat_title": "New"}}
    upsert, chat = normalize(envelope(update))
    assert upsert.kind is ChangeKind.UPSERT and (chat.kind, chat.chat_id, chat.chat.name) == (ChangeKind.CHAT, "-5", "New")


@pytest.mark.parametrize(
    "payload",
    [
        b"\x00garbage",
        None,
        ["update_id", 1],
        {"message": UPDATES["private_text"]["message"]},  # no update_id
        {"update_id": "730001", "message": UPDATES["private_text"]["message"]},
        {"update_id": True, "message": UPDATES["private_text"]["message"]},
        {"update_id": 1, "message": "hello"},
        {"update_id": 1, "message": {"message_id": 1, "date": 1717000000}},  # no chat
        {"update_id": 1, "edited_message": {"message_id": 1, "chat": {"id": 5, "type": "private"}}},  # no date
    ],
)
def test_unreadable_payloads_raise_value_error(payload: Any) -> None:
    with pytest.raises(ValueError):
        normalize(envelope(payload))


def test_normalize_is_pure() -> None:
    payload = UPDATES["group_reply"]
    before = json.dumps(payload, sort_keys=True)
    first, second = normalize(envelope(payload)), normalize(envelope(payload))
    assert first == second and json.dumps(payload, sort_keys=True) == before
