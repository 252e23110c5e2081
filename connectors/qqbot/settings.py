"""QQ's own settings beyond the shared ones (`LOOMI_QQBOT_*`)."""

from __future__ import annotations

from pydantic import field_validator

from config.settings import PlatformSettings, http_url

DEFAULT_TOKEN_URL = "https://bots.qq.com/app/getAppAccessToken"
GROUP_AND_C2C_EVENT = 1 << 25  # GROUP_AT_MESSAGE_CREATE, C2C_MESSAGE_CREATE, …


class QQBotSettings(PlatformSettings):
    token_url: str | None = DEFAULT_TOKEN_URL  # where app access tokens come from (not under base_url)
    intents: int = GROUP_AND_C2C_EVENT

    @field_validator("token_url")
    @classmethod
    def _token_url(cls, value: str | None) -> str | None:
        return http_url(value)
