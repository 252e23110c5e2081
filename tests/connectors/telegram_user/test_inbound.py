"""normalize() on the JSON form: Telethon's `to_dict()` of TL messages as Telegram sends them
(a channel post, a supergroup message with a document and an @username mention after an emoji,
a service message), made JSON-safe by the connector."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from telethon.tl import types

from connectors.base import Account, ChangeKind, ChatType, Envelope
from connectors.telegram_user.client import json_safe
from connectors.telegram_user.inbound import normalize

ME = 777000001
ACCOUNT = Account(id="a1", user_id="u1", platform="telegram_user", external_id=str(ME), name="@me", credentials={})
WHEN = dt.datetime(2026, 3, 1, 9, 30, tzinfo=dt.timezone.utc)


def env(kind: str, chat_id: str, message: types.TypeMessage, chat: dict | None = None, sender: dict | None = None) -> Envelope:
    payload = {"kind": kind, "chat_id": chat_id, "chat": chat, "sender": sender, "message": json_safe(message.to_dict())}
    return Envelope("telegram_user", "a1", "d", 0, json.loads(json.dumps(payload)))


def test_a_channel_post_with_a_document() -> None:
    doc = types.Document(id=42, access_hash=1, file_reference=b"\x00\xff", date=WHEN, mime_type="application/pdf",
                         size=20480, dc_id=2, attributes=[types.DocumentAttributeFilename(file_name="minutes.pdf")])
    post = types.Message(id=310, peer_id=types.PeerChannel(1234567890), date=WHEN, message="Minutes attached",
                         post=True, media=types.MessageMediaDocument(document=doc))
    (change,) = normalize(env("message", "-1001234567890", post, {"type": "channel", "title": "Announcements"}), ACCOUNT)
    m = change.message
    assert (change.chat_id, m.chat_type, m.chat_name, m.native_id) == ("-1001234567890", ChatType.CHANNEL, "Announcements", "310")
    assert m.sender_id is None and not m.is_self and m.sent_at == int(WHEN.timestamp() * 1000)
    assert [(a.name, a.content_type, a.size) for a in m.attachments] == [("minutes.pdf", "application/pdf", 20480)]


def test_a_supergroup_mention_counts_utf16_offsets() -> None:
    text = "🎉 @loomi_me thanks"  # the emoji is two UTF-16 code units
    msg = types.Message(id=77, peer_id=types.PeerChannel(99), date=WHEN, message=text, from_id=types.PeerUser(5550001),
                        entities=[types.MessageEntityMention(offset=3, length=9)],
                        reply_to=types.MessageReplyHeader(reply_to_msg_id=70, reply_to_top_id=60, forum_topic=True))
    (change,) = normalize(env("message", "-10099", msg, {"type": "megagroup", "title": "Team"},
                              {"id": "5550001", "name": "Alice", "username": "alice"}), ACCOUNT)
    m = change.message
    assert m.chat_type is ChatType.GROUP and m.mentions == ["@loomi_me"]
    assert (m.reply_to_id, m.thread_id, m.sender_id, m.sender_name) == ("70", "60", "5550001", "Alice")


def test_an_edit_and_a_delete() -> None:
    msg = types.Message(id=5, peer_id=types.PeerUser(5550001), date=WHEN, message="fixed", out=True,
                        edit_date=WHEN + dt.timedelta(minutes=2))
    (change,) = normalize(env("edit", "5550001", msg), ACCOUNT)
    assert change.kind is ChangeKind.EDIT and change.at == int((WHEN + dt.timedelta(minutes=2)).timestamp() * 1000)
    assert change.message.is_self and change.message.sender_id == str(ME)
    deleted = Envelope("telegram_user", "a1", "d", 0, {"kind": "delete", "chat_id": "5550001", "ids": [5, 6], "at": 123})
    assert [(c.kind, c.chat_id, c.native_id, c.at) for c in normalize(deleted, ACCOUNT)] == [
        (ChangeKind.DELETE, "5550001", "5", 123), (ChangeKind.DELETE, "5550001", "6", 123)]


def test_service_messages_carry_nothing_and_junk_is_refused() -> None:
    service = types.MessageService(id=9, peer_id=types.PeerChat(4440001), date=WHEN,
                                   action=types.MessageActionChatEditTitle(title="New name"))
    assert normalize(env("message", "-4440001", service), ACCOUNT) == []
    for payload in ({"kind": "reaction"}, {"kind": "message", "chat_id": "1", "message": {"_": "Message", "id": 1}},
                    {"kind": "delete", "ids": [1]}):
        with pytest.raises(ValueError):
            normalize(Envelope("telegram_user", "a1", "d", 0, payload), ACCOUNT)
