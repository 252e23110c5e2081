"""Gateway dispatches -> changes. Pure: no I/O, no clock, no discord.py models; tested on
payloads shaped like Discord's documentation.

A payload is one dispatch as the gateway sent it, without the op code: `{"t", "s", "d"}`
(backfill builds the same shape, `{"t": "MESSAGE_CREATE", "d": message + guild_id}`, without
`s`). GUILD_CREATE is stored trimmed to what normalize reads (listen.py says why).

- MESSAGE_CREATE -> UPSERT; MESSAGE_UPDATE with `edited_timestamp` -> EDIT (an update without
  one is Discord filling in embeds: nothing changed that we keep);
- MESSAGE_DELETE / MESSAGE_DELETE_BULK -> DELETE;
- MESSAGE_REACTION_ADD / _REMOVE -> REACTION (custom emoji as `<:name:id>`);
- CHANNEL_CREATE / _UPDATE, THREAD_CREATE / _UPDATE, and every channel of GUILD_CREATE -> CHAT.

A thread is its own chat (its channel id), of type THREAD: Discord sends to a thread, reads
its history and names it by that id, and a message in it does not say which channel the
thread hangs off. Replies are `message_reference` (reply_to_id).
"""

from __future__ import annotations

import datetime as dtm
from typing import Any

from connectors.base import Account, Attachment, Change, ChangeKind, ChatInfo, ChatType, Envelope, Message, Reaction

# Discord channel types -> ours (https://discord.com/developers/docs/resources/channel)
CHANNEL_TYPES = {
    0: ChatType.CHANNEL,  # GUILD_TEXT
    1: ChatType.DM,
    2: ChatType.CHANNEL,  # GUILD_VOICE (has a text chat)
    3: ChatType.GROUP,  # GROUP_DM
    5: ChatType.CHANNEL,  # GUILD_ANNOUNCEMENT
    10: ChatType.THREAD,  # ANNOUNCEMENT_THREAD
    11: ChatType.THREAD,  # PUBLIC_THREAD
    12: ChatType.THREAD,  # PRIVATE_THREAD
    13: ChatType.CHANNEL,  # GUILD_STAGE_VOICE
    15: ChatType.CHANNEL,  # GUILD_FORUM
    16: ChatType.CHANNEL,  # GUILD_MEDIA
}
THREAD_TYPES = frozenset({10, 11, 12})

# message types that carry what a person wrote: DEFAULT, REPLY, CHAT_INPUT_COMMAND,
# THREAD_STARTER_MESSAGE, CONTEXT_MENU_COMMAND; the rest (joins, pins, boosts…) are "system"
CONTENT_TYPES = frozenset({0, 19, 20, 21, 23})

EVENTS = frozenset({
    "MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE", "MESSAGE_DELETE_BULK",
    "MESSAGE_REACTION_ADD", "MESSAGE_REACTION_REMOVE",
    "CHANNEL_CREATE", "CHANNEL_UPDATE", "THREAD_CREATE", "THREAD_UPDATE", "GUILD_CREATE",
})


def normalize(envelope: Envelope, account: Account | None = None) -> list[Change]:
    payload = envelope.payload
    kind, data = payload.get("t") if isinstance(payload, dict) else None, None
    if isinstance(payload, dict):
        data = payload.get("d")
    if not isinstance(kind, str) or not isinstance(data, dict):
        raise ValueError("not a Discord dispatch: no `t` and object `d`")
    bot_id = str(account.credentials.get("bot_user_id") or "") if account is not None else ""
    at = envelope.received_at
    if kind == "MESSAGE_CREATE":
        message = to_message(data, bot_id)
        return [Change(ChangeKind.UPSERT, message.chat_id, message.native_id, message)]
    if kind == "MESSAGE_UPDATE":
        if not data.get("edited_timestamp"):
            return []
        message = to_message(data, bot_id)
        message.edited_at = iso_ms(data["edited_timestamp"])
        return [Change(ChangeKind.EDIT, message.chat_id, message.native_id, message, at=message.edited_at)]
    if kind == "MESSAGE_DELETE":
        return [Change(ChangeKind.DELETE, _id(data, "channel_id"), _id(data, "id"), at=at)]
    if kind == "MESSAGE_DELETE_BULK":
        chat_id = _id(data, "channel_id")
        return [Change(ChangeKind.DELETE, chat_id, str(i), at=at) for i in data.get("ids") or []]
    if kind in ("MESSAGE_REACTION_ADD", "MESSAGE_REACTION_REMOVE"):
        reaction = Reaction(emoji_text(data.get("emoji")), str(data["user_id"]) if data.get("user_id") else None,
                            added=kind == "MESSAGE_REACTION_ADD")
        return [Change(ChangeKind.REACTION, _id(data, "channel_id"), _id(data, "message_id"), at=at, reaction=reaction)]
    if kind in ("CHANNEL_CREATE", "CHANNEL_UPDATE", "THREAD_CREATE", "THREAD_UPDATE"):
        return [chat_change(data)]
    if kind == "GUILD_CREATE":
        channels = [*(data.get("channels") or []), *(data.get("threads") or [])]
        return [chat_change(c) for c in channels if isinstance(c, dict) and c.get("type") in CHANNEL_TYPES]
    return []


