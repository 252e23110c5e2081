"""normalize on deliveries shaped as in Meta's Cloud API webhook reference (the queued
per-message payloads webhook.py makes from them)."""

from __future__ import annotations

import pytest

from connectors.base import ChangeKind, ChatType, Envelope
from connectors.whatsapp.inbound import normalize
from connectors.whatsapp.webhook import events
from tests.connectors.whatsapp.conftest import ALICE, NUMBER_ID, account
from tests.fakes.whatsapp import Meta

META = Meta("secret", NUMBER_ID)


def changes(delivery: dict) -> list:
    out = []
    for event in events(delivery, NUMBER_ID):
        out += normalize(Envelope("whatsapp", "acct-wa-1", event.delivery_id, 0, event.payload, "webhook"), account())
    return out


def test_a_text_message_is_a_dm_with_the_sender_as_chat() -> None:
    delivery, wamid = META.message(ALICE, "Alice", text="héllo 👋", timestamp=1_700_000_000)
    (change,) = changes(delivery)
    msg = change.message
    assert change.kind is ChangeKind.UPSERT and change.native_id == wamid and change.chat_id == ALICE
    assert (msg.text, msg.sender_id, msg.sender_name, msg.chat_type) == ("héllo 👋", ALICE, "Alice", ChatType.DM)
    assert msg.sent_at == 1_700_000_000_000 and msg.is_self is False and msg.reply_to_id is None


def test_media_carries_its_caption_and_an_attachment() -> None:
    delivery, _ = META.message(ALICE, "Alice", "document", text="the contract",
                               media={"filename": "contract.pdf", "mime_type": "application/pdf"})
    (change,) = changes(delivery)
    assert change.message.text == "the contract" and change.message.content_type == "document"
    assert [(a.name, a.content_type) for a in change.message.attachments] == [("contract.pdf", "application/pdf")]
    photo, _ = META.message(ALICE, "Alice", "image")
    (change,) = changes(photo)
    assert change.message.text == "" and change.message.attachments[0].content_type == "image/jpeg"


def test_a_reply_points_at_context_id_and_a_forward_does_not() -> None:
    delivery, _ = META.message(ALICE, "Alice", text="yes", reply_to="wamid.parent")
    assert changes(delivery)[0].message.reply_to_id == "wamid.parent"
    delivery["entry"][0]["changes"][0]["value"]["messages"][0]["context"] = {"forwarded": True}
    assert changes(delivery)[0].message.reply_to_id is None


def test_reactions_are_added_and_taken_back() -> None:
    cleared, added = changes(META.reaction(ALICE, "Alice", "wamid.target", "👍"))
    assert added.kind is ChangeKind.REACTION and added.native_id == "wamid.target" and added.chat_id == ALICE
    assert (added.reaction.emoji, added.reaction.sender_id, added.reaction.added) == ("👍", ALICE, True)
    assert (cleared.native_id, cleared.reaction.emoji, cleared.reaction.sender_id, cleared.reaction.added) == (
        "wamid.target", "", ALICE, False)  # one per person: a new one replaces Alice's earlier one
    (removed,) = changes(META.reaction(ALICE, "Alice", "wamid.target", ""))
    assert (removed.reaction.emoji, removed.reaction.added) == ("", False)


def test_statuses_become_status_changes_on_our_message() -> None:
    (change,) = changes(META.status("wamid.ours", "read", ALICE, timestamp=1_700_000_100))
    assert (change.kind, change.chat_id, change.native_id, change.status, change.at) == (
        ChangeKind.STATUS, ALICE, "wamid.ours", "read", 1_700_000_100_000)


def test_other_kinds_read_as_text() -> None:
    location = {"from": ALICE, "id": "wamid.loc", "timestamp": "1700000000", "type": "location",
                "location": {"latitude": 52.52, "longitude": 13.4, "name": "Cafe", "address": "Main St 1"}}
    button = {"from": ALICE, "id": "wamid.btn", "timestamp": "1700000000", "type": "interactive",
              "interactive": {"type": "button_reply", "button_reply": {"id": "b1", "title": "Yes please"}}}
    unsupported = {"from": ALICE, "id": "wamid.un", "timestamp": "1700000000", "type": "unsupported",
                   "errors": [{"code": 131051, "title": "Message type unknown"}]}
    got = changes(META.delivery(messages=[location, button, unsupported]))
    assert [c.message.text for c in got] == ["Cafe — Main St 1", "Yes please", ""]
    assert got[2].message.content_type == "unsupported"


@pytest.mark.parametrize("payload", [
    {"message": {"id": "wamid.x"}},  # no sender
    {"message": {"id": "wamid.x", "from": ALICE, "timestamp": "soon", "type": "text"}},
    {"status": {"id": "wamid.x", "status": "read"}},  # no recipient
    {"message": {"id": "wamid.x", "from": ALICE, "timestamp": "1", "type": "reaction", "reaction": {"emoji": "👍"}}},
])
def test_unreadable_payloads_raise_value_error(payload: dict) -> None:
    with pytest.raises(ValueError):
        normalize(Envelope("whatsapp", "a", "d", 0, payload), account())
