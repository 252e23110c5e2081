"""normalize() on payloads shaped as X API v2 documents them (dm_events, mentions timeline with
expansions), wrapped the way the listener emits them."""

from __future__ import annotations

import pytest

from connectors.base import Account, ChangeKind, ChatType, Envelope
from connectors.x.inbound import normalize

ME, ALICE = "1700000000000000001", "1700000000000000002"
ACCOUNT = Account(id="a1", user_id="u1", platform="x", external_id=ME, name="@me", credentials={})
ALICE_USER = {"id": ALICE, "name": "Alice", "username": "alice"}


def env(payload: dict) -> Envelope:
    return Envelope("x", "a1", "d1", 0, payload)


DM = {"type": "dm", "event": {
    "id": "1582838223345432576", "event_type": "MessageCreate", "text": "lunch tomorrow?",
    "sender_id": ALICE, "dm_conversation_id": f"{ME}-{ALICE}", "created_at": "2022-10-19T20:58:00.000Z",
    "attachments": {"media_keys": ["3_1582838213"]}},
    "users": [ALICE_USER],
    "media": [{"media_key": "3_1582838213", "type": "photo", "url": "https://pbs.twimg.com/media/x.jpg"}]}


def test_a_direct_message() -> None:
    (change,) = normalize(env(DM), ACCOUNT)
    m = change.message
    assert change.kind is ChangeKind.UPSERT and change.native_id == "1582838223345432576"
    assert (m.chat_id, m.chat_type, m.chat_name) == (f"{ME}-{ALICE}", ChatType.DM, "@alice")
    assert (m.sender_id, m.sender_name, m.is_self, m.text) == (ALICE, "@alice", False, "lunch tomorrow?")
    assert m.sent_at == 1666213080000
    assert [(a.name, a.url, a.content_type) for a in m.attachments] == [("3_1582838213", "https://pbs.twimg.com/media/x.jpg", "image/jpeg")]


def test_our_own_dm_is_self_and_group_dms_are_groups() -> None:
    own = {**DM, "event": {**DM["event"], "sender_id": ME}}
    assert normalize(env(own), ACCOUNT)[0].message.is_self is True
    group = {**DM, "event": {**DM["event"], "dm_conversation_id": "1582838000000000000"}}
    (change,) = normalize(env(group), ACCOUNT)
    assert change.message.chat_type is ChatType.GROUP and change.message.chat_name is None
    joined = {**DM, "event": {**DM["event"], "event_type": "ParticipantsJoin"}}
    assert normalize(env(joined), ACCOUNT) == []


MENTION = {"type": "mention", "tweet": {
    "id": "1445880548472328192", "text": "@loomi_person @bob can you review this?", "author_id": ALICE,
    "conversation_id": "1445880000000000000", "created_at": "2021-10-06T22:26:17.000Z",
    "edit_history_tweet_ids": ["1445880548472328192"],
    "entities": {"mentions": [{"start": 0, "end": 13, "username": "loomi_person", "id": ME},
                              {"start": 14, "end": 18, "username": "bob", "id": "1700000000000000003"}]},
    "referenced_tweets": [{"type": "replied_to", "id": "1445880000000000000"}],
    "in_reply_to_user_id": ME},
    "users": [ALICE_USER], "media": []}


def test_a_mention_in_a_thread() -> None:
    (change,) = normalize(env(MENTION), ACCOUNT)
    m = change.message
    assert change.kind is ChangeKind.UPSERT and change.chat_id == "t:1445880000000000000"
    assert (m.chat_type, m.thread_id, m.reply_to_id) == (ChatType.THREAD, "1445880000000000000", "1445880000000000000")
    assert m.mentions == [ME, "1700000000000000003"] and m.sender_name == "@alice" and not m.is_self
    assert m.edited_at is None


def test_an_edited_tweet_edits_the_first_version() -> None:
    edited = {**MENTION, "tweet": {**MENTION["tweet"], "id": "1445880999999999999", "text": "fixed typo",
                                   "created_at": "2021-10-06T22:30:00.000Z",
                                   "edit_history_tweet_ids": ["1445880548472328192", "1445880999999999999"]}}
    (change,) = normalize(env(edited), ACCOUNT)
    assert change.kind is ChangeKind.EDIT and change.native_id == "1445880548472328192"
    assert change.message.text == "fixed typo" and change.at == change.message.edited_at == 1633559400000


@pytest.mark.parametrize("payload", [{"type": "dm"}, {"type": "mention", "tweet": {"id": "1"}}, {"type": "like"},
                                     {"type": "dm", "event": {**DM["event"], "created_at": "yesterday"}}])
def test_unreadable_payloads_are_value_errors(payload: dict) -> None:
    with pytest.raises(ValueError):
        normalize(env(payload), ACCOUNT)
