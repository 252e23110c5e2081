"""Slack's own settings beyond the shared ones (`LOOMI_SLACK_*`)."""

from __future__ import annotations

from pydantic import SecretStr

from config.settings import PlatformSettings


class SlackSettings(PlatformSettings):
    app_token: SecretStr | None = None  # xapp-…: Socket Mode for every workspace of the app
    signing_secret: SecretStr | None = None  # verifies Events API requests
    bot_token: SecretStr | None = None  # a single-workspace install without OAuth
