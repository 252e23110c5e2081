"""The callback route's WeChat half: signature checks, decryption, the echo on GET.

Official Account: GET `?signature&timestamp&nonce&echostr` where signature =
sha1(sorted(token, timestamp, nonce)) -> answer `echostr`. POST carries the same `signature`
(plain mode) and, in safe mode (`encrypt_type=aes`), `msg_signature` over the `Encrypt`
element, which wechatpy's `WeChatCrypto(token, encodingAesKey, appId)` checks and decrypts.
WeCom: every request is encrypted; GET `?msg_signature&timestamp&nonce&echostr` -> answer the
decrypted echostr. WeChat expects `success` (or nothing) within 5 s and retries three times
otherwise; duplicates are dropped by `MsgId`. Requests older than `MAX_SKEW` are refused.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

import xmltodict
from wechatpy.crypto import WeChatCrypto
from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.utils import WeChatSigner

from connectors.base import Account, WebhookEvent, WebhookRejected, WebhookReply, WebhookRequest

MAX_SKEW = 600  # seconds between WeChat's timestamp and our clock before a request counts as replayed


def verify_webhook(request: WebhookRequest) -> WebhookReply:
    account = _account(request)
    q = request.query
    _fresh(q.get("timestamp"))
    if _kind(account) == "wecom":
        echo = _decrypt_echo(account, q)
        return WebhookReply(text=echo)
    _check(account, q.get("signature"), q.get("timestamp"), q.get("nonce"))
    echo = q.get("echostr")
    if not echo:
        raise WebhookRejected(400, "no echostr")
    return WebhookReply(text=echo)


def handle_webhook(request: WebhookRequest) -> WebhookReply:
    account = _account(request)
    q = request.query
    _fresh(q.get("timestamp"))
    encrypted = _kind(account) == "wecom" or q.get("encrypt_type") == "aes"
    if not encrypted:
        _check(account, q.get("signature"), q.get("timestamp"), q.get("nonce"))
        xml = request.body.decode("utf-8", errors="replace")
    else:
        xml = _decrypt(account, request.body, q)
    fields = _fields(xml)
    payload = {"xml": xml, "kind": _kind(account), "mode": "aes" if encrypted else "plain"}
    return WebhookReply(text="success", events=[WebhookEvent(delivery_id=delivery_id(fields), payload=payload)])


def delivery_id(fields: dict[str, Any]) -> str:
    """`MsgId` for messages; events have none, and WeChat says to dedupe them by sender + time."""
    if fields.get("MsgId"):
        return str(fields["MsgId"])
    return f"{fields.get('FromUserName')}:{fields.get('CreateTime')}:{fields.get('Event') or fields.get('MsgType')}"


def _account(request: WebhookRequest) -> Account:
    if request.account is None:
        raise WebhookRejected(404, "WeChat callbacks are per account: /api/wechat_oa/webhook/{accountId}")
    if not request.account.credentials.get("token"):
        raise WebhookRejected(401, "this account has no callback token")
    return request.account


def _kind(account: Account) -> str:
    return "wecom" if account.settings.get("kind") == "wecom" else "oa"


def _fresh(timestamp: str | None) -> None:
    try:
        skew = abs(time.time() - int(timestamp or ""))
    except ValueError:
        raise WebhookRejected(401, "missing or bad timestamp") from None
    if skew > MAX_SKEW:
        raise WebhookRejected(401, "stale timestamp")


def _check(account: Account, signature: str | None, timestamp: str | None, nonce: str | None) -> None:
    if not signature or not nonce:
        raise WebhookRejected(401, "missing signature")
    signer = WeChatSigner()
    signer.add_data(account.credentials["token"], timestamp, nonce)
    if not hmac.compare_digest(signer.signature.encode(), signature.encode()):
        raise WebhookRejected(401, "wrong signature")


def _crypto(account: Account) -> WeChatCrypto | WeComCrypto:
    creds = account.credentials
    key, app_id = creds.get("encoding_aes_key"), creds.get("app_id")
    if not key or not app_id:
        raise WebhookRejected(400, "encrypted callback but no encodingAesKey stored for this account")
    cls = WeComCrypto if _kind(account) == "wecom" else WeChatCrypto
    return cls(creds["token"], key, app_id)


def _decrypt(account: Account, body: bytes, q: dict[str, str]) -> str:
    signature = q.get("msg_signature")
    if not signature:
        raise WebhookRejected(401, "missing msg_signature")
    try:
        return _crypto(account).decrypt_message(body, signature, q.get("timestamp"), q.get("nonce"))
    except (InvalidSignatureException, InvalidAppIdException):
        raise WebhookRejected(401, "wrong signature or app id") from None
    except Exception:  # noqa: BLE001 - not XML, no Encrypt element, bad padding: all malformed
        raise WebhookRejected(400, "cannot decrypt the callback") from None


def _decrypt_echo(account: Account, q: dict[str, str]) -> str:
    signature, echo = q.get("msg_signature"), q.get("echostr")
    if not signature or not echo:
        raise WebhookRejected(401, "missing msg_signature or echostr")
    try:
        return _crypto(account).check_signature(signature, q.get("timestamp"), q.get("nonce"), echo)  # type: ignore[union-attr]
    except (InvalidSignatureException, InvalidAppIdException):
        raise WebhookRejected(401, "wrong signature or corp id") from None
    except Exception:  # noqa: BLE001
        raise WebhookRejected(400, "cannot decrypt echostr") from None


def _fields(xml: str) -> dict[str, Any]:
    try:
        parsed = xmltodict.parse(xml)
    except Exception:  # noqa: BLE001 - expat errors of every kind
        raise WebhookRejected(400, "body is not XML") from None
    fields = parsed.get("xml") if isinstance(parsed, dict) else None
    if not isinstance(fields, dict) or not fields.get("MsgType") or not fields.get("FromUserName"):
        raise WebhookRejected(400, "not a WeChat message")
    return fields
