"""DingTalk's OpenAPI (`LOOMI_DINGTALK_BASE_URL`, default https://api.dingtalk.com): access
tokens, and one call helper that turns DingTalk's answers into our exceptions.

Why not the SDK for this: `dingtalk_stream` fetches tokens with blocking `requests` against the
root it read from the environment at import, and returns None on any failure, which loses the
complaint the person needs to see ("invalid clientSecret"). This is the same call, async,
against our root, keeping DingTalk's `{code, message}`.

Errors as DingTalk writes them: HTTP 4xx/5xx with `{"code", "message", "requestid"}`. Flow
control is HTTP 429 or a `Throttling…`/`…QpsLimit…` code; DingTalk rarely sends Retry-After,
so a missing one means DEFAULT_RETRY_AFTER.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.base import Account, NeedsReauth, RateLimited

TOKEN_PATH = "/v1.0/oauth2/accessToken"
DEFAULT_RETRY_AFTER = 1.0  # s, when a throttled answer names no wait
TOKEN_MARGIN = 300  # s; a token is renewed this long before DingTalk says it expires
TIMEOUT = httpx.Timeout(15.0, connect=10.0)


class ApiError(Exception):
    """DingTalk answered with an error that is neither throttling nor rejected credentials."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"DingTalk {status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass
class _Token:
    value: str
    renew_at: float


def credentials(account: Account) -> tuple[str, str]:
    """The app's clientId (AppKey, also the robotCode) and clientSecret stored with the account."""
    client_id = account.credentials.get("client_id")
    secret = account.credentials.get("client_secret")
    if not client_id or not secret:
        raise NeedsReauth("no DingTalk clientId/clientSecret stored for this account")
    return str(client_id), str(secret)


def is_throttled(status: int, code: str) -> bool:
    return status == 429 or code.startswith("Throttling") or "QpsLimit" in code


def retry_after(response: httpx.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return DEFAULT_RETRY_AFTER


def error_of(response: httpx.Response) -> tuple[str, str]:
    """(code, message) from a DingTalk error body, whatever shape it has."""
    try:
        body = response.json()
    except ValueError:
        return "", response.text[:200]
    if not isinstance(body, dict):
        return "", str(body)[:200]
    return str(body.get("code") or body.get("errcode") or ""), str(body.get("message") or body.get("errmsg") or "")


class OpenApi:
    """Token cache plus calls, for every account of the platform (tokens keyed by app)."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._tokens: dict[tuple[str, str], _Token] = {}

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=TIMEOUT)

    async def access_token(self, http: httpx.AsyncClient, client_id: str, secret: str, *, fresh: bool = False) -> str:
        """A cached app access token. Rejected credentials raise NeedsReauth with DingTalk's words."""
        key = (client_id, hashlib.sha256(secret.encode()).hexdigest())
        cached = self._tokens.get(key)
        if cached is not None and not fresh and time.time() < cached.renew_at:
            return cached.value
        response = await http.post(TOKEN_PATH, json={"appKey": client_id, "appSecret": secret})
        if response.status_code == 200:
            body = response.json()
            token, expires_in = body.get("accessToken"), body.get("expireIn")
            if not isinstance(token, str) or not token:
                raise ApiError(200, "", "accessToken missing from DingTalk's answer")
            ttl = float(expires_in) if isinstance(expires_in, (int, float)) else 7200.0
            self._tokens[key] = _Token(token, time.time() + max(ttl - TOKEN_MARGIN, ttl / 2))
            return token
        code, message = error_of(response)
        if is_throttled(response.status_code, code):
            raise RateLimited(retry_after(response), f"DingTalk throttled the token request: {code}")
        if 400 <= response.status_code < 500:
            raise NeedsReauth(f"DingTalk rejected the app credentials: {message or code} ({code or response.status_code})")
        raise ApiError(response.status_code, code, message)

    def forget_token(self, client_id: str, secret: str) -> None:
        self._tokens.pop((client_id, hashlib.sha256(secret.encode()).hexdigest()), None)

    async def call(
        self, http: httpx.AsyncClient, path: str, body: dict[str, Any], *, token: str | None = None,
        auth_rejects: bool = False,
    ) -> dict[str, Any]:
        """POST JSON; 2xx -> the body. Throttling -> RateLimited; with `auth_rejects`, a 401/403
        (or a 400 naming the credentials) -> NeedsReauth; anything else -> ApiError."""
        headers = {"x-acs-dingtalk-access-token": token} if token else {}
        response = await http.post(path, json=body, headers=headers)
        if 200 <= response.status_code < 300:
            data = response.json()
            return data if isinstance(data, dict) else {"result": data}
        code, message = error_of(response)
        if is_throttled(response.status_code, code):
            raise RateLimited(retry_after(response), f"DingTalk throttled {path}: {code}")
        if auth_rejects and response.status_code in (400, 401, 403):
            raise NeedsReauth(f"DingTalk rejected the app credentials: {message or code} ({code or response.status_code})")
        raise ApiError(response.status_code, code, message)
