"""normalize on recorded payloads, shaped as Feishu's event and message docs show them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from connectors.base import ChangeKind, ChatType, Envelope
from connectors.feishu.inbound import normalize
from tests.connectors.feishu.conftest import APP, BOT, make_account

ACCOUNT = make_account()


def event(event_type: str, body: dict[str, Any]) -> Envelope:
    payload = {"schema": "2.0",
               "header": {"event_id": "5e3702a84e847582be8db7fb73283c02", "create_time": "1608725989000",
                          "event_type": event_type, "tenant_key": "2ca1d211f64f6438", "app_id": APP},
               "event": body}
    return Envelope("feishu", "acc-feishu-1", "5e3702a84e847582be8db7fb73283c02", 1, payload)


def received(message: dict[str, Any], sender: str = "ou_84aad35d084aa403a838cf73ee18467") -> Envelope:
    base = {"message_id": "om_5ce6d572455d361153b7cb51da133945", "create_time": "1609073151345",
            "update_time": "1609073151345", "chat_id": "oc_5ce6d572455d361153b7xx51da133945",
            "chat_type": "group", "message_type": "text", "content": json.dumps({"text": "hello"})}
    return event("im.message.receive_v1", {
        "sender": {"sender_id": {"union_id": "on_8ed6aa67826108097d9ee143816345", "user_id": "e33ggbyz",
                                 "open_id": sender}, "sender_type": "user", "tenant_key": "736588c9260f175e"},
        "message": {**base, **message}})


def test_text_with_mentions_in_a_group() -> None:
    env = received({"content": json.dumps({"text": "@_user_1 @_user_2 please review"}),
                    "mentions": [{"key": "@_user_1", "id": {"open_id": BOT}, "name": "Loomi", "tenant_key": "t"},
                                 {"key": "@_user_2", "id": {"open_id": "ou_bob"}, "name": "Bob", "tenant_key": "t"}]})
    [change] = normalize(env, ACCOUNT)
    msg = change.message
    assert change.kind is ChangeKind.UPSERT and change.native_id == "om_5ce6d572455d361153b7cb51da133945"
    assert msg.text == "@Loomi @Bob please review" and msg.mentions == [BOT, "ou_bob"]
    assert msg.chat_type is ChatType.GROUP and msg.sent_at == 1609073151345 and msg.is_self is False
    assert (msg.thread_id, msg.reply_to_id) == (None, None)


def test_mention_keys_are_replaced_longest_first_and_at_all() -> None:
    mentions = [{"key": f"@_user_{i}", "id": {"open_id": f"ou_{i}"}, "name": f"P{i}"} for i in range(1, 11)]
    env = received({"content": json.dumps({"text": "@_user_10 @_user_1 @_all hi"}), "mentions": mentions})
    msg = normalize(env, ACCOUNT)[0].message
    assert msg.text == "@P10 @P1 @all hi" and len(msg.mentions) == 10


def test_direct_message_reply_in_a_thread() -> None:
    env = received({"chat_type": "p2p", "root_id": "om_root", "parent_id": "om_parent"})
    msg = normalize(env, ACCOUNT)[0].message
    assert msg.chat_type is ChatType.DM and msg.thread_id == "om_root" and msg.reply_to_id == "om_parent"


def test_rich_text_post_with_locale_and_image() -> None:
    post = {"zh_cn": {"title": "Weekly", "content": [
        [{"tag": "text", "text": "see "}, {"tag": "a", "href": "https://x", "text": "the doc"}],
        [{"tag": "at", "user_id": "ou_bob", "user_name": "Bob"}, {"tag": "text", "text": " thanks"}],
        [{"tag": "img", "image_key": "img_v2_041b"}]]}}
    msg = normalize(received({"message_type": "post", "content": json.dumps(post)}), ACCOUNT)[0].message
    assert msg.text == "Weekly\nsee the doc\n@Bob thanks" and msg.attachments[0].name == "img_v2_041b"


@pytest.mark.parametrize("kind,content,content_type,name", [
    ("image", {"image_key": "img_7ea74629"}, "image", "img_7ea74629"),
    ("file", {"file_key": "file_v2_a1", "file_name": "report.pdf"}, "file", "report.pdf"),
    ("audio", {"file_key": "file_v2_a2", "duration": 2000}, "audio", "file_v2_a2"),
    ("media", {"file_key": "file_v2_a3", "image_key": "img_x", "file_name": "clip.mp4"}, "video", "clip.mp4"),
])
def test_attachments_by_message_type(kind: str, content: dict[str, Any], content_type: str, name: str) -> None:
    msg = normalize(received({"message_type": kind, "content": json.dumps(content)}), ACCOUNT)[0].message
    assert msg.content_type == content_type and msg.text == "" and [a.name for a in msg.attachments] == [name]


def test_recall_is_a_delete() -> None:
    [change] = normalize(event("im.message.recalled_v1", {
        "message_id": "om_dc13264520392913993dd051dba21dcf", "chat_id": "oc_a0553eda9014c201e6969b478895c230",
        "recall_time": "1727079233000", "recall_type": "message_owner"}), ACCOUNT)
    assert (change.kind, change.chat_id, change.native_id, change.at) == (
        ChangeKind.DELETE, "oc_a0553eda9014c201e6969b478895c230", "om_dc13264520392913993dd051dba21dcf", 1727079233000)


def test_reaction_with_and_without_its_chat() -> None:
    body = {"message_id": "om_dc13", "reaction_type": {"emoji_type": "SMILE"}, "operator_type": "user",
            "user_id": {"open_id": "ou_bob", "union_id": "on_bob", "user_id": "bob"}, "action_time": "1627540784000"}
    assert normalize(event("im.message.reaction.created_v1", body), ACCOUNT) == []  # from the callback: no chat
    [added] = normalize(event("im.message.reaction.created_v1", {**body, "chat_id": "oc_team"}), ACCOUNT)
    [removed] = normalize(event("im.message.reaction.deleted_v1", {**body, "chat_id": "oc_team"}), ACCOUNT)
    assert added.kind is ChangeKind.REACTION and added.reaction.emoji == "SMILE" and added.reaction.added
    assert removed.reaction.added is False and removed.at == 1627540784000 and removed.native_id == "om_dc13"


def test_chat_rename_and_other_chat_updates() -> None:
    body = {"chat_id": "oc_team", "operator_id": {"open_id": "ou_admin"}, "external": False,
            "after_change": {"name": "New name"}, "before_change": {"name": "Old"}}
    [change] = normalize(event("im.chat.updated_v1", body), ACCOUNT)
    assert change.kind is ChangeKind.CHAT and change.chat.name == "New name" and change.native_id == ""
    no_name = {**body, "after_change": {"add_member_permission": "all_members"}}
    assert normalize(event("im.chat.updated_v1", no_name), ACCOUNT) == []
    assert normalize(event("im.message.message_read_v1", {"reader": {}}), ACCOUNT) == []


def history(item: dict[str, Any]) -> Envelope:
    base = {"message_id": "om_h1", "msg_type": "text", "create_time": "1700000000000", "update_time": "1700000000000",
            "deleted": False, "updated": False, "chat_id": "oc_team",
            "sender": {"id": "ou_alice", "id_type": "open_id", "sender_type": "user", "tenant_key": "t"},
            "body": {"content": json.dumps({"text": "from history"})}}
    payload = {"type": "history", "app_id": APP, "chat": {"chat_id": "oc_team", "name": "Team", "chat_mode": "group"},
               "message": {**base, **item}}
    return Envelope("feishu", "acc-feishu-1", "om_h1", 1, payload, "backfill")


def test_history_items_plain_edited_recalled_and_our_own() -> None:
    [plain] = normalize(history({}), ACCOUNT)
    assert plain.message.text == "from history" and plain.message.chat_name == "Team"
    upsert, edit = normalize(history({"updated": True, "update_time": "1700000005000",
                                      "body": {"content": json.dumps({"text": "fixed"})}}), ACCOUNT)
    assert (upsert.kind, edit.kind, edit.at, edit.message.text) == (ChangeKind.UPSERT, ChangeKind.EDIT, 1700000005000, "fixed")
    [gone] = normalize(history({"deleted": True, "update_time": "1700000009000"}), ACCOUNT)
    assert gone.kind is ChangeKind.DELETE and gone.at == 1700000009000
    ours = history({"sender": {"id": APP, "id_type": "app_id", "sender_type": "app", "tenant_key": "t"}})
    assert normalize(ours, ACCOUNT)[0].message.is_self is True


def test_unreadable_payloads_raise() -> None:
    with pytest.raises(ValueError):
        normalize(Envelope("feishu", "a", "d", 1, {"unreadable_event": "x"}), ACCOUNT)
    with pytest.raises(ValueError):
        normalize(received({"message_id": None}), ACCOUNT)
    with pytest.raises(ValueError):
        normalize(event("im.message.recalled_v1", {}), ACCOUNT)
