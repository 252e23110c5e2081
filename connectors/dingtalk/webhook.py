"""HTTP-mode robot callbacks (`POST /api/dingtalk/webhook/{accountId}`), for robots set to
"HTTP mode" instead of Stream mode: verify, hand the message on. No I/O.

DingTalk signs each callback with the app's secret: header `timestamp` (ms) and header
`sign` = base64(HMAC-SHA256(appSecret, timestamp + "\\n" + appSecret)); a timestamp more
than an hour from now is refused, as DingTalk's docs require. The body is the same robot
message JSON the Stream topic carries.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Callable

from connectors.base import WebhookEvent, WebhookRejected, WebhookReply, WebhookRequest
from connectors.dingtalk.inbound import stored_payload

MAX_SKEW_MS = 60 * 60 * 1000


def signature(secret: str, timestamp: str) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def handle_webhook(request: WebhookRequest, now: Callable[[], float] = time.time) -> WebhookReply:
    account = request.account
    if account is None:
        raise WebhookRejected(404, "DingTalk callbacks are per account: /api/dingtalk/webhook/{accountId}")
    secret = account.credentials.get("client_secret")
    stamp, given = request.headers.get("timestamp", ""), request.headers.get("sign", "")
    if not isinstance(secret, str) or not secret or not stamp.isdigit() or not given:
        raise WebhookRejected(401, "missing DingTalk signature")
    if abs(now() * 1000 - int(stamp)) > MAX_SKEW_MS:
        raise WebhookRejected(401, "stale DingTalk callback")
    if not hmac.compare_digest(given.encode(), signature(secret, stamp).encode()):
        raise WebhookRejected(401, "bad DingTalk signature")
    try:
        data = json.loads(request.body)
    except (UnicodeDecodeError, ValueError):
        raise WebhookRejected(400, "body is not JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("msgId"), str) or not data["msgId"]:
        raise WebhookRejected(400, "body is not a DingTalk robot message")
    return WebhookReply(200, {}, events=[WebhookEvent(delivery_id=data["msgId"], payload=stored_payload(data))])
