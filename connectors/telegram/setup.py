"""Connecting a bot: the person pastes the token BotFather gave them; `getMe` proves it."""

from __future__ import annotations

import re
import secrets
from typing import Any

from telegram.error import InvalidToken, NetworkError, RetryAfter

from config.settings import PlatformSettings
from connectors.base import AccountSpec, NeedsReauth, PlatformUnavailable, RateLimited, SetupContext
from connectors.telegram.client import make_bot, new_request, reauth, retry_seconds

TOKEN = re.compile(r"\d+:[A-Za-z0-9_-]+")
MODES = ("polling", "webhook")


async def connect(settings: PlatformSettings, fields: dict[str, Any], setup: SetupContext) -> AccountSpec:
    """`{"botToken", "mode"?}` -> the bot's account. Credentials: `bot_token`, `bot_id` and a
    fresh `webhook_secret` (32 URL-safe characters, the alphabet Telegram allows for
    `secret_token`). Settings: `mode` (default polling) and, for webhooks, `public_url`, from
    which the listener builds the webhook URL."""
    token = fields.get("botToken")
    if not isinstance(token, str) or not token.strip():
        raise ValueError("botToken is required")
    mode = fields.get("mode") or "polling"
    if mode not in MODES:
        raise ValueError("mode must be polling or webhook")
    token = token.strip()
    if not TOKEN.fullmatch(token):
        raise NeedsReauth("not a Telegram bot token (expected <bot id>:<secret> from BotFather)")
    request = new_request()
    async with request:
        try:
            me = await make_bot(settings, token, request).get_me()
        except InvalidToken as exc:
            raise reauth(exc) from None
        except RetryAfter as exc:
            raise RateLimited(retry_seconds(exc)) from None
        except NetworkError as exc:  # InvalidToken and RetryAfter are caught above
            raise PlatformUnavailable(f"Telegram could not be reached: {type(exc).__name__}") from None
    return AccountSpec(
        external_id=str(me.id),
        name=f"@{me.username}" if me.username else me.first_name,
        credentials={"bot_token": token, "webhook_secret": secrets.token_urlsafe(24), "bot_id": me.id},
        settings={"mode": mode, **({"public_url": setup.public_url} if mode == "webhook" else {})},
    )
