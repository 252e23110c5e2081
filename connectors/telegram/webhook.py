"""The webhook route's Telegram half: check the secret token, hand back the Update.

Telegram sends the `secret_token` given to setWebhook in `X-Telegram-Bot-Api-Secret-Token` on
every delivery; each account has its own secret, so the route is per account
(`/api/telegram/webhook/{accountId}`). One POST carries one Update.
"""

from __future__ import annotations

import hmac
import json

from connectors.base import WebhookEvent, WebhookRejected, WebhookReply, WebhookRequest

SECRET_HEADER = "x-telegram-bot-api-secret-token"


def handle_webhook(request: WebhookRequest) -> WebhookReply:
    account = request.account
    if account is None:
        raise WebhookRejected(404, "Telegram webhooks are per account: /api/telegram/webhook/{accountId}")
    expected = account.credentials.get("webhook_secret")
    given = next((v for k, v in request.headers.items() if k.lower() == SECRET_HEADER), None)
    if not isinstance(expected, str) or not expected or given is None:
        raise WebhookRejected(401, "missing secret token")
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise WebhookRejected(401, "wrong secret token")
    try:
        update = json.loads(request.body)
    except ValueError:
        raise WebhookRejected(400, "body is not JSON") from None
    update_id = update.get("update_id") if isinstance(update, dict) else None
    if not isinstance(update_id, int) or isinstance(update_id, bool):
        raise WebhookRejected(400, "body is not a Telegram Update")
    return WebhookReply(events=[WebhookEvent(delivery_id=str(update_id), payload=update)])
