"""X payloads as the listener emits them -> normalized changes (pure).

Payloads: `{"type": "mention", "tweet": {...}, "users": [...], "media": [...]}` and
`{"type": "dm", "event": {...}, "users": [...], "media": [...]}`: the API v2 objects with the
users and media of their `includes` that they name. Chats: a DM conversation keeps X's
`dm_conversation_id` ("<small id>-<large id>" one-to-one, a number for groups); the tweets of a
conversation that mention the person are one chat `t:<conversation_id>` (a thread). An edited
tweet arrives under a new id whose `edit_history_tweet_ids` starts with the first one: it is an
EDIT of that first id.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from connectors.base import Account, Attachment, Change, ChangeKind, ChatType, Envelope, Message

TWEET_CHAT = "t:"
MEDIA_TYPES = {"photo": "image/jpeg", "video": "video/mp4", "animated_gif": "video/mp4"}


def ms(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)


def _attachments(payload: dict[str, Any]) -> list[Attachment]:
    return [Attachment(name=m.get("media_key"), url=m.get("url") or m.get("preview_image_url"),
                       content_type=MEDIA_TYPES.get(m.get("type", ""), "application/octet-stream"))
            for m in payload.get("media", [])]


def _name(payload: dict[str, Any], user_id: str | None) -> str | None:
    user = next((u for u in payload.get("users", []) if u.get("id") == user_id), None)
    return f"@{user['username']}" if user else None


def _tweet(payload: dict[str, Any], account: Account) -> list[Change]:
    tweet = payload["tweet"]
    history = tweet.get("edit_history_tweet_ids") or [tweet["id"]]
    first = str(history[0])
    chat_id = TWEET_CHAT + str(tweet.get("conversation_id") or first)
    replied = next((r["id"] for r in tweet.get("referenced_tweets", []) if r.get("type") == "replied_to"), None)
    at = ms(tweet["created_at"])
    message = Message(
        chat_id=chat_id,
        native_id=first,
        sent_at=at,
        chat_type=ChatType.THREAD,
        thread_id=str(tweet.get("conversation_id") or first),
        reply_to_id=str(replied) if replied else None,
        sender_id=str(tweet["author_id"]),
        sender_name=_name(payload, tweet["author_id"]),
        is_self=str(tweet["author_id"]) == account.external_id,
        text=tweet.get("text", ""),
        attachments=_attachments(payload),
        mentions=[str(m["id"]) for m in tweet.get("entities", {}).get("mentions", []) if m.get("id")],
        edited_at=at if len(history) > 1 else None,
    )
    if len(history) > 1:
        return [Change(ChangeKind.EDIT, chat_id, first, message=message, at=at)]
    return [Change(ChangeKind.UPSERT, chat_id, first, message=message)]


def _dm(payload: dict[str, Any], account: Account) -> list[Change]:
    event = payload["event"]
    if event.get("event_type", "MessageCreate") != "MessageCreate":
        return []
    chat_id = str(event["dm_conversation_id"])
    parts = chat_id.split("-")
    one_to_one = len(parts) == 2
    other = next((p for p in parts if p != account.external_id), None) if one_to_one else None
    sender = str(event["sender_id"])
    message = Message(
        chat_id=chat_id,
        native_id=str(event["id"]),
        sent_at=ms(event["created_at"]),
        chat_type=ChatType.DM if one_to_one else ChatType.GROUP,
        chat_name=_name(payload, other) if other else None,
        sender_id=sender,
        sender_name=_name(payload, sender),
        is_self=sender == account.external_id,
        text=event.get("text", ""),
        attachments=_attachments(payload),
    )
    return [Change(ChangeKind.UPSERT, chat_id, message.native_id, message=message)]


def normalize(envelope: Envelope, account: Account) -> list[Change]:
    payload = envelope.payload
    try:
        if payload.get("type") == "mention":
            return _tweet(payload, account)
        if payload.get("type") == "dm":
            return _dm(payload, account)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"unreadable X payload: {type(err).__name__}: {err}") from None
    raise ValueError(f"unknown X payload type {payload.get('type')!r}")
