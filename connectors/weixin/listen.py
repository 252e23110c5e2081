"""The getupdates long poll, per account.

`get_updates_buf` is iLink's opaque cursor: a getupdates naming it gets every message after
it, so the cursor only moves past messages that are already queued durably. Each batch is
emitted with `resume = {"buf": <new cursor>}` (queued atomically with it), and only the next
getupdates names the new cursor: that is the ack. A crash anywhere restarts from the saved
cursor: at-least-once, and the inbound stream drops repeated message ids. Each message's
`context_token` stays in its payload: `send` takes the chat's newest from the store
(`Outbound.last_inbound`, see outbound.py).
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from connectors.base import AccountState, Envelope, ListenContext, NeedsReauth, RateLimited
from connectors.weixin.client import PLATFORM, ILink, ILinkError
from connectors.weixin.inbound import delivery_id

log = logging.getLogger("loomi.weixin")
DEFAULT_HOLD_MS = 35_000  # iLink's long poll, until the server says otherwise
MARGIN = 10.0  # seconds our HTTP timeout waits past the server's hold
MAX_FAILURES = 3  # consecutive failed polls before the supervisor takes over (with backoff)


async def listen(base_url: str, ctx: ListenContext, *, retry_delay: float = 1.0) -> None:
    token = ctx.account.credentials.get("bot_token")
    if not token:
        raise NeedsReauth("no bot token stored for this account")
    async with ILink(ctx.account.credentials.get("base_url") or base_url, token) as ilink:
        await ilink.post("msg/notifystart", {})  # a revoked token answers -14 here
        await ctx.report(AccountState.CONNECTED)
        buf = str((ctx.resume or {}).get("buf") or "")
        hold_ms = DEFAULT_HOLD_MS
        failures = 0
        while True:
            try:
                answer = await ilink.post("getupdates", {"get_updates_buf": buf}, timeout=hold_ms / 1000 + MARGIN)
            except httpx.ReadTimeout:
                continue  # the server held longer than it said: an empty answer
            except RateLimited as err:
                await asyncio.sleep(err.retry_after)
                continue
            except (ILinkError, httpx.TransportError) as err:
                # a dropped poll or a refusal: retry in place from the same cursor (nothing is
                # lost, iLink keeps what follows it); past MAX_FAILURES let the supervisor back off
                failures += 1
                if failures >= MAX_FAILURES:
                    raise
                log.info("weixin account %s: %s; polling again", ctx.account.id, type(err).__name__)
                await asyncio.sleep(retry_delay)
                continue
            failures = 0
            if isinstance(answer.get("longpolling_timeout_ms"), int) and answer["longpolling_timeout_ms"] > 0:
                hold_ms = answer["longpolling_timeout_ms"]
            msgs = [m for m in answer.get("msgs") or [] if isinstance(m, dict)]
            given = answer.get("get_updates_buf")
            new_buf = given if isinstance(given, str) and given else buf  # an empty cursor never rewinds us
            if not msgs and new_buf == buf:
                continue
            now = int(time.time() * 1000)
            envelopes = [Envelope(PLATFORM, ctx.account.id, delivery_id(m), now, m) for m in msgs]
            await ctx.emit(envelopes, {"buf": new_buf})
            buf = new_buf

