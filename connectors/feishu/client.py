"""lark-oapi's REST client for one Feishu app, with tokens, rate limits and errors handled once.

Why not let lark-oapi fetch tokens itself: its TokenManager caches tenant tokens process-wide
under `self_tenant_token:{app_id}` (two accounts of one app with different secrets, or a secret
changed by the person, would share one stale token), and it fetches them with blocking
`requests` even from the async methods, which would stall the hub's event loop. So the client
is built with `enable_set_token(True)`: we fetch the token asynchronously through the SDK's own
`auth.v3.tenant_access_token.ainternal` and keep it in a cache keyed by (domain, app id,
sha256 of the secret), then hand it to every call in its RequestOption.

Rate limits (open.feishu.cn "Rate limits"): HTTP 429, or 400 on older APIs, with body code
99991400 and `x-ogw-ratelimit-reset` seconds. Waited out in place up to MAX_RATE_LIMIT_RETRIES
times and MAX_RATE_LIMIT_WAIT seconds each; beyond that RateLimited goes to the caller.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from typing import Any, Awaitable, Callable

import lark_oapi as lark
from lark_oapi.api.auth.v3 import InternalTenantAccessTokenRequest, InternalTenantAccessTokenRequestBody
from lark_oapi.core.enum import AccessTokenType, HttpMethod
from lark_oapi.core.model import BaseRequest, BaseResponse, RequestOption

from connectors.base import Account, NeedsReauth, RateLimited

log = logging.getLogger("loomi.feishu")

PLATFORM = "feishu"
RATE_LIMITED = 99991400
# "Invalid access token" family: the tenant token expired or was revoked; fetch a new one once.
TOKEN_INVALID = frozenset({99991661, 99991663, 99991664, 99991665, 99991668})
TRANSIENT_TOKEN_CODES = frozenset({RATE_LIMITED, 1, 10013})  # busy / rate limited: not the secret's fault
MAX_RATE_LIMIT_RETRIES = 3
MAX_RATE_LIMIT_WAIT = 60.0
TOKEN_MARGIN = 300  # s before Feishu's expiry that we fetch a new token

_tokens: dict[tuple[str, str, str], tuple[str, float]] = {}  # (domain, app_id, sha256(secret)) -> token, expiry


class FeishuError(Exception):
    """Feishu answered with a non-zero `code` that is neither a rate limit nor bad credentials."""

    def __init__(self, code: int, msg: str, status: int = 200) -> None:
        super().__init__(f"Feishu error {code}: {msg}")
        self.code, self.msg, self.status = code, msg, status


def body_of(resp: BaseResponse) -> dict[str, Any]:
    """The JSON Feishu sent, as sent (the SDK's typed objects drop nothing we need, but the
    envelopes we queue must be the platform's own JSON)."""
    raw = getattr(resp, "raw", None)
    try:
        data = json.loads(raw.content) if raw is not None and raw.content else {}
    except ValueError:
        data = {}
    return data if isinstance(data, dict) else {}


def reset_seconds(resp: BaseResponse) -> float | None:
    """The wait a rate-limited answer asks for, or None when this is no rate limit."""
    raw = getattr(resp, "raw", None)
    status = getattr(raw, "status_code", 200)
    if resp.code != RATE_LIMITED and status != 429:
        return None
    headers = {k.lower(): v for k, v in (getattr(raw, "headers", None) or {}).items()}
    try:
        return max(0.0, float(headers.get("x-ogw-ratelimit-reset", 1)))
    except (TypeError, ValueError):
        return 1.0


class FeishuApi:
    """One app's calls: `await api.call(lambda option: sdk.im.v1.message.acreate(req, option))`."""

    def __init__(
        self,
        base_url: str,
        app_id: str,
        app_secret: str,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        timeout: float = 30,
    ) -> None:
        self.base_url, self.app_id, self.app_secret = base_url, app_id, app_secret
        self.sleep = sleep
        self.sdk = (lark.Client.builder().app_id(app_id).app_secret(app_secret).domain(base_url)
                    .enable_set_token(True).timeout(timeout).log_level(lark.LogLevel.ERROR).build())
        self._key = (base_url, app_id, hashlib.sha256(app_secret.encode()).hexdigest())

    @classmethod
    def for_account(cls, base_url: str, account: Account, **kw: Any) -> "FeishuApi":
        creds = account.credentials
        if not creds.get("app_id") or not creds.get("app_secret"):
            raise NeedsReauth("this Feishu account has no app credentials; connect it again")
        return cls(base_url, str(creds["app_id"]), str(creds["app_secret"]), **kw)

    async def token(self, *, fresh: bool = False) -> str:
        """The tenant access token; NeedsReauth with Feishu's `msg` when it refuses the app."""
        cached = _tokens.get(self._key)
        if cached and not fresh and cached[1] > time.time():
            return cached[0]
        body = InternalTenantAccessTokenRequestBody.builder().app_id(self.app_id).app_secret(self.app_secret).build()
        request = InternalTenantAccessTokenRequest.builder().request_body(body).build()
        for attempt in range(MAX_RATE_LIMIT_RETRIES + 1):
            resp = await self.sdk.auth.v3.tenant_access_token.ainternal(request)
            data = body_of(resp)
            wait = reset_seconds(resp)
            if wait is not None:
                await self._wait(wait, attempt)
                continue
            code, msg = int(data.get("code", -1)), str(data.get("msg") or "")
            if code == 0 and data.get("tenant_access_token"):
                expire = float(data.get("expire") or 7200)
                _tokens[self._key] = (str(data["tenant_access_token"]), time.time() + max(60.0, expire - TOKEN_MARGIN))
                return str(data["tenant_access_token"])
            if code in TRANSIENT_TOKEN_CODES or resp.raw.status_code >= 500:
                raise FeishuError(code, msg, resp.raw.status_code)
            raise NeedsReauth(f"Feishu refused the app credentials: {msg or code}")
        raise AssertionError("unreachable")

    def forget_token(self) -> None:
        _tokens.pop(self._key, None)

    async def call(self, request: Callable[[RequestOption], Awaitable[BaseResponse]]) -> dict[str, Any]:
        """Run one API call with our token; returns Feishu's JSON body (code 0)."""
        refreshed = False
        attempt = 0
        while True:
            option = RequestOption.builder().tenant_access_token(await self.token()).build()
            resp = await request(option)
            wait = reset_seconds(resp)
            if wait is not None:
                await self._wait(wait, attempt)
                attempt += 1
                continue
            data = body_of(resp)
            code = int(data.get("code", resp.code if resp.code is not None else -1))
            if code == 0:
                return data
            if code in TOKEN_INVALID:
                self.forget_token()
                if not refreshed:
                    refreshed = True
                    continue
                raise NeedsReauth(f"Feishu rejected the tenant token: {data.get('msg')}")
            raise FeishuError(code, str(data.get("msg") or resp.msg or ""), resp.raw.status_code)

    async def raw(self, method: HttpMethod, uri: str) -> dict[str, Any]:
        """A tenant-token GET/POST the SDK has no typed method for (`/open-apis/bot/v3/info`)."""
        request = BaseRequest.builder().http_method(method).uri(uri).token_types({AccessTokenType.TENANT}).build()
        return await self.call(lambda option: self.sdk.arequest(request, option))

    async def _wait(self, wait: float, attempt: int) -> None:
        if attempt >= MAX_RATE_LIMIT_RETRIES or wait > MAX_RATE_LIMIT_WAIT:
            raise RateLimited(wait, f"Feishu rate limit: retry after {wait} s")
        log.info("feishu: rate limited, retrying in %.1f s (attempt %d)", wait, attempt + 1)
        await self.sleep(wait)
