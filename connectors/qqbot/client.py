"""The QQ OpenAPI: app access tokens (cached per app until shortly before they expire) and
JSON calls with `Authorization: QQBot {token}`, errors mapped onto the connector's.

Hand-written over httpx rather than qq-botpy's client: botpy fetches tokens from a hard-coded
host (no base URL for tests or proxies) and keeps the gateway position in memory only.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.base import Account, NeedsReauth, RateLimited
from connectors.qqbot.settings import QQBotSettings

PLATFORM = "qqbot"
REFRESH_MARGIN_S = 60
TIMEOUT = httpx.Timeout(20.0, connect=10.0)


class QQError(Exception):
    """QQ refused a call for a reason that is neither the credentials nor a rate limit."""


@dataclass
class _Token:
    value: str
    expires_at: float


def app_credentials(account: Account) -> tuple[str, str]:
    app_id, secret = account.credentials.get("app_id"), account.credentials.get("app_secret")
    if not app_id or not secret:
        raise NeedsReauth("no QQ app id / secret stored for this account")
    return str(app_id), str(secret)


class QQApi:
    """One per connector: tokens are per (app id, secret), so two accounts never share one and
    a changed secret gets a fresh token."""

    def __init__(self, settings: QQBotSettings) -> None:
        self.settings = settings
        self._tokens: dict[tuple[str, str], _Token] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def token(self, app_id: str, secret: str, *, fresh: bool = False) -> str:
        key = (app_id, secret)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            known = self._tokens.get(key)
            if known and not fresh and known.expires_at - REFRESH_MARGIN_S > time.time():
                return known.value
            self._tokens[key] = await self._fetch_token(app_id, secret)
            return self._tokens[key].value

    async def _fetch_token(self, app_id: str, secret: str) -> _Token:
        assert self.settings.token_url is not None
        async with httpx.AsyncClient(timeout=TIMEOUT) as http:
            response = await http.post(self.settings.token_url, json={"appId": app_id, "clientSecret": secret})
        data = _json(response)
        token, expires = data.get("access_token"), data.get("expires_in")
        if not isinstance(token, str) or not token:
            raise NeedsReauth(f"QQ refused the app id / secret: {data.get('message') or data.get('code') or response.status_code}")
        try:
            lifetime = float(expires)  # QQ sends it as a string
        except (TypeError, ValueError):
            lifetime = 7200.0
        return _Token(token, time.time() + lifetime)

    async def call(self, account: Account, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One REST call; a 401 gets one retry with a fresh token before it means NeedsReauth."""
        app_id, secret = app_credentials(account)
        for attempt in (1, 2):
            token = await self.token(app_id, secret, fresh=attempt == 2)
            async with httpx.AsyncClient(base_url=self.settings.base_url, timeout=TIMEOUT) as http:
                response = await http.request(method, path, json=body, headers={"Authorization": f"QQBot {token}"})
            if response.status_code != 401:
                break
        return check(response)


def check(response: httpx.Response) -> dict[str, Any]:
    data = _json(response)
    if response.status_code == 429:
        raise RateLimited(_retry_after(response), f"QQ rate limit: {data.get('message', '')}")
    if response.status_code == 401:
        raise NeedsReauth(f"QQ rejected the access token: {data.get('message', '')}")
    if response.status_code >= 400:
        raise QQError(f"QQ answered HTTP {response.status_code}: {data.get('code')} {data.get('message', '')}")
    return data


def _retry_after(response: httpx.Response) -> float:
    try:
        return max(float(response.headers.get("Retry-After", "1")), 0.0)
    except ValueError:
        return 1.0


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        raise QQError(f"QQ answered HTTP {response.status_code} with something other than JSON") from None
    return data if isinstance(data, dict) else {}
