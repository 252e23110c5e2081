"""The python-telegram-bot `Bot`, pointed at `LOOMI_TELEGRAM_BASE_URL`, and the error mapping
shared by listen, send and setup.

Why a request subclass: PTB turns every answer into objects, and `Update.to_dict()` does not
give back what Telegram sent (it adds defaults such as `"group_chat_created": false` to every
message). `parse_json_payload` is PTB's documented hook for custom JSON decoding; overriding it
lets us keep the `result` exactly as received while still calling `Bot.get_updates` and
`Bot.send_message` with all of PTB's error handling.

Every request object gets the process's one TLS context (`tls_context`): httpx builds a new one
per client otherwise, loading the whole CA bundle each time (~0.9 MB and ~0.1 s of CPU). With
two clients per listener that was 1.5 MB a listener and most of the CPU of connecting a
thousand bots (bench/listeners), and a fresh context on every send.
"""

from __future__ import annotations

import datetime as dtm
import ssl
import warnings
from typing import Any, TypeVar

import httpx

from telegram import Bot
from telegram.error import InvalidToken, RetryAfter
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from config.settings import PlatformSettings
from connectors.base import NeedsReauth

PLATFORM = "telegram"
R = TypeVar("R", bound=HTTPXRequest)
_tls: ssl.SSLContext | None = None


def tls_context() -> ssl.SSLContext:
    """The TLS context every Bot API client of this process shares: what httpx would build for
    each (certifi's CA bundle, or SSL_CERT_FILE / SSL_CERT_DIR), built once. A context is only
    read once built, so sharing it changes nothing about what is verified."""
    global _tls
    if _tls is None:
        _tls = httpx.create_ssl_context()
    return _tls


def new_request(kind: type[R] = HTTPXRequest, pool: int = 1, *, keepalive: bool = True) -> R:  # type: ignore[assignment]
    """A PTB request object (`kind`: HTTPXRequest or a subclass) on the shared TLS context.
    `keepalive=False` closes each connection after its call: for a client used only now and
    then, whose idle connection httpx would otherwise keep open for good (it drops expired
    ones only when the client is next used)."""
    options: dict[str, Any] = {"verify": tls_context()}
    if not keepalive:
        options["limits"] = httpx.Limits(max_connections=pool, max_keepalive_connections=0)
    return kind(connection_pool_size=pool, httpx_kwargs=options)


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
