"""DiscordConnector: guilds connected to people, one bot gateway for the whole app.

Abilities: AppListener (the app's bot gateway, listen.py), OAuthSetup (a person adds the bot
to a guild; the account is that guild, oauth.py), Backfiller (channel history, history.py),
send (outbound.py), normalize (inbound.py, pure). No per-account `listen`: the bot token sees
every guild it is in, and the supervisor routes each event by guild id to every account
connected to that guild. No webhooks: Discord delivers guild messages over the gateway only.

discord.py is the client throughout: its `DiscordWebSocket` speaks the gateway (listen.py
says why we drive the socket rather than `Client.connect`), its `HTTPClient` makes every REST
call with its rate-limit handling (client.py).

Settings: LOOMI_DISCORD_CLIENT_ID / _CLIENT_SECRET (OAuth2), LOOMI_DISCORD_BOT_TOKEN,
LOOMI_DISCORD_BASE_URL. App resume state: `{"session_id", "seq", "resume_url"}`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from connectors.base import (
    Account,
    AccountSpec,
    AppListenContext,
    Change,
    Envelope,
    ListenContext,
    Outbound,
    Page,
    Sent,
)
from connectors.discord import history, inbound, oauth, outbound
from connectors.discord.client import Rest
from connectors.discord.listen import REIDENTIFY_DELAY, listen_app
from connectors.discord.settings import DiscordSettings


class DiscordConnector:
    platform: ClassVar[str] = "discord"
    reidentify_delay: float = REIDENTIFY_DELAY  # tests shorten discord.py's pause before a re-IDENTIFY

    def __init__(self, settings: DiscordSettings) -> None:
        self.settings = settings
        self.rest = Rest(settings)

    def app_configured(self) -> bool:
        token = getattr(self.settings, "bot_token", None)
        return bool(token and token.get_secret_value().strip())

    async def listen_app(self, ctx: AppListenContext) -> None:
        await listen_app(self.settings, ctx, reidentify_delay=self.reidentify_delay)

    async def listen(self, ctx: ListenContext) -> None:
        raise NotImplementedError("Discord listens once for the whole app (listen_app), not per account")

    def normalize(self, envelope: Envelope, account: Account) -> list[Change]:
        return inbound.normalize(envelope, account)

    async def send(self, account: Account, message: Outbound) -> Sent:
        return await outbound.send(self.rest, account, message)

    async def list_chats(self, account: Account) -> list[str]:
        return await history.list_chats(self.rest, account)

    async def backfill(self, account: Account, chat_id: str, cursor: str | None, oldest: str | None) -> Page:
        return await history.backfill(self.rest, account, chat_id, cursor, oldest)

    def authorize_params(self) -> dict[str, str]:
        return oauth.authorize_params(self.settings)

    async def account_from_token(self, token: dict[str, Any]) -> AccountSpec:
        return await oauth.account_from_token(self.rest, self.settings, token)
