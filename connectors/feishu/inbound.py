"""Feishu payloads -> changes. Pure: no I/O, no clock; tested on recorded payloads.

Two payload shapes reach `normalize`, both plain JSON:
- a v2 event exactly as Feishu sent it (`{"schema": "2.0", "header": {event_id, event_type,
  app_id, ...}, "event": {...}}`), the same over the websocket and the HTTP callback:
  `im.message.receive_v1` -> UPSERT; `im.message.recalled_v1` -> DELETE;
  `im.message.reaction.created_v1` / `deleted_v1` -> REACTION; `im.chat.updated_v1` -> CHAT.
  Feishu's reaction events name the message but not its chat; the listener adds the chat as
  `event.chat_id` after looking the message up (listen.py). A reaction without it (from the
  HTTP callback, which may do no I/O) gives no change: the store could not place it.
- a backfill record made by history.py: `{"type": "history", "app_id", "chat": {chat_id, name,
  chat_mode}, "message": <an item of GET /open-apis/im/v1/messages>}`. An item with
  `updated: true` also gives an EDIT (Feishu pushes no edit events to bots: history is where
  edits show), one with `deleted: true` a DELETE.

Content is a JSON string per `message_type` (text, post, image, file, audio, media, sticker…);
`@_user_N` placeholders in text are replaced by the mentioned names.
"""

from __future__ import annotations

import json
from typing import Any

from connectors.base import (
    Account,
    Attachment,
    Change,
    ChangeKind,
    ChatInfo,
    ChatType,
    Envelope,
    Message,
    Reaction,
)

HISTORY = "history"
RECEIVE = "im.message.receive_v1"
RECALLED = "im.message.recalled_v1"
REACTION_ADDED = "im.message.reaction.created_v1"
REACTION_REMOVED = "im.message.reaction.deleted_v1"
CHAT_UPDATED = "im.chat.updated_v1"
EVENT_TYPES = (RECEIVE, RECALLED, REACTION_ADDED, REACTION_REMOVED, CHAT_UPDATED)

CHAT_TYPES = {"p2p": ChatType.DM, "group": ChatType.GROUP, "topic_group": ChatType.GROUP, "topic": ChatType.GROUP}
# message_type -> (our content_type, MIME type of what the key points at)
MEDIA = {
    "image": ("image", "image/*"),
    "file": ("file", None),
    "audio": ("audio", "audio/opus"),
    "media": ("video", "video/mp4"),
    "sticker": ("image", "image/*"),
}


def normalize(envelope: Envelope, account: Account | None) -> list[Change]:
    payload = envelope.payload
    if not isinstance(payload, dict):
        raise ValueError("Feishu payload is not an object")
    own = self_ids(account)
    if payload.get("type") == HISTORY:
        return _history(payload, own)
    header, event = payload.get("header"), payload.get("event")
    if payload.get("schema") != "2.0" or not isinstance(header, dict) or not isinstance(event, dict):
        raise ValueError("not a Feishu v2 event (schema 2.0 with header and event)")
    kind = header.get("event_type")
    if kind == RECEIVE:
        message = from_event(event, own)
        return [Change(ChangeKind.UPSERT, message.chat_id, message.native_id, message)]
    if kind == RECALLED:
        chat_id, message_id = _str(event.get("chat_id")), _str(event.get("message_id"))
        if not chat_id or not message_id:
            raise ValueError("recall event without chat_id or message_id")
        return [Change(ChangeKind.DELETE, chat_id, message_id, at=_ms(event.get("recall_time"), header))]
    if kind in (REACTION_ADDED, REACTION_REMOVED):
        return _reaction(event, header, added=kind == REACTION_ADDED)
    if kind == CHAT_UPDATED:
        chat_id = _str(event.get("chat_id"))
        after = event.get("after_change") if isinstance(event.get("after_change"), dict) else {}
        if not chat_id:
            raise ValueError("chat update without chat_id")
        name = after.get("name") if isinstance(after.get("name"), str) else None
        if name is None:
            return []  # permissions, owner…: nothing we keep about a chat changed
        return [Change(ChangeKind.CHAT, chat_id, "", chat=ChatInfo(name=name))]
    return []  # other subscriptions (message_read, member changes…) carry no message change


