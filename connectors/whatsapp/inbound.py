"""One queued WhatsApp event -> normalized changes. Pure.

Payload (what webhook.py queues): `{"phone_number_id", "display_phone_number", "contact",
"message"}` or `{…, "status"}`. Every conversation is a direct chat with one person, whose
wa_id is the chat id (it is also what `send` needs as `to`).
Messages (Cloud API webhook reference): `text.body`; `image|video|audio|document|sticker`
(media id, `mime_type`, `caption`, document `filename`) as an attachment with the caption as
text; `location`, `contacts`, `button`, `interactive` replies, `system` notices as text;
`reaction {message_id, emoji}` as REACTIONs on the reacted message (one per person: the
sender's earlier one is taken back first; emoji "" = taken back);
`context.id` is the message replied to (`context.forwarded` alone is no reply); `unsupported`
(what Meta sends for message kinds the API does not carry) is kept with empty text.
Statuses `{id, status: sent|delivered|read|failed, timestamp, recipient_id}` report on OUR
sent messages: a STATUS change, which the store applies to the outbound row and never moves back.
"""

from __future__ import annotations

from typing import Any

from connectors.base import Account, Attachment, Change, ChangeKind, ChatType, Envelope, Message, Reaction

MEDIA = ("image", "video", "audio", "document", "sticker")


def normalize(envelope: Envelope, account: Account | None = None) -> list[Change]:
    payload = envelope.payload
    if not isinstance(payload, dict):
        raise ValueError("not a WhatsApp event")
    if isinstance(payload.get("status"), dict):
        return _status(payload["status"])
    message = payload.get("message")
    if not isinstance(message, dict) or not message.get("id") or not message.get("from"):
        raise ValueError("WhatsApp event without a message id and sender")
    sender, at = str(message["from"]), _ms(message.get("timestamp"))
    kind = str(message.get("type") or "unknown")
    if kind == "reaction":
        reaction = message.get("reaction") or {}
        if not reaction.get("message_id"):
            raise ValueError("WhatsApp reaction without message_id")
        # one reaction per person: a new emoji replaces theirs, "" takes it back
        target, emoji = str(reaction["message_id"]), str(reaction.get("emoji") or "")
        cleared = Change(ChangeKind.REACTION, sender, target, at=at, reaction=Reaction("", sender, added=False))
        if not emoji:
            return [cleared]
        return [cleared, Change(ChangeKind.REACTION, sender, target, at=at, reaction=Reaction(emoji, sender))]
    contact = payload.get("contact") if isinstance(payload.get("contact"), dict) else {}
    name = (contact.get("profile") or {}).get("name")
    context = message.get("context") if isinstance(message.get("context"), dict) else {}
    msg = Message(
        chat_id=sender,
        native_id=str(message["id"]),
        sent_at=at,
        chat_type=ChatType.DM,
        chat_name=name,
        reply_to_id=str(context["id"]) if context.get("id") and not context.get("forwarded") else None,
        sender_id=sender,
        sender_name=name,
        is_self=False,  # the Cloud API never delivers the business's own messages back
        text=_text(kind, message),
        content_type=kind,
        attachments=_attachments(kind, message),
    )
    return [Change(ChangeKind.UPSERT, msg.chat_id, msg.native_id, msg)]


def _status(status: dict[str, Any]) -> list[Change]:
    if not status.get("id") or not status.get("recipient_id"):
        raise ValueError("WhatsApp status without id or recipient")
    return [Change(ChangeKind.STATUS, str(status["recipient_id"]), str(status["id"]),
                   at=_ms(status.get("timestamp")), status=str(status.get("status") or ""))]


def _ms(timestamp: Any) -> int:
    try:
        return int(timestamp) * 1000
    except (TypeError, ValueError):
        raise ValueError(f"WhatsApp timestamp is not a number: {timestamp!r}") from None


def _text(kind: str, message: dict[str, Any]) -> str:
    body = message.get(kind) if isinstance(message.get(kind), dict) else {}
    if kind == "text":
        return str(body.get("body") or "")
    if kind in MEDIA:
        return str(body.get("caption") or "")
    if kind == "location":
        place = " — ".join(str(p) for p in (body.get("name"), body.get("address")) if p)
        return place or f"{body.get('latitude')},{body.get('longitude')}"
    if kind == "contacts":
        return ", ".join(str((c.get("name") or {}).get("formatted_name") or "") for c in message.get("contacts") or [])
    if kind == "button":
        return str(body.get("text") or "")
    if kind == "interactive":
        reply = body.get("button_reply") or body.get("list_reply") or {}
        return str(reply.get("title") or "")
    if kind == "system":
        return str(body.get("body") or "")
    return ""


def _attachments(kind: str, message: dict[str, Any]) -> list[Attachment]:
    """The media id stays in the raw payload: fetching it (`GET /{media-id}`, then its URL with
    the token) needs the account's credentials, which normalize must not use."""
    if kind not in MEDIA or not isinstance(message.get(kind), dict):
        return []
    media = message[kind]
    return [Attachment(name=media.get("filename"), content_type=media.get("mime_type"))]
