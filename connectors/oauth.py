"""OAuth 2 machinery every provider shares: single-use state, PKCE S256, code exchange, refresh.

The provider's URLs, scopes and PKCE switch are data (config/platforms.py); the only
per-platform code is `OAuthSetup.account_from_token`, which turns a token response into an
account. State lives in Redis for 10 minutes, bound to the user who started the flow, and is
consumed with GETDEL so a replayed callback fails.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
from redis.asyncio import Redis

from config.platforms import Platform
from config.settings import PlatformSettings

STATE_TTL_SECONDS = 600


def _state_key(state: str) -> str:
    return f"loomi:oauth-state:{state}"


class OAuthError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class PendingFlow:
    user_id: str
    platform: str
    redirect_uri: str
    verifier: str | None


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(64)[:96]
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return verifier, challenge


def _authorize_base(platform: Platform, settings: PlatformSettings) -> str:
    assert platform.authorize_url is not None
    return settings.auth_url or platform.authorize_url.format(base=settings.base_url)


def token_url(platform: Platform, settings: PlatformSettings) -> str:
    assert platform.token_url is not None
    return settings.token_url or platform.token_url.format(base=settings.base_url)


async def start(
    redis: Redis,
    platform: Platform,
    settings: PlatformSettings,
    *,
    user_id: str,
    redirect_uri: str,
    extra: dict[str, str] | None = None,
) -> tuple[str, str]:
    """Returns (authorize URL, state)."""
    state = secrets.token_urlsafe(32)
    verifier = None
    params = {
        "client_id": settings.client_id or "",
        "redirect_uri": redirect_uri,
        "response_type": "code",
        "state": state,
        "scope": platform.scope_separator.join(platform.scopes),
        **(extra or {}),
    }
    if platform.pkce:
        verifier, challenge = pkce_pair()
        params.update(code_challenge=challenge, code_challenge_method="S256")
    flow = {"user_id": user_id, "platform": platform.name, "redirect_uri": redirect_uri, "verifier": verifier}
    await redis.set(_state_key(state), orjson.dumps(flow), ex=STATE_TTL_SECONDS)
    return f"{_authorize_base(platform, settings)}?{urlencode(params)}", state


async def consume_state(redis: Redis, state: str, platform: str, user_id: str | None) -> PendingFlow:
    """The flow behind `state`, once. Wrong platform or another user's state: invalid."""
    raw = await redis.getdel(_state_key(state))
    if raw is None:
        raise OAuthError("invalid_state", "OAuth state is unknown, expired or already used")
    flow = PendingFlow(**orjson.loads(raw))
    if flow.platform != platform or (user_id is not None and flow.user_id != user_id):
        raise OAuthError("invalid_state", "OAuth state does not belong to this flow")
    return flow


async def _token_request(platform: Platform, settings: PlatformSettings, form: dict[str, str]) -> dict[str, Any]:
    secret = settings.client_secret.get_secret_value() if settings.client_secret else ""
    async with httpx.AsyncClient(timeout=20) as http:
        response = await http.post(
            token_url(platform, settings),
            data=form,
            auth=(settings.client_id or "", secret),
            headers={"Accept": "application/json"},
        )
    try:
        body = response.json()
    except ValueError:
        raise OAuthError("token_endpoint_error", f"token endpoint answered HTTP {response.status_code}") from None
    if response.status_code >= 400 or body.get("ok") is False or "error" in body and "access_token" not in body:
        raise OAuthError("token_rejected", str(body.get("error") or f"HTTP {response.status_code}"))
    return body


async def exchange_code(platform: Platform, settings: PlatformSettings, flow: PendingFlow, code: str) -> dict[str, Any]:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": flow.redirect_uri}
    if flow.verifier:
        form["code_verifier"] = flow.verifier
    return await _token_request(platform, settings, form)


async def refresh(platform: Platform, settings: PlatformSettings, refresh_token: str) -> dict[str, Any]:
    return await _token_request(platform, settings, {"grant_type": "refresh_token", "refresh_token": refresh_token})