def self_ids(account: Account | None) -> frozenset[str]:
    """Ids our own bot appears under: the app id (history `sender.id` of app messages) and the
    bot's open id (mentions, events)."""
    if account is None:
        return frozenset()
    creds = account.credentials
    return frozenset(str(v) for v in (creds.get("app_id"), creds.get("bot_open_id"), account.external_id) if v)


def from_event(event: dict[str, Any], own: frozenset[str] = frozenset()) -> Message:
    msg, sender = event.get("message"), event.get("sender")
    if not isinstance(msg, dict):
        raise ValueError("receive event without message")
    sender = sender if isinstance(sender, dict) else {}
    sender_ids = sender.get("sender_id") if isinstance(sender.get("sender_id"), dict) else {}
    sender_id = _str(sender_ids.get("open_id")) or _str(sender_ids.get("user_id")) or None
    mentions = [m for m in msg.get("mentions") or [] if isinstance(m, dict)]
    mention_ids = [_str((m.get("id") or {}).get("open_id")) if isinstance(m.get("id"), dict) else _str(m.get("id"))
                   for m in mentions]
    return _message(
        msg, msg.get("message_type"), msg.get("content"), sender_id,
        CHAT_TYPES.get(_str(msg.get("chat_type")), ChatType.GROUP), None, mentions, mention_ids, own,
    )


def from_history(item: dict[str, Any], chat: dict[str, Any], own: frozenset[str] = frozenset()) -> Message:
    sender = item.get("sender") if isinstance(item.get("sender"), dict) else {}
    body = item.get("body") if isinstance(item.get("body"), dict) else {}
    mentions = [m for m in item.get("mentions") or [] if isinstance(m, dict)]
    chat_type = CHAT_TYPES.get(_str(chat.get("chat_mode")) or _str(chat.get("chat_type")), ChatType.GROUP)
    message = _message(
        item, item.get("msg_type"), body.get("content"), _str(sender.get("id")) or None,
        chat_type, chat.get("name") if isinstance(chat.get("name"), str) else None,
        mentions, [_str(m.get("id")) for m in mentions], own,
    )
    if item.get("updated") is True:
        message.edited_at = _ms(item.get("update_time"), {}) or None
    return message


def _history(payload: dict[str, Any], own: frozenset[str]) -> list[Change]:
    item, chat = payload.get("message"), payload.get("chat")
    if not isinstance(item, dict) or not isinstance(chat, dict):
        raise ValueError("history record without message or chat")
    if not item.get("chat_id") and chat.get("chat_id"):
        item = {**item, "chat_id": chat["chat_id"]}
    message = from_history(item, chat, own)
    if item.get("deleted") is True:  # recalled: a tombstone, and no "This message was recalled" row
        return [Change(ChangeKind.DELETE, message.chat_id, message.native_id, at=_ms(item.get("update_time"), {}))]
    changes = [Change(ChangeKind.UPSERT, message.chat_id, message.native_id, message)]
    if message.edited_at:
        changes.append(Change(ChangeKind.EDIT, message.chat_id, message.native_id, message, at=message.edited_at))
    return changes


def _reaction(event: dict[str, Any], header: dict[str, Any], *, added: bool) -> list[Change]:
    message_id, chat_id = _str(event.get("message_id")), _str(event.get("chat_id"))
    emoji = (event.get("reaction_type") or {}).get("emoji_type") if isinstance(event.get("reaction_type"), dict) else None
    if not message_id or not isinstance(emoji, str):
        raise ValueError("reaction event without message_id or emoji")
    if not chat_id:
        return []  # not placeable without its chat (see the module docstring)
    user = event.get("user_id") if isinstance(event.get("user_id"), dict) else {}
    sender = _str(user.get("open_id")) or _str(event.get("app_id")) or None
    return [Change(ChangeKind.REACTION, chat_id, message_id, at=_ms(event.get("action_time"), header),
                   reaction=Reaction(emoji=emoji, sender_id=sender, added=added))]


