"""A callback's decrypted XML -> normalized changes. Pure; wechatpy parses the XML.

Payload (what webhook.py queues): `{"xml": "<xml>…</xml>", "kind": "oa"|"wecom", "mode":
"plain"|"aes"}` — the message exactly as WeChat sent it (after decryption). Each follower
(openid) or WeCom member (UserID) is one direct chat with the account. Messages: text, image
(`PicUrl`), voice (`Recognition` when speech recognition is on), video/shortvideo, location,
link, mini-program page. Events (subscribe, menu clicks…) carry no message: no change.
WeChat has no edits, deletes, reactions, threads or mentions in this channel.
"""

from __future__ import annotations

from typing import Any

from wechatpy import parse_message
from wechatpy.enterprise import parse_message as parse_wecom_message

from connectors.base import Account, Attachment, Change, ChangeKind, ChatType, Envelope, Message

MEDIA = {"image": ("image", "image/jpeg"), "voice": ("voice", None), "video": ("video", "video/mp4"),
         "shortvideo": ("video", "video/mp4")}


def normalize(envelope: Envelope, account: Account | None = None) -> list[Change]:
    payload = envelope.payload
    xml = payload.get("xml") if isinstance(payload, dict) else None
    if not isinstance(xml, str) or not xml.strip():
        raise ValueError("not a WeChat callback payload: no xml")
    try:
        msg = (parse_wecom_message if payload.get("kind") == "wecom" else parse_message)(xml)
    except Exception as err:  # noqa: BLE001 - expat and missing-field errors alike
        raise ValueError(f"unreadable WeChat XML: {type(err).__name__}") from None
    if msg is None or msg.type in ("event", "unknown") or not msg.id:
        return []  # events and types wechatpy does not know carry no message
    if not msg.source:
        raise ValueError("WeChat message has no FromUserName")
    message = Message(
        chat_id=msg.source,
        native_id=str(msg.id),
        sent_at=int(msg.time or 0) * 1000,
        chat_type=ChatType.DM,
        sender_id=msg.source,
        is_self=False,  # WeChat never calls back with the account's own messages
        text=_text(msg),
        content_type=MEDIA[msg.type][0] if msg.type in MEDIA else msg.type,
        attachments=_attachments(msg),
    )
    return [Change(ChangeKind.UPSERT, message.chat_id, message.native_id, message)]


def _text(msg: Any) -> str:
    kind = msg.type
    if kind == "text":
        return msg.content or ""
    if kind == "voice":
        return msg.recognition or ""
    if kind == "location":
        return msg.label or f"{msg.location_x},{msg.location_y}"
    if kind in ("link", "miniprogrampage"):
        return "\n".join(p for p in (msg.title, getattr(msg, "description", None), getattr(msg, "url", None)) if p)
    return ""


def _attachments(msg: Any) -> list[Attachment]:
    """Images come with a `PicUrl`; other media only with a `MediaId` (fetched with the API's
    temporary-media call, which needs the app secret), kept in the raw payload."""
    if msg.type not in MEDIA:
        return []
    mime = MEDIA[msg.type][1]
    if msg.type == "voice" and getattr(msg, "format", None):
        mime = f"audio/{msg.format.lower()}"
    return [Attachment(url=getattr(msg, "image", None) if msg.type == "image" else None, content_type=mime)]
