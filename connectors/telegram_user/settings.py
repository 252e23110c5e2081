"""Telegram user-account settings (`LOOMI_TELEGRAM_USER_*`): the app's MTProto credentials
from my.telegram.org. Telethon knows Telegram's data centres itself; `base_url` is unused."""

from __future__ import annotations

from pydantic import SecretStr

from config.settings import PlatformSettings


class TelegramUserSettings(PlatformSettings):
    api_id: int | None = None
    api_hash: SecretStr | None = None