def _message(
    msg: dict[str, Any], message_type: Any, content: Any, sender_id: str | None,
    chat_type: ChatType, chat_name: str | None, mentions: list[dict[str, Any]], mention_ids: list[str],
    own: frozenset[str],
) -> Message:
    message_id, chat_id = _str(msg.get("message_id")), _str(msg.get("chat_id"))
    sent_at = _ms(msg.get("create_time"), {})
    if not message_id or not chat_id or not sent_at:
        raise ValueError("Feishu message lacks message_id, chat_id or create_time")
    kind = _str(message_type) or "text"
    parsed = _content(content)
    names = {_str(m.get("key")): _str(m.get("name")) for m in mentions if m.get("key")}
    text, attachments, content_type = _render(kind, parsed, names)
    root, parent = _str(msg.get("root_id")), _str(msg.get("parent_id"))
    return Message(
        chat_id=chat_id,
        native_id=message_id,
        sent_at=sent_at,
        chat_type=chat_type,
        chat_name=chat_name,
        thread_id=_str(msg.get("thread_id")) or root or None,
        reply_to_id=parent or None,
        sender_id=sender_id,
        is_self=bool(sender_id and sender_id in own),
        text=text,
        content_type=content_type,
        attachments=attachments,
        mentions=[m for m in dict.fromkeys(mention_ids) if m],
    )


def _render(kind: str, content: dict[str, Any], names: dict[str, str]) -> tuple[str, list[Attachment], str]:
    """(text, attachments, content_type) of one message's content."""
    if kind == "text":
        text = _str(content.get("text"))
        for key, name in sorted(names.items(), key=lambda kv: -len(kv[0])):  # @_user_10 before @_user_1
            text = text.replace(key, f"@{name}" if name else key)
        return text.replace("@_all", "@all"), [], "text"
    if kind == "post":
        return _post(content, names)
    if kind in MEDIA:
        content_type, mime = MEDIA[kind]
        key = _str(content.get("file_key")) or _str(content.get("image_key"))
        name = _str(content.get("file_name")) or key or None
        return "", [Attachment(name=name, url=None, content_type=mime)], content_type
    if kind == "system":
        return "", [], "system"
    return "", [], "other"  # interactive cards, share_chat, location…: kept raw, no text


def _post(content: dict[str, Any], names: dict[str, str]) -> tuple[str, list[Attachment], str]:
    """Rich text: `{"title", "content": [[{tag, ...}, ...], ...]}`, possibly under a locale key."""
    if "content" not in content and content:
        first = next(iter(content.values()))
        content = first if isinstance(first, dict) else {}
    lines: list[str] = []
    attachments: list[Attachment] = []
    title = _str(content.get("title"))
    if title:
        lines.append(title)
    for paragraph in content.get("content") or []:
        parts: list[str] = []
        for node in paragraph if isinstance(paragraph, list) else []:
            if not isinstance(node, dict):
                continue
            tag = node.get("tag")
            if tag in ("text", "a", "md"):
                parts.append(_str(node.get("text")))
            elif tag == "at":
                name = _str(node.get("user_name")) or names.get(_str(node.get("user_id")), "")
                parts.append(f"@{name}" if name else "")
            elif tag == "img":
                attachments.append(Attachment(name=_str(node.get("image_key")) or None, content_type="image/*"))
            elif tag == "media":
                attachments.append(Attachment(name=_str(node.get("file_key")) or None, content_type="video/mp4"))
        lines.append("".join(parts))
    return "\n".join(line for line in lines if line), attachments, "text"


def _content(content: Any) -> dict[str, Any]:
    if isinstance(content, dict):
        return content
    if not isinstance(content, str) or not content:
        return {}
    try:
        parsed = json.loads(content)
    except ValueError:
        return {"text": content}
    return parsed if isinstance(parsed, dict) else {}


def _ms(value: Any, header: dict[str, Any]) -> int:
    """Feishu times are millisecond strings; fall back to the event's header.create_time."""
    for candidate in (value, header.get("create_time")):
        text = _str(candidate)
        if text.isdigit():
            return int(text)
    return 0


def _str(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return ""
    return str(value) if isinstance(value, (str, int)) else ""
