"""tweepy's AsyncClient pointed at `LOOMI_X_BASE_URL`, and X's refusals as hub exceptions.

tweepy hard-codes https://api.twitter.com; its AsyncClient takes any object with aiohttp's
`session.request(...)` as `client.session`, so a thin wrapper rewrites the host on every call
(the one documented seam; nothing else of tweepy is changed). Calls use the person's OAuth 2
user token as a bearer (`user_auth=False`), which is how tweepy speaks OAuth 2 user context.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import tweepy
from tweepy.asynchronous import AsyncClient

from connectors.base import NeedsReauth, RateLimited

TWITTER = "https://api.twitter.com"


class RewritingSession:
    """aiohttp session whose requests to api.twitter.com go to `base_url` instead."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None

    def request(self, method: str, url: Any, **kwargs: Any) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        text = str(url)
        if text.startswith(TWITTER):
            text = self.base_url + text[len(TWITTER):]
        return self._session.request(method, text, **kwargs)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class TokenExpired(Exception):
    """The access token is past its expiry: the refresher (workers/refresh.py) renews it and
    the supervisor restarts the listener with the new one; not a reason to ask the person."""


def api(base_url: str, access_token: str) -> AsyncClient:
    client = AsyncClient(bearer_token=access_token, return_type=dict)
    client.session = RewritingSession(base_url)
    return client


async def close(client: AsyncClient) -> None:
    await client.session.close()


def retry_after(err: tweepy.TooManyRequests) -> float:
    """Seconds until X's `x-rate-limit-reset` (epoch seconds); 60 when it names none."""
    reset = err.response.headers.get("x-rate-limit-reset")
    if reset is None:
        return 60.0
    return max(0.0, float(reset) - time.time())


def refusal(err: tweepy.HTTPException, credentials: dict[str, Any]) -> Exception:
    """What an X error means for the hub."""
    if isinstance(err, tweepy.TooManyRequests):
        return RateLimited(retry_after(err), f"X rate limit, resets in {retry_after(err):.0f} s")
    if isinstance(err, tweepy.Unauthorized):
        expires_at = credentials.get("expires_at")
        if expires_at and int(expires_at) <= time.time() * 1000:
            return TokenExpired("X access token expired; waiting for the refresh")
        return NeedsReauth(f"X refused the token: {detail(err)}")
    return err


def detail(err: tweepy.HTTPException) -> str:
    return "; ".join(err.api_messages) or f"HTTP {err.response.status}"
