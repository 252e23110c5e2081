"""The HTTP event callback (`POST /api/feishu/webhook/{accountId}`): verify, decrypt, hand on.

Per Feishu's event subscription docs: with an Encrypt Key the body is `{"encrypt": b64(iv +
AES-256-CBC(json))}` with key sha256(encrypt_key) (decrypted with lark-oapi's AESCipher), and
every event request is signed: `X-Lark-Signature` = sha256 hex of `X-Lark-Request-Timestamp +
X-Lark-Request-Nonce + encrypt_key + raw body`. The Verification Token travels inside the
(decrypted) body: `header.token` on v2 events, `token` on the `url_verification` challenge,
which is answered with `{"challenge"}` after the token check (Feishu does not sign it).

An account with an encrypt key refuses plain bodies and unsigned or stale (over 5 minutes)
requests; one with neither key nor token refuses everything. No I/O here: the route queues the
events (delivery id = `header.event_id`), then answers 200.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any, Callable

from lark_oapi.core.utils.decryptor import AESCipher

from connectors.base import WebhookEvent, WebhookRejected, WebhookReply, WebhookRequest

MAX_AGE_SECONDS = 5 * 60


def handle_webhook(request: WebhookRequest, now: Callable[[], float] = time.time) -> WebhookReply:
    account = request.account
    if account is None:
        raise WebhookRejected(404, "Feishu callbacks are per account: /api/feishu/webhook/{accountId}")
    encrypt_key = account.credentials.get("encrypt_key") or ""
    token = account.credentials.get("verification_token") or ""
    if not encrypt_key and not token:
        raise WebhookRejected(401, "this account has no encryptKey or verificationToken to check callbacks with")
    body = _json(request.body)
    if "encrypt" in body:
        if not encrypt_key:
            raise WebhookRejected(401, "encrypted callback but no encryptKey for this account")
        try:
            body = _json(AESCipher(encrypt_key).decrypt_str(str(body["encrypt"])).encode())
        except (ValueError, TypeError):
            raise WebhookRejected(401, "callback does not decrypt with this account's encryptKey") from None
    elif encrypt_key:
        raise WebhookRejected(401, "plain callback for an account with an encryptKey")
    if body.get("type") == "url_verification":
        _check_token(token, body.get("token"))
        return WebhookReply(200, {"challenge": str(body.get("challenge", ""))})
    if encrypt_key:
        _check_signature(request, encrypt_key, now())
    header = body.get("header") if isinstance(body.get("header"), dict) else None
    if body.get("schema") != "2.0" or header is None or not isinstance(body.get("event"), dict):
        raise WebhookRejected(400, "not a Feishu v2 event")
    _check_token(token, header.get("token"))
    event_id = header.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        raise WebhookRejected(400, "event without header.event_id")
    payload = {**body, "header": {k: v for k, v in header.items() if k != "token"}}  # the token is a secret
    return WebhookReply(200, {"msg": "success"},
                        events=[WebhookEvent(delivery_id=event_id, payload=payload, external_id=header.get("app_id"))])


def _json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        raise WebhookRejected(400, "body is not JSON") from None
    if not isinstance(body, dict):
        raise WebhookRejected(400, "body is not a JSON object")
    return body


def _check_token(expected: str, given: Any) -> None:
    if not expected:
        return  # only an encrypt key was configured: decryption plus signature vouch for it
    if not isinstance(given, str) or not hmac.compare_digest(given.encode(), expected.encode()):
        raise WebhookRejected(401, "wrong verification token")


def _check_signature(request: WebhookRequest, encrypt_key: str, now: float) -> None:
    stamp = request.headers.get("x-lark-request-timestamp", "")
    nonce = request.headers.get("x-lark-request-nonce", "")
    signature = request.headers.get("x-lark-signature", "")
    if not stamp.isdigit() or not nonce or not signature:
        raise WebhookRejected(401, "unsigned callback")
    if abs(now - int(stamp)) > MAX_AGE_SECONDS:
        raise WebhookRejected(401, "stale callback")
    expected = hashlib.sha256((stamp + nonce + encrypt_key).encode() + request.body).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise WebhookRejected(401, "bad signature")
