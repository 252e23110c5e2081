"""The python-telegram-bot `Bot`, pointed at `LOOMI_TELEGRAM_BASE_URL`, and the error mapping
shared by listen, send and setup.

Why a request subclass: PTB turns every answer into objects, and `Update.to_dict()` does not
give back what Telegram sent (it adds defaults such as `"group_chat_created": false` to every
message). `parse_json_payload` is PTB's documented hook for custom JSON decoding; overriding it
lets us keep the `result` exactly as received while still calling `Bot.get_updates` and
`Bot.send_message` with all of PTB's error handling.
"""

from __future__ import annotations

import datetime as dtm
import warnings
from typing import Any

from telegram import Bot
from telegram.error import InvalidToken, RetryAfter
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from config.settings import PlatformSettings
from connectors.base import NeedsReauth

PLATFORM = "telegram"


class RawRequest(HTTPXRequest):
    """An HTTPXRequest that remembers the last successful `result` as Telegram sent it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.result: Any = None

    def take(self) -> Any:
        result, self.result = self.result, None
        return result

    def parse_json_payload(self, payload: bytes) -> dict[str, Any]:  # type: ignore[override]
        data = super().parse_json_payload(payload)
        if isinstance(data, dict) and data.get("ok") is True:
            self.result = data.get("result")
        return data


def make_bot(settings: PlatformSettings, token: str, request: HTTPXRequest, updates: HTTPXRequest | None = None) -> Bot:
    """A Bot whose calls go to `{base_url}/bot{token}/{method}` (files: `/file/bot{token}/…`)."""
    return Bot(
        token,
        base_url=f"{settings.base_url}/bot",
        base_file_url=f"{settings.base_url}/file/bot",
        request=request,
        get_updates_request=updates or request,
    )


def retry_seconds(exc: RetryAfter) -> float:
    """`RetryAfter.retry_after` is an int or a timedelta depending on `PTB_TIMEDELTA`, and reading
    it warns unless that variable is set; accept both, quietly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


def reauth(exc: InvalidToken) -> NeedsReauth:
    """PTB's InvalidToken message can contain the token itself: never pass it on."""
    return NeedsReauth("Telegram rejected the bot token")
