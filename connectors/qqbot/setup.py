"""Connecting a bot: the person pastes the app id and secret from QQ's open platform; an
access token and `/users/@me` prove them."""

from __future__ import annotations

from typing import Any

from connectors.base import Account, AccountSpec, SetupContext
from connectors.qqbot.client import PLATFORM, QQApi


async def connect(api: QQApi, fields: dict[str, Any], setup: SetupContext) -> AccountSpec:
    """`{"appId", "appSecret"}` (also `clientSecret`, as QQ's console calls it) -> the bot's
    account. Credentials: `app_id`, `app_secret`."""
    app_id = fields.get("appId")
    secret = fields.get("appSecret") or fields.get("clientSecret")
    if not isinstance(app_id, str) or not app_id.strip() or not isinstance(secret, str) or not secret.strip():
        raise ValueError("appId and appSecret are required")
    credentials = {"app_id": app_id.strip(), "app_secret": secret.strip()}
    probe = Account(id="", user_id=setup.user_id, platform=PLATFORM, external_id=app_id, name="", credentials=credentials)
    me = await api.call(probe, "GET", "/users/@me")  # NeedsReauth if QQ refuses the pair
    bot_id = me.get("id")
    return AccountSpec(
        external_id=str(bot_id or app_id),
        name=str(me.get("username") or f"QQ bot {app_id}"),
        credentials=credentials,
        settings={"app_id": credentials["app_id"]},
    )
