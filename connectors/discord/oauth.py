"""OAuth2 install: the person adds the bot to one of their guilds (`bot identify guilds`).

The shared machinery (connectors/oauth.py) builds the authorize URL and exchanges the code at
`{base}/oauth2/token`; with the `bot` scope Discord's answer carries the guild the bot was
added to (`guild`), which becomes the account (external id = guild id). The person's own
token is used once, to learn who installed the bot, and not kept: the bot token
(`LOOMI_DISCORD_BOT_TOKEN`) does all the work, so there is nothing to refresh.

Credential keys of a Discord account: `bot_user_id` (messages from it are is_self),
`installer_id` (the Discord user who added the bot, when `identify` answered), `scope`.
Settings: `guild_name`.
"""

from __future__ import annotations

from typing import Any

import discord
import httpx

from connectors.base import AccountSpec, NeedsReauth, NotConfigured
from connectors.discord.client import Rest, bot_token, call
from connectors.discord.settings import DiscordSettings

# VIEW_CHANNEL | SEND_MESSAGES | READ_MESSAGE_HISTORY | ADD_REACTIONS: read, backfill and answer
PERMISSIONS = 1024 | 2048 | 65536 | 64


def authorize_params(settings: DiscordSettings) -> dict[str, str]:
    """Ask for the bot's permissions in the guild install (integration_type 0). A hub without
    the bot token could install the bot but never listen: refuse to start."""
    if not settings.client_id:
        raise NotConfigured("LOOMI_DISCORD_CLIENT_ID")
    bot_token(settings)
    return {"permissions": str(PERMISSIONS), "integration_type": "0"}


async def account_from_token(rest: Rest, settings: DiscordSettings, token: dict[str, Any]) -> AccountSpec:
    """`token` is the /oauth2/token answer; `guild_id` may be added by the route from the
    callback's query (Discord sends it there too) for answers without `guild`."""
    guild = token.get("guild") if isinstance(token.get("guild"), dict) else {}
    guild_id = str(guild.get("id") or token.get("guild_id") or "")
    if not guild_id.isdigit():
        raise ValueError("Discord named no guild: install the bot with the `bot` scope and pick a server")
    http = await rest.http()
    try:
        info = await call(http.get_guild(guild_id, with_counts=False))
    except (discord.Forbidden, discord.NotFound) as err:
        raise NeedsReauth(f"the bot is not in guild {guild_id}: {err.text or err.status}") from None
    name = str(info.get("name") or guild.get("name") or guild_id)
    credentials = {"bot_user_id": rest.bot_user_id, "installer_id": await _installer(settings, token),
                   "scope": token.get("scope")}
    return AccountSpec(external_id=guild_id, name=name, credentials={k: v for k, v in credentials.items() if v},
                       settings={"guild_name": name})


async def _installer(settings: DiscordSettings, token: dict[str, Any]) -> str | None:
    """Who added the bot (`GET /users/@me` with their bearer token). Best effort: the account
    works without it."""
    access = token.get("access_token")
    if not access:
        return None
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(f"{settings.base_url}/users/@me", headers={"Authorization": f"Bearer {access}"})
        return str(response.json()["id"]) if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None
