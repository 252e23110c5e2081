"""The listener's JSON (Telethon `to_dict()` of a Message, see payload.py) -> changes (pure).

Chat ids are Telethon's marked peer ids: a user's id, `-<chat id>` for a basic group,
`-100<channel id>` for channels and supergroups. Text offsets are UTF-16 code units.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from connectors.base import Account, Attachment, Change, ChangeKind, ChatType, Envelope, Message, Reaction

CHAT_TYPES = {"user": ChatType.DM, "group": ChatType.GROUP, "megagroup": ChatType.GROUP, "channel": ChatType.CHANNEL}
PEER_TYPES = {"PeerUser": ChatType.DM, "PeerChat": ChatType.GROUP, "PeerChannel": ChatType.CHANNEL}


def ms(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp).timestamp() * 1000)


def _peer_id(peer: dict[str, Any] | None) -> str | None:
    if not peer:
        return None
    for key in ("user_id", "channel_id", "chat_id"):
        if peer.get(key) is not None:
            return str(peer[key])
    return None


def _utf16(text: str, offset: int, length: int) -> str:
    raw = text.encode("utf-16-le")
    return raw[offset * 2:(offset + length) * 2].decode("utf-16-le", errors="replace")


def _mentions(text: str, entities: list[dict[str, Any]]) -> list[str]:
    found = []
    for entity in entities or []:
        if entity.get("_") in ("MessageEntityMentionName", "InputMessageEntityMentionName"):
            found.append(str(entity["user_id"]))
        elif entity.get("_") == "MessageEntityMention":
            found.append(_utf16(text, entity["offset"], entity["length"]))
    return found


def _attachments(media: dict[str, Any] | None) -> list[Attachment]:
    if not media:
        return []
    kind = media.get("_")
    if kind == "MessageMediaPhoto":
        photo = media.get("photo") or {}
        sizes = [s.get("size") for s in photo.get("sizes", []) if isinstance(s.get("size"), int)]
        return [Attachment(name=f"photo_{photo.get('id')}.jpg", content_type="image/jpeg", size=max(sizes) if sizes else None)]
    if kind == "MessageMediaDocument":
        doc = media.get("document") or {}
        name = next((a.get("file_name") for a in doc.get("attributes", []) if a.get("_") == "DocumentAttributeFilename"), None)
        return [Attachment(name=name or f"document_{doc.get('id')}", content_type=doc.get("mime_type"), size=doc.get("size"))]
    if kind in ("MessageMediaWebPage", "MessageMediaEmpty", None):
        return []
    return [Attachment(name=kind, content_type="application/x-telegram-" + kind.removeprefix("MessageMedia").lower())]


def _message(payload: dict[str, Any], account: Account) -> Message:
    msg = payload["message"]
    chat = payload.get("chat") or {}
    sender = payload.get("sender") or {}
    chat_type = CHAT_TYPES.get(chat.get("type", ""), PEER_TYPES.get(msg["peer_id"]["_"], ChatType.CHANNEL))
    sender_id = _peer_id(msg.get("from_id"))
    if sender_id is None and chat_type is ChatType.DM:  # private chats name no sender: it is the peer or us
        sender_id = account.external_id if msg.get("out") else _peer_id(msg["peer_id"])
    reply = msg.get("reply_to") or {}
    text = msg.get("message") or ""
    return Message(
        chat_id=str(payload["chat_id"]),
        native_id=str(msg["id"]),
        sent_at=ms(msg["date"]),
        chat_type=chat_type,
        chat_name=chat.get("title"),
        thread_id=str(reply["reply_to_top_id"]) if reply.get("reply_to_top_id") else None,
        reply_to_id=str(reply["reply_to_msg_id"]) if reply.get("reply_to_msg_id") else None,
        sender_id=sender_id,
        sender_name=sender.get("name") if sender.get("id") == sender_id else None,
        is_self=bool(msg.get("out")) or sender_id == account.external_id,
        text=text,
        attachments=_attachments(msg.get("media")),
        mentions=_mentions(text, msg.get("entities") or []),
        edited_at=ms(msg["edit_date"]) if msg.get("edit_date") else None,
    )


def _reactions(payload: dict[str, Any]) -> list[Change]:
    """The reactions Telegram lists with who gave them (`recent_reactions`: private chats and
    small groups). It sends the new totals, not what changed, so a removal is not seen here."""
    changes = []
    for given in payload["reactions"].get("recent_reactions") or []:
        emoji = (given.get("reaction") or {}).get("emoticon")
        if emoji:
            reaction = Reaction(emoji=emoji, sender_id=_peer_id(given.get("peer_id")), added=True)
            changes.append(Change(ChangeKind.REACTION, str(payload["chat_id"]), str(payload["msg_id"]),
                                  reaction=reaction, at=ms(given["date"]) if given.get("date") else int(payload["at"])))
    return changes


def normalize(envelope: Envelope, account: Account) -> list[Change]:
    payload = envelope.payload
    kind = payload.get("kind")
    try:
        if kind == "delete":
            return [Change(ChangeKind.DELETE, str(payload["chat_id"]), str(i), at=int(payload["at"])) for i in payload["ids"]]
        if kind == "reactions":
            return _reactions(payload)
        if kind in ("message", "edit"):
            if payload["message"].get("_") != "Message":
                return []  # service messages (joins, pins, title changes) carry no text
            message = _message(payload, account)
            if kind == "edit":
                at = message.edited_at or message.sent_at
                return [Change(ChangeKind.EDIT, message.chat_id, message.native_id, message=message, at=at)]
            return [Change(ChangeKind.UPSERT, message.chat_id, message.native_id, message=message)]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"unreadable Telegram payload: {type(err).__name__}: {err}") from None
    raise ValueError(f"unknown Telegram payload kind {kind!r}")
