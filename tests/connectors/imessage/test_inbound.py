"""normalize on rows read (by the connector's own reader) from a chat.db with the real schema."""

from __future__ import annotations

import time

import pytest

from connectors.base import ChangeKind, ChatType, Envelope
from connectors.imessage.chatdb import open_readonly, read_after
from connectors.imessage.inbound import apple_ms, normalize
from tests.connectors.imessage.conftest import ALICE, BOB, account
from tests.fakes.imessage import ChatDb


def changes(chatdb: ChatDb, after: int = 0) -> list:
    db = open_readonly(chatdb.path)
    try:
        rows = read_after(db, after, 100)
    finally:
        db.close()
    out = []
    for row in rows:
        out += normalize(Envelope("imessage", "acct-im-1", row["guid"], 0, row), account(chatdb.path))
    return out


def test_text_from_attributed_body_and_from_the_text_column(chatdb: ChatDb) -> None:
    chat = chatdb.chat([ALICE])
    at = 1_700_000_000
    g1 = chatdb.message(chat, ALICE, "only in attributedBody ✓", at=at)
    g2 = chatdb.message(chat, ALICE, "in the text column", in_text_column=True)
    first, second = changes(chatdb)
    assert (first.kind, first.native_id, first.chat_id) == (ChangeKind.UPSERT, g1, f"iMessage;-;{ALICE}")
    msg = first.message
    assert msg.text == "only in attributedBody ✓" and msg.sender_id == ALICE and msg.is_self is False
    assert msg.chat_type is ChatType.DM and msg.chat_name == ALICE and msg.sent_at == 1_700_000_000_000
    assert second.native_id == g2 and second.message.text == "in the text column"


def test_my_own_messages_and_a_named_group(chatdb: ChatDb) -> None:
    group = chatdb.chat([ALICE, BOB], name="Climbing 🧗")
    chatdb.message(group, None, "I'm in")
    chatdb.message(group, BOB, "me too")
    mine, bobs = changes(chatdb)
    assert mine.message.is_self and mine.message.sender_id == "me@icloud.com"
    assert mine.chat_id == bobs.chat_id == chatdb.chat_guid(group) and mine.chat_id.startswith("iMessage;+;chat")
    assert (bobs.message.chat_type, bobs.message.chat_name, bobs.message.sender_id) == (ChatType.GROUP, "Climbing 🧗", BOB)


def test_replies_tapbacks_and_their_removal(chatdb: ChatDb) -> None:
    chat = chatdb.chat([ALICE])
    parent = chatdb.message(chat, None, "dinner at 8?")
    chatdb.message(chat, ALICE, "yes!", reply_to=parent)
    chatdb.react(chat, ALICE, parent, "👍")
    chatdb.react(chat, ALICE, parent, "👍", remove=True)
    chatdb.react(chat, None, parent, "❤️")
    _, reply, liked, unliked, loved = changes(chatdb)
    assert reply.message.reply_to_id == parent
    assert (liked.kind, liked.native_id, liked.reaction.emoji, liked.reaction.sender_id, liked.reaction.added) == (
        ChangeKind.REACTION, parent, "👍", ALICE, True)
    assert unliked.reaction.added is False and unliked.native_id == parent
    assert loved.reaction.emoji == "❤️" and loved.reaction.sender_id == "me@icloud.com"


def test_mentions(chatdb: ChatDb) -> None:
    group = chatdb.chat([ALICE, BOB], name="Team")
    chatdb.message(group, ALICE, "@Bob can you check?", mentions={"@Bob": BOB})
    (change,) = changes(chatdb)
    assert change.message.text == "@Bob can you check?" and change.message.mentions == [BOB]


def test_attachments_and_a_group_rename(chatdb: ChatDb) -> None:
    group = chatdb.chat([ALICE, BOB], name="Old name")
    chatdb.message(group, ALICE, "\ufffc", attachment={"name": "IMG_0001.HEIC", "mime_type": "image/heic", "size": 2_048_000})
    chatdb.message(group, ALICE, None, item_type=2, group_title="New name")
    chatdb.message(group, ALICE, None, item_type=1)  # someone joined: not a message
    photo, rename = changes(chatdb)
    assert photo.message.text == "" and photo.message.content_type == "attachment"
    (file,) = photo.message.attachments
    assert (file.name, file.content_type, file.size) == ("IMG_0001.HEIC", "image/heic", 2_048_000)
    assert file.url.startswith("file:~/Library/Messages/Attachments/") and file.url.endswith("/IMG_0001.HEIC")
    assert rename.kind is ChangeKind.CHAT and rename.chat.name == "New name" and rename.chat_id == chatdb.chat_guid(group)


def test_apple_dates() -> None:
    assert apple_ms(0) == 978_307_200_000
    assert apple_ms(721_692_800_500_000_000) == 1_699_999_999_999 + 501  # nanoseconds since 2001
    assert apple_ms(300_000_000) == 1_278_307_200_000  # seconds, as before High Sierra
    assert abs(apple_ms(int((time.time() - 978_307_200) * 1e9)) - time.time() * 1000) < 5


def test_an_orphan_row_in_no_chat_is_skipped() -> None:
    assert normalize(Envelope("imessage", "a", "d", 0, {"guid": "x", "date": 1, "text": "lost"})) == []


@pytest.mark.parametrize("payload", [
    {"chat_guid": "iMessage;-;a", "date": 1, "text": "no guid"},
    {"guid": "x", "chat_guid": "iMessage;-;a", "date": "yesterday"},
    {"guid": "x", "chat_guid": "iMessage;-;a", "date": 1, "attributed_body": "YWJj"},  # not a typedstream
    {"guid": "x", "chat_guid": "iMessage;-;a", "date": 1, "associated_message_type": 2001},  # tapback with no target
])
def test_unreadable_rows_raise_value_error(payload: dict) -> None:
    with pytest.raises(ValueError):
        normalize(Envelope("imessage", "a", "d", 0, payload))
