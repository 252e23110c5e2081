"""Discord's own settings beyond the shared ones (`LOOMI_DISCORD_*`)."""

from __future__ import annotations

from pydantic import SecretStr

from config.settings import PlatformSettings


class DiscordSettings(PlatformSettings):
    """`LOOMI_DISCORD_CLIENT_ID` / `_CLIENT_SECRET` (shared) install the bot in a guild over
    OAuth2; `LOOMI_DISCORD_BOT_TOKEN` is the bot's own token: one gateway connection and every
    REST call, for all guilds. `LOOMI_DISCORD_BASE_URL` is the REST root (default
    https://discord.com/api/v10); the gateway URL comes from `{base}/gateway/bot`."""

    bot_token: SecretStr | None = None
