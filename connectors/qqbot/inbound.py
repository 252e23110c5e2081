"""QQ gateway dispatches -> changes. Pure: no I/O; tested on payloads shaped like QQ's docs.

The payload is the dispatch frame as received: `{"op": 0, "s", "t", "id", "d"}`.
- `GROUP_AT_MESSAGE_CREATE`: someone @-mentioned the bot in a group (bots see no other group
  messages): chat `group:{group_openid}`, the bot among the mentions.
- `C2C_MESSAGE_CREATE`: a direct message: chat `user:{user_openid}`.
- `GROUP_ADD_ROBOT`: the bot joined a group: the chat's info.
QQ tells bots of no edits, recalls or reactions; the bot's own sends are never dispatched back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from connectors.base import Account, Attachment, Change, ChangeKind, ChatInfo, ChatType, Envelope, Message

GROUP_AT, C2C, JOINED = "GROUP_AT_MESSAGE_CREATE", "C2C_MESSAGE_CREATE", "GROUP_ADD_ROBOT"
MESSAGES = (GROUP_AT, C2C)


def group_chat(group_openid: str) -> str:
    return f"group:{group_openid}"


def user_chat(user_openid: str) -> str:
    return f"user:{user_openid}"


def delivery_id(frame: dict[str, Any]) -> str:
    """Stable across RESUME replays: the message id for messages, QQ's event id otherwise."""
    d = frame.get("d") if isinstance(frame.get("d"), dict) else {}
    if frame.get("t") in MESSAGES and isinstance(d.get("id"), str):
        return f"{frame['t']}:{d['id']}"
    return str(frame.get("id") or f"{frame.get('t')}:{frame.get('s')}")


def normalize(envelope: Envelope, account: Account) -> list[Change]:
    frame = envelope.payload
    if not isinstance(frame, dict) or frame.get("op") != 0 or not isinstance(frame.get("t"), str):
        raise ValueError("not a QQ gateway dispatch")
    kind, d = frame["t"], frame.get("d")
    if kind in MESSAGES:
        message = _message(kind, d, account)
        return [Change(ChangeKind.UPSERT, message.chat_id, message.native_id, message)]
    if kind == JOINED and isinstance(d, dict) and isinstance(d.get("group_openid"), str):
        return [Change(ChangeKind.CHAT, group_chat(d["group_openid"]), "", chat=ChatInfo(type=ChatType.GROUP))]
    return []


def _message(kind: str, d: Any, account: Account) -> Message:
    if not isinstance(d, dict) or not isinstance(d.get("id"), str) or not isinstance(d.get("author"), dict):
        raise ValueError(f"QQ {kind} lacks id or author")
    author = d["author"]
    if kind == GROUP_AT:
        group, sender = d.get("group_openid") or d.get("group_id"), author.get("member_openid") or author.get("id")
        if not isinstance(group, str):
            raise ValueError("QQ group message lacks group_openid")
        chat_id, chat_type, mentions = group_chat(group), ChatType.GROUP, [account.external_id]
    else:
        sender = author.get("user_openid") or author.get("id")
        if not isinstance(sender, str):
            raise ValueError("QQ direct message lacks author.user_openid")
        chat_id, chat_type, mentions = user_chat(sender), ChatType.DM, []
    reference = d.get("message_reference") if isinstance(d.get("message_reference"), dict) else {}
    attachments = [_attachment(a) for a in d.get("attachments") or () if isinstance(a, dict)]
    text = d.get("content") if isinstance(d.get("content"), str) else ""
    return Message(
        chat_id=chat_id,
        native_id=d["id"],
        sent_at=_ms(d.get("timestamp")),
        chat_type=chat_type,
        reply_to_id=reference.get("message_id") if isinstance(reference.get("message_id"), str) else None,
        sender_id=str(sender) if sender else None,
        text=text.strip(),  # QQ keeps the space that followed the stripped @bot
        content_type="text" if text.strip() or not attachments else "file",
        attachments=attachments,
        mentions=mentions,
    )


def _attachment(a: dict[str, Any]) -> Attachment:
    size = a.get("size")
    url = a.get("url") if isinstance(a.get("url"), str) else None
    if url and url.startswith("//"):
        url = "https:" + url
    return Attachment(
        name=a.get("filename") if isinstance(a.get("filename"), str) else None,
        url=url,
        content_type=a.get("content_type") if isinstance(a.get("content_type"), str) else None,
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
    )


def _ms(timestamp: Any) -> int:
    if isinstance(timestamp, str):
        try:
            return int(datetime.fromisoformat(timestamp).timestamp() * 1000)
        except ValueError:
            pass
    raise ValueError(f"QQ timestamp is not ISO 8601: {timestamp!r}")
