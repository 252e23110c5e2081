"""Receiving updates, per account: long polling (default) or a webhook (`settings["mode"]`).

Polling is our own loop over `Bot.get_updates`, not PTB's Updater, because Telegram forgets
an update as soon as a later getUpdates names a higher offset: the offset may only move past
updates that are already queued durably. So: getUpdates(offset) -> `ctx.emit(envelopes,
resume={"offset": last_update_id + 1})` (queued atomically with the saved offset) ->
getUpdates(new offset), which confirms them to Telegram. A crash anywhere restarts from the
saved offset: at-least-once, and the inbound stream drops repeated update_ids.

The state says what Telegram last did: `connected` only once a getUpdates was answered (the
first poll is a short one, so an idle bot connects at once), `backoff` with Telegram's
retry_after while flood control holds us, `connected` again after the next answer.

Webhook mode registers `{settings["public_url"]}/api/telegram/webhook/{account id}` with the
account's secret and then idles:
updates arrive through the hub's webhook route (`webhook.py`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable, TypeVar

from telegram import Bot
from telegram.error import Conflict, InvalidToken, RetryAfter
from config.settings import PlatformSettings
from connectors.base import Account, AccountState, Envelope, ListenContext, NeedsReauth
from connectors.telegram.client import PLATFORM, RawRequest, make_bot, new_request, reauth, retry_seconds
from connectors.telegram.inbound import ALLOWED_UPDATES

log = logging.getLogger("loomi.telegram")
T = TypeVar("T")


class _RawUpdates(RawRequest):
    """The getUpdates request: keeps the answer raw and shows PTB an empty result, so
    `Bot.get_updates` does not build Update objects that we would throw away (that parsing
    was half the worker's CPU per message in bench/ingest). PTB still handles every error."""

    def parse_json_payload(self, payload: bytes) -> dict[str, Any]:  # type: ignore[override]
        data = super().parse_json_payload(payload)
        if isinstance(data, dict) and data.get("ok") is True:
            return {**data, "result": []}
        return data


def webhook_url(account: Account) -> str | None:
    """Where Telegram posts this account's updates: the hub's per-account webhook route."""
    base = account.settings.get("public_url")
    return f"{base}/api/{PLATFORM}/webhook/{account.id}" if isinstance(base, str) and base else None


async def listen(settings: PlatformSettings, ctx: ListenContext, *, poll_timeout: int) -> None:
    account = ctx.account
    token = account.credentials.get("bot_token")
    if not token:
        raise NeedsReauth("no bot token stored for this account")
    mode = account.settings.get("mode") or "polling"
    if mode not in ("polling", "webhook"):
        raise ValueError(f"unknown Telegram mode {mode!r}: use polling or webhook")
    updates = new_request(_RawUpdates)
    # the other calls (getMe, deleteWebhook or setWebhook) come once per start: a connection
    # kept alive for them would be one more idle socket per listener, for as long as it runs
    bot = make_bot(settings, token, new_request(pool=2, keepalive=False), updates)
    try:
        await _obey(bot.initialize)  # getMe: a rejected token fails here
        if mode == "webhook":
            await _serve_webhook(bot, ctx)
        else:
            await _poll(bot, ctx, updates, poll_timeout)
    except InvalidToken as exc:
        raise reauth(exc) from None
    finally:
        await bot.shutdown()


async def _serve_webhook(bot: Bot, ctx: ListenContext) -> None:
    url = webhook_url(ctx.account)
    secret = ctx.account.credentials.get("webhook_secret")
    if not url or not secret:
        raise ValueError("webhook mode needs settings.public_url and credentials.webhook_secret")
    await _obey(lambda: bot.set_webhook(url=url, secret_token=secret, allowed_updates=ALLOWED_UPDATES))
    await ctx.report(AccountState.CONNECTED)
    await asyncio.Event().wait()  # Telegram pushes to the route now; we only hold the lease


async def _poll(bot: Bot, ctx: ListenContext, updates: RawRequest, timeout: int) -> None:
    await _obey(lambda: bot.delete_webhook(drop_pending_updates=False))  # getUpdates fails while one is set
    offset = _offset(ctx.resume)
    answered = False  # whether the last getUpdates was answered: what `connected` means here
    while True:
        updates.take()
        try:
            await bot.get_updates(offset=offset, timeout=timeout if answered else 0, allowed_updates=ALLOWED_UPDATES)
        except RetryAfter as exc:
            wait = retry_seconds(exc)
            answered = False
            await ctx.report(AccountState.BACKOFF, f"rate limited by Telegram: retry after {wait:g} s")
            await asyncio.sleep(wait)
            continue
        except Conflict as exc:
            if "webhook" not in str(exc).lower():
                raise  # another getUpdates client is using this token: let the supervisor back off
            log.info("a webhook was set on telegram account %s; deleting it", ctx.account.id)
            await _obey(lambda: bot.delete_webhook(drop_pending_updates=False))
            continue
        if not answered:
            answered = True
            await ctx.report(AccountState.CONNECTED)
        # PTB never parses the updates (_RawUpdates hands it an empty list), so an update from a
        # Bot API newer than PTB cannot wedge the loop: normalize dead-letters what it cannot read
        raw = updates.take()
        batch = [u for u in raw if isinstance(u, dict) and _is_int(u.get("update_id"))] if isinstance(raw, list) else []
        if not batch:
            continue
        now = int(time.time() * 1000)
        envelopes = [
            Envelope(PLATFORM, ctx.account.id, str(u["update_id"]), now, u) for u in batch
        ]
        last = max(u["update_id"] for u in batch) + 1
        offset = last if offset is None else max(offset, last)  # a redelivered update never moves it back
        await ctx.emit(envelopes, {"offset": offset})


async def _obey(call: Callable[[], Awaitable[T]]) -> T:
    """Call, sleeping through Telegram's flood control as often as it asks."""
    while True:
        try:
            return await call()
        except RetryAfter as exc:
            await asyncio.sleep(retry_seconds(exc))


def _offset(resume: dict[str, Any]) -> int | None:
    value = (resume or {}).get("offset")
    return int(value) if value is not None else None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
