"""Slack payloads -> changes. Pure: no I/O, no clock; tested on recorded payloads.

Two payload shapes reach `normalize`, both plain JSON:
- an Events API body (`"type": "event_callback"`), the same whether it came over Socket Mode
  (the envelope's `payload`) or the HTTP webhook, so both paths normalize identically;
- a backfill record made by history.py:
  `{"type": "history", "team_id", "channel", "channel_type", "channel_name", "message": {...},
    "authorizations": [{"user_id": bot_user_id, "bot_id": bot_id, "is_bot": true}]}`.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from connectors.base import Account, Attachment, Change, ChangeKind, ChatInfo, ChatType, Envelope, Message, Reaction

HISTORY = "history"  # the `type` of backfill payloads

CHAT_TYPES = {"im": ChatType.DM, "mpim": ChatType.GROUP, "channel": ChatType.CHANNEL, "group": ChatType.CHANNEL}

# Message subtypes that carry what a person wrote; any other visible subtype (channel_join,
# channel_topic, …) is kept with content_type "system".
CONTENT_SUBTYPES = frozenset({None, "file_share", "thread_broadcast", "bot_message", "me_message"})

_MENTION = re.compile(r"<@([UW][A-Z0-9]+)(?:\|[^>]*)?>")


def ts_ms(ts: Any) -> int:
    """A Slack `ts` ("1700000000.123456") as integer milliseconds; ValueError if it is none."""
    if not isinstance(ts, (str, int, float)) or isinstance(ts, bool):
        raise ValueError(f"not a Slack ts: {ts!r}")
    sec, _, frac = str(ts).partition(".")
    if not sec.isdigit() or (frac and not frac.isdigit()):
        raise ValueError(f"not a Slack ts: {ts!r}")
    return int(sec) * 1000 + int((frac + "000")[:3])


def self_ids(account: Account) -> frozenset[str]:
    """Our bot's user id and bot id, from the account's credentials (oauth.py)."""
    ids = {account.credentials.get("bot_user_id"), account.credentials.get("bot_id")}
    return frozenset(str(i) for i in ids if i)


def normalize(envelope: Envelope, account: Account) -> list[Change]:
    payload = envelope.payload
    if not isinstance(payload, dict):
        raise ValueError("Slack payload is not an object")
    kind = payload.get("type")
    if kind == "event_callback":
        event = payload.get("event")
        if not isinstance(event, dict):
            raise ValueError("event_callback without an event object")
        if event.get("type") in ("reaction_added", "reaction_removed"):
            return _reaction_event(event)
        if event.get("type") in ("channel_rename", "group_rename"):
            return _rename_event(event)
        if event.get("type") != "message":
            return []
        return _message_event(event, self_ids(account))
    if kind == HISTORY:
        message = payload.get("message")
        if not isinstance(message, dict):
            raise ValueError("history payload without a message object")
        channel = _required(payload, "channel")
        mine = self_ids(account)
        return [_upsert(message, channel, payload.get("channel_type"), mine, payload.get("channel_name"))]
    if isinstance(kind, str):
        return []  # url_verification, app_rate_limited, …: nothing to store
    raise ValueError("Slack payload without a type")


def _reaction_event(event: dict[str, Any]) -> list[Change]:
    """`reaction_added` / `reaction_removed` on a message (reactions on files are not stored)."""
    item = event.get("item")
    if not isinstance(item, dict) or item.get("type") != "message":
        return []
    emoji = _required(event, "reaction")
    user = event.get("user") if isinstance(event.get("user"), str) else None
    added = event["type"] == "reaction_added"
    at = ts_ms(event.get("event_ts")) if event.get("event_ts") else None
    return [Change(ChangeKind.REACTION, _required(item, "channel"), _required(item, "ts"), at=at,
                   reaction=Reaction(emoji, user, added))]


def _rename_event(event: dict[str, Any]) -> list[Change]:
    channel = event.get("channel")
    if not isinstance(channel, dict):
        raise ValueError("rename event without a channel object")
    return [Change(ChangeKind.CHAT, _required(channel, "id"), "", chat=ChatInfo(name=channel.get("name")))]


def _message_event(event: dict[str, Any], mine: frozenset[str]) -> list[Change]:
    channel = _required(event, "channel")
    channel_type = event.get("channel_type")
    subtype = event.get("subtype")
    if subtype == "message_changed":
        message = event.get("message")
        if not isinstance(message, dict):
            raise ValueError("message_changed without a message object")
        native_id = _required(message, "ts")
        edited = message.get("edited") if isinstance(message.get("edited"), dict) else {}
        at = ts_ms(edited.get("ts") or event.get("event_ts") or event.get("ts"))
        if message.get("subtype") == "tombstone":  # a thread parent deleted while replies remain
            return [Change(ChangeKind.DELETE, channel, native_id, at=at)]
        change = _upsert(message, channel, channel_type, mine)
        assert change.message is not None
        change.message.edited_at = at
        return [Change(ChangeKind.EDIT, channel, native_id, message=change.message, at=at)]
    if subtype == "message_deleted":
        native_id = _required(event, "deleted_ts")
        return [Change(ChangeKind.DELETE, channel, native_id, at=ts_ms(event.get("event_ts") or event.get("ts")))]
    if event.get("hidden"):
        return []  # message_replied and other bookkeeping notices
    return [_upsert(event, channel, channel_type, mine)]


def _upsert(
    msg: dict[str, Any],
    channel: str,
    channel_type: Any,
    mine: frozenset[str],
    chat_name: Any = None,
) -> Change:
    ts = _required(msg, "ts")
    thread_ts = msg.get("thread_ts")
    thread_ts = str(thread_ts) if thread_ts else None
    is_reply = thread_ts is not None and thread_ts != ts
    has_replies = bool(msg.get("reply_count")) or bool(msg.get("latest_reply"))
    sender = msg.get("user") or msg.get("bot_id")
    text = msg.get("text")
    if text is not None and not isinstance(text, str):
        raise ValueError("message text is not a string")
    files = msg.get("files") or []
    if not isinstance(files, list):
        raise ValueError("message files is not a list")
    attachments = [_attachment(f) for f in files if isinstance(f, dict)]
    subtype = msg.get("subtype")
    if subtype not in CONTENT_SUBTYPES:
        content_type = "system"
    elif attachments and not text:
        content_type = "file"
    else:
        content_type = "text"
    edited = msg.get("edited")
    message = Message(
        chat_id=channel,
        native_id=ts,
        sent_at=ts_ms(ts),
        chat_type=CHAT_TYPES.get(str(channel_type), ChatType.CHANNEL),
        chat_name=str(chat_name) if chat_name else None,
        thread_id=thread_ts if (is_reply or has_replies) else None,
        reply_to_id=thread_ts if is_reply else None,
        sender_id=str(sender) if sender else None,
        sender_name=_sender_name(msg),
        is_self=bool(mine) and bool({msg.get("user"), msg.get("bot_id")} & mine),
        text=text or "",
        content_type=content_type,
        attachments=attachments,
        mentions=_dedup(_MENTION.findall(text or "")),
        edited_at=ts_ms(edited["ts"]) if isinstance(edited, dict) and edited.get("ts") else None,
    )
    return Change(ChangeKind.UPSERT, channel, ts, message=message)


def _attachment(f: dict[str, Any]) -> Attachment:
    size = f.get("size")
    return Attachment(
        name=f.get("name") or f.get("title"),
        url=f.get("url_private") or f.get("permalink"),
        content_type=f.get("mimetype"),
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
    )


def _sender_name(msg: dict[str, Any]) -> str | None:
    profile = msg.get("user_profile") if isinstance(msg.get("user_profile"), dict) else {}
    bot = msg.get("bot_profile") if isinstance(msg.get("bot_profile"), dict) else {}
    name = (profile.get("display_name") or profile.get("real_name") or profile.get("name")
            or msg.get("username") or bot.get("name"))
    return str(name) if name else None


def _required(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"Slack payload without {key!r}")
    return value


def _dedup(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def without_secrets(payload: dict[str, Any]) -> dict[str, Any]:
    """The event body minus Slack's legacy verification `token`: it authenticates Slack to the
    app and must not sit in the store or the queue in plain text."""
    return {key: value for key, value in payload.items() if key != "token"}
