"""The webhook route's WhatsApp half: Meta's verification echo (GET) and signed deliveries
(POST). Pure: no I/O.

GET `?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…` -> the challenge as plain text
when the token is the account's, else 403. POST: `X-Hub-Signature-256: sha256=<hex>` is
HMAC-SHA256 of the raw body with the app secret; missing or wrong -> 401, nothing queued.
A delivery (`object: whatsapp_business_account`) batches `entry[].changes[]`; each change with
`field: messages` has `value.metadata.phone_number_id` and `messages[]` (with `contacts[]`)
and/or `statuses[]`. Each message and each status becomes its own event, so the stored raw
payload is one message: delivery id = the message's wamid (a status: wamid:status). Meta
retries a delivery that is not answered 2xx, for up to 7 days; redelivery is harmless (the
store is keyed by native id). Changes for another phone number of the same app are dropped:
the URL is this account's (Meta's per-number webhook override gives each number its own URL).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson

from connectors.base import Account, WebhookEvent, WebhookRejected, WebhookReply, WebhookRequest


def verify_webhook(request: WebhookRequest) -> WebhookReply:
    account = _account(request)
    q = request.query
    token = q.get("hub.verify_token") or ""
    if q.get("hub.mode") != "subscribe" or not hmac.compare_digest(token.encode(), account.credentials["verify_token"].encode()):
        raise WebhookRejected(403, "hub.mode is not subscribe or hub.verify_token does not match")
    challenge = q.get("hub.challenge")
    if not challenge:
        raise WebhookRejected(400, "no hub.challenge")
    return WebhookReply(text=challenge)


def handle_webhook(request: WebhookRequest) -> WebhookReply:
    account = _account(request)
    check_signature(request.body, request.headers.get("x-hub-signature-256"), account.credentials["app_secret"])
    try:
        delivery = orjson.loads(request.body)
    except orjson.JSONDecodeError:
        raise WebhookRejected(400, "body is not JSON") from None
    if not isinstance(delivery, dict) or delivery.get("object") != "whatsapp_business_account":
        raise WebhookRejected(400, "not a WhatsApp Business Account delivery")
    return WebhookReply(body={"ok": True}, events=events(delivery, account.external_id))


def check_signature(body: bytes, header: str | None, app_secret: str) -> None:
    if not header or not header.startswith("sha256="):
        raise WebhookRejected(401, "missing X-Hub-Signature-256")
    expected = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, header.removeprefix("sha256=").strip().lower()):
        raise WebhookRejected(401, "wrong X-Hub-Signature-256")


def events(delivery: dict[str, Any], phone_number_id: str) -> list[WebhookEvent]:
    out: list[WebhookEvent] = []
    for entry in _list(delivery.get("entry")):
        for change in _list(entry.get("changes") if isinstance(entry, dict) else None):
            if not isinstance(change, dict) or change.get("field") != "messages" or not isinstance(change.get("value"), dict):
                continue
            value = change["value"]
            metadata = value.get("metadata") if isinstance(value.get("metadata"), dict) else {}
            if str(metadata.get("phone_number_id")) != phone_number_id:
                continue
            contacts = {str(c.get("wa_id")): c for c in _list(value.get("contacts")) if isinstance(c, dict)}
            base = {"phone_number_id": phone_number_id, "display_phone_number": metadata.get("display_phone_number")}
            for message in _list(value.get("messages")):
                if isinstance(message, dict) and message.get("id"):
                    contact = contacts.get(str(message.get("from")))
                    out.append(WebhookEvent(str(message["id"]), {**base, "contact": contact, "message": message}))
            for status in _list(value.get("statuses")):
                if isinstance(status, dict) and status.get("id") and status.get("status"):
                    out.append(WebhookEvent(f"{status['id']}:{status['status']}", {**base, "status": status}))
    return out


def _account(request: WebhookRequest) -> Account:
    if request.account is None:
        raise WebhookRejected(404, "WhatsApp deliveries are per account: /api/whatsapp/webhook/{accountId}")
    creds = request.account.credentials
    if not creds.get("app_secret") or not creds.get("verify_token"):
        raise WebhookRejected(401, "this account has no app secret or verify token")
    return request.account


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