def to_message(data: dict[str, Any], bot_id: str = "") -> Message:
    """A Discord message object (gateway or REST) as our Message."""
    chat_id, native_id = _id(data, "channel_id"), _id(data, "id")
    timestamp = data.get("timestamp")
    if not isinstance(timestamp, str):
        raise ValueError("Discord message has no timestamp")
    author = data.get("author") if isinstance(data.get("author"), dict) else {}
    member = data.get("member") if isinstance(data.get("member"), dict) else {}
    sender_id = str(author["id"]) if author.get("id") else None
    text = data.get("content") if isinstance(data.get("content"), str) else ""
    attachments = [
        Attachment(name=a.get("filename"), url=a.get("url"), content_type=a.get("content_type"),
                   size=a.get("size") if isinstance(a.get("size"), int) else None)
        for a in data.get("attachments") or [] if isinstance(a, dict)
    ]
    kind = data.get("type", 0)
    if kind not in CONTENT_TYPES:
        content_type = "system"
    elif text:
        content_type = "text"
    else:
        content_type = _media_kind(attachments[0].content_type) if attachments else "other"
    return Message(
        chat_id=chat_id,
        native_id=native_id,
        sent_at=iso_ms(timestamp),
        chat_type=ChatType.CHANNEL if data.get("guild_id") else ChatType.DM,
        reply_to_id=_reply_to(data),
        sender_id=sender_id,
        sender_name=member.get("nick") or author.get("global_name") or author.get("username"),
        is_self=bool(bot_id) and sender_id == bot_id,
        text=text,
        content_type=content_type,
        attachments=attachments,
        mentions=[str(u["id"]) for u in data.get("mentions") or [] if isinstance(u, dict) and u.get("id")],
        edited_at=iso_ms(data["edited_timestamp"]) if data.get("edited_timestamp") else None,
    )


def chat_change(channel: dict[str, Any]) -> Change:
    kind = channel.get("type")
    info = ChatInfo(name=channel.get("name") if isinstance(channel.get("name"), str) else None,
                    type=CHANNEL_TYPES.get(kind) if isinstance(kind, int) else None)
    return Change(ChangeKind.CHAT, _id(channel, "id"), "", chat=info)


def emoji_text(emoji: Any) -> str:
    """A unicode emoji as itself; a custom one as Discord writes it in text, `<:name:id>`."""
    if not isinstance(emoji, dict):
        raise ValueError("reaction without an emoji")
    if emoji.get("id"):
        return f"<{'a' if emoji.get('animated') else ''}:{emoji.get('name') or ''}:{emoji['id']}>"
    if not emoji.get("name"):
        raise ValueError("reaction emoji has neither id nor name")
    return str(emoji["name"])


def iso_ms(value: str) -> int:
    """Discord's ISO 8601 timestamps ("2026-11-30T11:40:00.123000+00:00") as epoch ms."""
    try:
        stamp = dtm.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        raise ValueError(f"not an ISO 8601 timestamp: {value!r}") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dtm.timezone.utc)
    return int(stamp.timestamp() * 1000)


def _reply_to(data: dict[str, Any]) -> str | None:
    """Only a reply (reference type 0, DEFAULT) names the message it answers; a forward
    (type 1) points at a message elsewhere that this one copies."""
    ref = data.get("message_reference")
    if not isinstance(ref, dict) or ref.get("type", 0) != 0 or not ref.get("message_id"):
        return None
    if data.get("type") == 21:  # a thread's starter message refers to where the thread began
        return None
    return str(ref["message_id"])


def _media_kind(mime: str | None) -> str:
    top = (mime or "").split("/")[0]
    return {"image": "image", "video": "video", "audio": "audio"}.get(top, "file")


def _id(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value).isdigit():
        raise ValueError(f"Discord payload without a snowflake `{key}`")
    return str(value)
