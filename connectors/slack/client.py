"""Web API plumbing shared by the Slack pieces: which token, which base URL, 429s, auth errors."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from connectors.slack.settings import SlackSettings
from connectors.base import Account, NeedsReauth, RateLimited

log = logging.getLogger(__name__)

# Web API `error` codes that mean the token is gone for good: retrying cannot help.
AUTH_ERRORS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "not_allowed_token_type"}
)

MAX_RATE_LIMIT_RETRIES = 3  # 429s obeyed in a row before RateLimited goes to the caller
MAX_RATE_LIMIT_WAIT = 60.0  # s; a longer Retry-After is handed to the caller at once


def web_client(settings: SlackSettings, token: str | None) -> AsyncWebClient:
    """An AsyncWebClient aimed at `LOOMI_SLACK_BASE_URL` (slack_sdk wants the trailing slash)."""
    return AsyncWebClient(token=token, base_url=settings.base_url + "/")


def bot_token(settings: SlackSettings, account: Account) -> str:
    token = account.credentials.get("access_token") or (
        settings.bot_token.get_secret_value() if settings.bot_token else None
    )
    if not token:
        raise NeedsReauth("no Slack bot token for this account (credentials.access_token or LOOMI_SLACK_BOT_TOKEN)")
    return str(token)


def app_token(settings: SlackSettings, account: Account) -> str:
    token = account.credentials.get("app_token") or (
        settings.app_token.get_secret_value() if settings.app_token else None
    )
    if not token:
        raise NeedsReauth("no Slack app token for Socket Mode (credentials.app_token or LOOMI_SLACK_APP_TOKEN)")
    return str(token)


def error_code(err: SlackApiError) -> str:
    try:
        return str(err.response.get("error") or "")
    except (AttributeError, TypeError):
        return ""


def retry_after(err: SlackApiError) -> float | None:
    """The `Retry-After` of a 429 answer in seconds, or None when this is no rate limit."""
    response = err.response
    if getattr(response, "status_code", None) != 429 and error_code(err) != "ratelimited":
        return None
    headers: Any = getattr(response, "headers", None) or {}
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value[0] if isinstance(value, list) else value))
            except (TypeError, ValueError):
                break
    return 1.0


async def call(
    request: Callable[[], Awaitable[AsyncSlackResponse]],
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> AsyncSlackResponse:
    """Run one Web API call, waiting out 429s as `Retry-After` says.

    After MAX_RATE_LIMIT_RETRIES waits, or when Slack asks for more than MAX_RATE_LIMIT_WAIT,
    raise RateLimited(retry_after) so the caller defers the work instead of dropping it.
    Rejected credentials raise NeedsReauth; other API errors propagate as SlackApiError.
    """
    attempt = 0
    while True:
        try:
            return await request()
        except SlackApiError as err:
            code = error_code(err)
            if code in AUTH_ERRORS:
                raise NeedsReauth(f"Slack rejected the token: {code}") from err
            wait = retry_after(err)
            if wait is None:
                raise
            if attempt >= MAX_RATE_LIMIT_RETRIES or wait > MAX_RATE_LIMIT_WAIT:
                raise RateLimited(wait, f"Slack rate limit: retry after {wait} s") from err
            attempt += 1
            log.info("slack: rate limited, retrying in %.1f s (attempt %d)", wait, attempt)
            await sleep(wait)
