"""History backfill and gap recovery, as ARQ jobs, checkpointed per chat.

`history`: page back through each chat from the last saved cursor (resumes after a crash).
`gaps`: after a reconnect, fetch what arrived while we were away: everything newer than the
newest message stored for that chat. Both only queue envelopes; ingest writes them, and the
database's uniqueness makes overlap with live events harmless.

Chats are paged in rounds of at most MAX_PAGES_PER_CHAT pages each, so every chat gets its
recent history before any chat gets its deep past, and rounds go on until every chat reached
its end: a channel of 100k messages is read whole, not cut at its first 50 pages. A job still
paging after JOB_BUDGET_SECONDS, or hitting a rate limit the connector would not wait out
(`RateLimited`), queues its own continuation (deferred by the platform's Retry-After) and
ends: history resumes from the saved cursors, gaps fetches the unfinished chats again.
`inline` (the `loomi backfill` command, with nobody else to hand the rest to) waits instead.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable

from connectors.base import Account, Backfiller, RateLimited
from loomi.hub import Hub
from store import accounts as account_store
from store.messages import latest_sent_at
from workers import keys
from workers.jobs import enqueue, jobs_pool
from workers.stream import append

log = logging.getLogger("loomi.backfill")

MAX_PAGES_PER_CHAT = 50  # pages of one chat per round
JOB_BUDGET_SECONDS = 600.0  # then a job queues its continuation (ARQ kills a job at 900 s)
Progress = Callable[[dict[str, Any]], None]  # {chat, index, chats, pages, queued, done}: `loomi backfill`'s bar


@dataclass
class _Chat:
    """Where one chat's paging stands; `pages` and `queued` add up over rounds."""

    id: str
    index: int
    cursor: str | None
    oldest: str | None
    pages: int = 0
    queued: int = 0
    done: bool = False


async def backfill_account(
    hub: Hub,
    account_id: str,
    mode: str = "history",
    newest: dict[str, str] | None = None,
    progress: Progress | None = None,
    *,
    inline: bool = False,
    budget: float | None = JOB_BUDGET_SECONDS,
) -> dict[str, Any]:
    """`newest` (gaps mode): chat -> epoch ms to fetch after (exclusive), taken when the
    connection came back. `progress` hears of every page and of every chat finished.
    Returns {queued, chats} plus, when the rest was handed to a later job, {continued, retry_in}."""
    async with hub.engine.connect() as conn:
        account = await account_store.load_account(conn, hub.vault, account_id)
        if mode == "gaps" and newest is None:
            newest = {chat: str(ms) for chat, ms in (await latest_sent_at(conn, account_id)).items()}
    newest = newest or {}
    if account is None:
        return {"queued": 0, "skipped": "no such account"}
    connector = hub.connector(account.platform)
    if not isinstance(connector, Backfiller):
        return {"queued": 0, "skipped": "platform has no history API"}
    deadline = time.monotonic() + budget if budget is not None and not inline else math.inf
    while True:
        try:
            chat_ids = await connector.list_chats(account)
            break
        except RateLimited as err:
            if not inline:
                return await _continue_later(hub, account_id, mode, [_Chat(c, 0, None, ms) for c, ms in newest.items()], err.retry_after)
            await asyncio.sleep(err.retry_after)
    chats = await _starting_points(hub, account_id, mode, chat_ids, newest)
    for chat in chats:
        if chat.done:
            _tell(progress, chat, len(chats))
    open_chats = [chat for chat in chats if not chat.done]
    while open_chats:
        for chat in open_chats:
            try:
                await _round(hub, connector, account, mode, chat, len(chats), progress)
            except RateLimited as err:
                if not inline:
                    return await _continue_later(hub, account_id, mode, chats, err.retry_after)
                log.info("%s backfill of %s: rate limited, waiting %.1f s", mode, account_id, err.retry_after)
                await asyncio.sleep(err.retry_after)
            if time.monotonic() > deadline and any(not c.done for c in open_chats):
                return await _continue_later(hub, account_id, mode, chats, 0.0)
        open_chats = [chat for chat in open_chats if not chat.done]
    queued = sum(chat.queued for chat in chats)
    log.info("%s backfill of %s queued %d envelopes", mode, account_id, queued)
    await hub.redis.hset(keys.status(account_id), f"{mode}_backfill_at", int(time.time() * 1000))
    return {"queued": queued, "chats": len(chats)}


async def _starting_points(hub: Hub, account_id: str, mode: str, chat_ids: list[str], newest: dict[str, str]) -> list[_Chat]:
    """Each chat's first cursor: history from the saved one ("done": nothing left), gaps from
    the top down to `newest` (a chat with nothing stored yet is the history job's)."""
    if mode != "history":
        return [_Chat(chat, i, None, newest.get(chat), done=newest.get(chat) is None) for i, chat in enumerate(chat_ids)]
    saved = await hub.redis.mget([keys.backfill_cursor(account_id, chat) for chat in chat_ids]) if chat_ids else []
    return [
        _Chat(chat, i, cursor.decode() if cursor and cursor != b"done" else None, None, done=cursor == b"done")
        for i, (chat, cursor) in enumerate(zip(chat_ids, saved))
    ]


async def _round(
    hub: Hub, connector: Backfiller, account: Account, mode: str, chat: _Chat, chats: int, progress: Progress | None
) -> None:
    """Up to MAX_PAGES_PER_CHAT pages of one chat."""
    for _ in range(MAX_PAGES_PER_CHAT):
        page = await connector.backfill(account, chat.id, chat.cursor, chat.oldest)
        added = await append(hub.redis, page.envelopes)
        cursor = page.cursor
        if cursor is not None and cursor == chat.cursor and not page.envelopes:
            log.warning("%s backfill of %s: chat %s gave back its cursor with nothing on the page; stopping it",
                        mode, account.id, chat.id)  # else its rounds would never end
            cursor = None
        chat.queued, chat.pages, chat.cursor = chat.queued + added, chat.pages + 1, cursor
        chat.done = cursor is None
        if mode == "history":
            await hub.redis.set(keys.backfill_cursor(account.id, chat.id), cursor or "done")
        _tell(progress, chat, chats)
        if chat.done:
            break


def _tell(progress: Progress | None, chat: _Chat, chats: int) -> None:
    if progress:
        progress({"chat": chat.id, "index": chat.index, "chats": chats, "pages": chat.pages, "queued": chat.queued, "done": chat.done})


async def _continue_later(hub: Hub, account_id: str, mode: str, chats: list[_Chat], retry_in: float) -> dict[str, Any]:
    """Queue the rest as a new job: history goes on from the saved cursors, gaps re-fetches the
    chats it had not finished."""
    queued = sum(chat.queued for chat in chats)
    newest = {chat.id: chat.oldest for chat in chats if not chat.done and chat.oldest is not None}
    pool = jobs_pool(hub)
    job_id = f"{mode}:{account_id}:more:{time.time_ns()}"
    await enqueue(pool, "backfill", account_id, mode, newest if mode == "gaps" else None, job_id=job_id, defer=retry_in or None)
    log.info("%s backfill of %s: queued %d envelopes, the rest continues in %.1f s", mode, account_id, queued, retry_in)
    return {"queued": queued, "chats": len(chats), "continued": True, "retry_in": retry_in}
