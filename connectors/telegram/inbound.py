"""Telegram Update JSON -> normalized changes. Pure: no I/O, no PTB objects, only the dict.

`message` / `channel_post` are UPSERTs, `edited_message` / `edited_channel_post` are EDITs
(`at` = `edit_date`), `message_reaction` gives REACTION changes (the difference between the
old and the new reaction list), and a service message renaming a group also gives a CHAT
change. Bots are never told about deletions, and every other update kind gives no change.

The payload is the Update exactly as Telegram sent it; `is_self` compares senders with the
account's external id, which is the bot's user id.
"""

from __future__ import annotations

from typing import Any

from connectors.base import Account, Attachment, Change, ChangeKind, ChatInfo, ChatType, Envelope, Message, Reaction

NEW = ("message", "channel_post")
EDITED = ("edited_message", "edited_channel_post")
REACTION = "message_reaction"  # delivered only where the bot is an administrator
ALLOWED_UPDATES = [*NEW, *EDITED, REACTION]  # asked for in getUpdates and setWebhook

CHAT_TYPES = {"private": ChatType.DM, "group": ChatType.GROUP, "supergroup": ChatType.GROUP, "channel": ChatType.CHANNEL}

# Message field -> (our content_type, MIME type when Telegram gives none)
MEDIA = {
    "photo": ("image", "image/jpeg"),  # Telegram re-encodes every photo as JPEG
    "document": ("file", None),
    "audio": ("audio", None),
    "video": ("video", None),
    "voice": ("voice", "audio/ogg"),
}


def normalize(envelope: Envelope, account: Account) -> list[Change]:
    payload = envelope.payload
    if not isinstance(payload, dict) or not _is_int(payload.get("update_id")):
        raise ValueError("not a Telegram Update: no integer update_id")
    if REACTION in payload:
        return _reactions(payload[REACTION])
    kind = next((k for k in (*NEW, *EDITED) if k in payload), None)
    if kind is None:
        return []
    message = to_message(payload[kind], account.external_id)
    if kind in NEW:
        changes = [Change(ChangeKind.UPSERT, message.chat_id, message.native_id, message)]
        title = payload[kind].get("new_chat_title")
        if isinstance(title, str):
            changes.append(Change(ChangeKind.CHAT, message.chat_id, "", chat=ChatInfo(name=title)))
        return changes
    edit_date = payload[kind].get("edit_date")
    at = edit_date * 1000 if _is_int(edit_date) else envelope.received_at
    message.edited_at = at
    return [Change(ChangeKind.EDIT, message.chat_id, message.native_id, message, at=at)]


def to_message(msg: Any, bot_id: str | None = None) -> Message:
    """One Telegram Message object (also what sendMessage returns) as our Message."""
    if not isinstance(msg, dict):
        raise ValueError("Telegram message is not an object")
    chat, message_id, date = msg.get("chat"), msg.get("message_id"), msg.get("date")
    if not isinstance(chat, dict) or not _is_int(chat.get("id")) or not _is_int(message_id) or not _is_int(date):
        raise ValueError("Telegram message lacks chat.id, message_id or date")

    thread_id = None
    if msg.get("is_topic_message") and _is_int(msg.get("message_thread_id")):
        thread_id = str(msg["message_thread_id"])
    reply_to_id = None
    reply = msg.get("reply_to_message")
    if isinstance(reply, dict) and _is_int(reply.get("message_id")):
        # In a forum topic every message "replies" to the topic's creation message: not a reply.
        if not (thread_id is not None and str(reply["message_id"]) == thread_id):
            reply_to_id = str(reply["message_id"])

    sender_id = sender_name = None
    is_self = False
    user, sender_chat = msg.get("from"), msg.get("sender_chat")
    if isinstance(sender_chat, dict):  # sent on behalf of a chat: `from` is then a placeholder
        sender_id, sender_name = _id(sender_chat), _chat_name(sender_chat)
    elif isinstance(user, dict):
        sender_id, sender_name = _id(user), _person_name(user)
        is_self = bot_id is not None and sender_id == bot_id

    text = msg.get("text") if isinstance(msg.get("text"), str) else msg.get("caption")
    text = text if isinstance(text, str) else ""
    entities = msg.get("entities") if "text" in msg else msg.get("caption_entities")
    attachments, content_type = _attachments(msg)
    return Message(
        chat_id=str(chat["id"]),
        native_id=str(message_id),
        sent_at=date * 1000,
        chat_type=CHAT_TYPES.get(str(chat.get("type")), ChatType.GROUP),
        chat_name=_chat_name(chat),
        thread_id=thread_id,
        reply_to_id=reply_to_id,
        sender_id=sender_id,
        sender_name=sender_name,
        is_self=is_self,
        text=text,
        content_type=content_type or ("text" if text else "other"),
        attachments=attachments,
        mentions=_mentions(text, entities),
    )


