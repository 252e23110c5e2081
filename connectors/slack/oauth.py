"""OAuth v2 install: an oauth.v2.access answer (first exchange or token refresh) -> an account.

The shared machinery (connectors/oauth.py) builds the authorize URL from config/platforms.py
and exchanges the code; this module only reads Slack's answer.

Credential keys of a Slack account (Account.credentials), all strings:
- `access_token`  the bot token (xoxb-…, or xoxe.xoxb-… with token rotation): every Web API call
- `refresh_token` only with token rotation; `expires_at` on the AccountSpec says when
- `bot_user_id`   the bot's user id (U…): messages with this `user` are is_self
- `bot_id`        the bot's id (B…, from auth.test): messages with this `bot_id` are is_self
- `team_id`, `team_name`, `app_id`, `scope`, `authed_user_id`: what was installed, by whom
- `user_token`    authed_user.access_token, only when user scopes were granted
- `app_token`     optional xapp- token for Socket Mode; otherwise LOOMI_SLACK_APP_TOKEN is used
  (app-level tokens belong to the app, not to the install, so OAuth never returns one)
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError

from config.settings import PlatformSettings
from connectors.base import AccountSpec, NeedsReauth
from connectors.slack.client import AUTH_ERRORS, error_code, web_client


def authorize_params() -> dict[str, str]:
    """Nothing beyond the shared `scope`: the hub installs a bot and asks no user scopes."""
    return {}


async def account_from_token(settings: PlatformSettings, token: dict[str, Any]) -> AccountSpec:
    if not isinstance(token, dict) or token.get("ok") is False:
        raise ValueError(f"oauth.v2.access failed: {token.get('error') if isinstance(token, dict) else token!r}")
    access_token = token.get("access_token")
    if not access_token or token.get("token_type", "bot") != "bot":
        raise ValueError("oauth.v2.access answer has no bot token")
    team = token.get("team") or {}
    enterprise = token.get("enterprise") or {}
    external_id = team.get("id") or enterprise.get("id")
    if not external_id:
        raise ValueError("oauth.v2.access answer names no team")
    authed_user = token.get("authed_user") or {}
    credentials: dict[str, Any] = {
        "access_token": access_token,
        "bot_user_id": token.get("bot_user_id"),
        "team_id": external_id,
        "team_name": team.get("name") or enterprise.get("name"),
        "app_id": token.get("app_id"),
        "scope": token.get("scope"),
        "authed_user_id": authed_user.get("id"),
        "refresh_token": token.get("refresh_token"),
        "user_token": authed_user.get("access_token"),
    }
    credentials["bot_id"] = await _bot_id(settings, access_token)
    expires_in = token.get("expires_in")
    return AccountSpec(
        external_id=str(external_id),
        name=str(credentials["team_name"] or external_id),
        credentials={k: v for k, v in credentials.items() if v},
        expires_at=int(time.time() * 1000) + int(expires_in) * 1000 if expires_in else None,
    )


async def _bot_id(settings: PlatformSettings, access_token: str) -> str | None:
    """oauth.v2.access names the bot user but not the bot id; auth.test does. Best effort:
    without it is_self still works from bot_user_id."""
    try:
        me = await web_client(settings, access_token).auth_test()
    except SlackApiError as err:
        if error_code(err) in AUTH_ERRORS:
            raise NeedsReauth(f"Slack rejected the new token: {error_code(err)}") from err
        return None
    except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
        return None
    return me.get("bot_id")
