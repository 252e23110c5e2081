"""Telethon clients for one account: built from the sealed StringSession, shared in-process
between the listener and backfill (two live connections on one auth key risk
AUTH_KEY_DUPLICATED), and Telegram's refusals as hub exceptions."""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any, AsyncIterator

from telethon import TelegramClient, errors
from telethon.sessions import StringSession

from connectors.base import NeedsReauth, NotConfigured, RateLimited
from connectors.telegram_user.settings import TelegramUserSettings

# Telethon's TelegramClient; tests put a subclass whose transport is in-process
# (tests/fakes/telegram_user.py): MTProto itself cannot be faked here.
CLIENT_CLASS: list[type[TelegramClient]] = [TelegramClient]

_live: dict[str, TelegramClient] = {}  # account id -> the listener's connected client

# 401s that mean the login is gone for good (revoked from another device, expired, banned)
REVOKED = (errors.AuthKeyUnregisteredError, errors.SessionRevokedError, errors.SessionExpiredError,
           errors.UserDeactivatedError, errors.UserDeactivatedBanError, errors.AuthKeyDuplicatedError)


def app_credentials(settings: TelegramUserSettings) -> tuple[int, str]:
    if not settings.api_id:
        raise NotConfigured("LOOMI_TELEGRAM_USER_API_ID")
    if not settings.api_hash:
        raise NotConfigured("LOOMI_TELEGRAM_USER_API_HASH")
    return settings.api_id, settings.api_hash.get_secret_value()


def new_client(settings: TelegramUserSettings, session: str = "", *, updates: bool = False) -> TelegramClient:
    """A client on `session` (empty: a new login). Only the listener asks for updates, and it
    takes them one at a time (`sequential_updates`) so they are emitted in Telegram's order.
    FloodWait is never slept through inside Telethon (threshold 0): it becomes RateLimited."""
    api_id, api_hash = app_credentials(settings)
    return CLIENT_CLASS[0](StringSession(session), api_id, api_hash, flood_sleep_threshold=0,
                           device_model="openloomi hub", app_version="loomi", receive_updates=updates,
                           sequential_updates=updates)


def refusal(err: Exception) -> Exception:
    """What a Telegram error means for the hub (others are returned unchanged)."""
    if isinstance(err, REVOKED) or (isinstance(err, errors.UnauthorizedError)
                                    and not isinstance(err, errors.SessionPasswordNeededError)):
        return NeedsReauth(f"Telegram ended this login: {type(err).__name__}")
    if isinstance(err, errors.FloodWaitError):
        return RateLimited(float(err.seconds), f"Telegram asks to wait {err.seconds} s")
    return err


def register(account_id: str, client: TelegramClient) -> None:
    _live[account_id] = client


def unregister(account_id: str, client: TelegramClient) -> None:
    if _live.get(account_id) is client:
        del _live[account_id]


@contextlib.asynccontextmanager
async def account_client(settings: TelegramUserSettings, account_id: str, session: str) -> AsyncIterator[TelegramClient]:
    """The listener's client when it runs in this process, else a connection of our own.
    Telegram's refusals inside the block come out as NeedsReauth / RateLimited."""
    live = _live.get(account_id)
    own = live is None or not live.is_connected()
    client = new_client(settings, session) if own else live
    try:
        if own:
            await client.connect()
            if not await client.is_user_authorized():
                raise NeedsReauth("Telegram no longer knows this login")
        yield client
    except errors.RPCError as err:
        raise refusal(err) from None
    finally:
        if own:
            await client.disconnect()


def json_safe(value: Any) -> Any:
    """Telethon's `to_dict()` made JSON-safe: bytes as hex, datetimes as ISO 8601."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.timezone.utc).isoformat()
    return value