def _reactions(update: Any) -> list[Change]:
    """MessageReactionUpdated: emoji in `new_reaction` but not `old_reaction` were added, the
    reverse were taken back (custom emoji by their id)."""
    if not isinstance(update, dict) or not isinstance(update.get("chat"), dict) or not _is_int(update.get("message_id")):
        raise ValueError("Telegram message_reaction lacks chat or message_id")
    chat_id, native_id = _id(update["chat"]), str(update["message_id"])
    if chat_id is None:
        raise ValueError("Telegram message_reaction chat has no id")
    who = update.get("user") if isinstance(update.get("user"), dict) else update.get("actor_chat")
    sender = _id(who) if isinstance(who, dict) else None
    at = update["date"] * 1000 if _is_int(update.get("date")) else None
    old, new = _emoji(update.get("old_reaction")), _emoji(update.get("new_reaction"))
    return [
        Change(ChangeKind.REACTION, chat_id, native_id, at=at, reaction=Reaction(emoji, sender, added))
        for added, emojis in ((True, [e for e in new if e not in old]), (False, [e for e in old if e not in new]))
        for emoji in emojis
    ]


def _emoji(reactions: Any) -> list[str]:
    out = []
    for r in reactions if isinstance(reactions, list) else ():
        if isinstance(r, dict):
            value = r.get("emoji") or r.get("custom_emoji_id") or r.get("type")
            if isinstance(value, str):
                out.append(value)
    return out


def _attachments(msg: dict[str, Any]) -> tuple[list[Attachment], str | None]:
    found: list[Attachment] = []
    content_type = None
    for key, (kind, default_mime) in MEDIA.items():
        media = msg.get(key)
        if key == "photo" and isinstance(media, list):  # sizes, smallest first: keep the largest
            media = media[-1] if media else None
        if not isinstance(media, dict):
            continue
        content_type = content_type or kind
        size = media.get("file_size")
        found.append(
            Attachment(
                name=media.get("file_name") if isinstance(media.get("file_name"), str) else None,
                url=None,  # Bot API files have no stable URL: fetch by file_id (in the raw payload) with getFile
                content_type=media.get("mime_type") or default_mime,
                size=size if _is_int(size) else None,
            )
        )
    return found, content_type


def _mentions(text: str, entities: Any) -> list[str]:
    """`mention` entities give "@username"; `text_mention` (users without a username) the user id.
    Entity offsets count UTF-16 code units, as Telegram does."""
    if not isinstance(entities, list):
        return []
    units = text.encode("utf-16-le")
    out: list[str] = []
    for entity in entities:
        if not isinstance(entity, dict):
            continue
        if entity.get("type") == "mention" and _is_int(entity.get("offset")) and _is_int(entity.get("length")):
            start, end = entity["offset"] * 2, (entity["offset"] + entity["length"]) * 2
            if 0 <= start < end <= len(units):
                out.append(units[start:end].decode("utf-16-le", errors="replace"))
        elif entity.get("type") == "text_mention" and isinstance(entity.get("user"), dict):
            user_id = _id(entity["user"])
            if user_id is not None:
                out.append(user_id)
    return list(dict.fromkeys(out))


def _id(obj: dict[str, Any]) -> str | None:
    return str(obj["id"]) if _is_int(obj.get("id")) else None


def _person_name(user: dict[str, Any]) -> str | None:
    full = " ".join(p for p in (user.get("first_name"), user.get("last_name")) if isinstance(p, str) and p)
    return full or (user.get("username") if isinstance(user.get("username"), str) else None)


def _chat_name(chat: dict[str, Any]) -> str | None:
    if isinstance(chat.get("title"), str):
        return chat["title"]
    return _person_name(chat)  # private chats carry the other person's names


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
