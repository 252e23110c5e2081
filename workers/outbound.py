"""Sending: one path for the API and the retry job, so a rate-limited send is never dropped.

The row is stored `pending` before the platform is called; the platform's id is recorded
as soon as it answers (folding in an echo that beat us to the store); a 429 leaves the row
pending and schedules a retry after the platform's Retry-After.
"""

from __future__ import annotations

import logging
from typing import Any

from connectors.base import NeedsReauth, Outbound, RateLimited
from loomi.hub import Hub
from store import accounts as account_store
from store import messages as message_store
from store.schema import messages
from workers import metrics
from workers.jobs import enqueue, jobs_pool

log = logging.getLogger("loomi.outbound")
MAX_SEND_ATTEMPTS = 8


async def deliver(hub: Hub, message_id: str, attempt: int = 1) -> dict[str, Any]:
    async with hub.engine.connect() as conn:
        row = (await conn.execute(messages.select().where(messages.c.id == message_id))).mappings().first()
        row = dict(row) if row else None
        account = await account_store.load_account(conn, hub.vault, row["account_id"]) if row else None
        last_inbound = await message_store.latest_inbound_raw(conn, row["account_id"], row["chat_id"]) if row else None
    if row is None or row["status"] != "pending":
        return row or {}
    if account is None or not account.credentials:
        return await _fail(hub, row, "account is disconnected", final=True)
    connector = hub.connector(account.platform)
    outbound = Outbound(chat_id=row["chat_id"], text=row["text"], reply_to_id=row["reply_to_id"],
                        thread_id=row["thread_id"], last_inbound=last_inbound)
    try:
        sent = await connector.send(account, outbound)
    except RateLimited as err:
        if attempt >= MAX_SEND_ATTEMPTS:
            return await _fail(hub, row, f"rate limited {attempt} times", final=True)
        await _fail(hub, row, f"rate limited; retrying in {err.retry_after:.0f} s", final=False)
        await schedule_retry(hub, message_id, attempt + 1, err.retry_after)
        return await _reload(hub, message_id)
    except NeedsReauth as err:
        return await _fail(hub, row, f"credentials rejected: {err}", final=True)
    except Exception as err:  # noqa: BLE001 - the platform refused: report it on the message
        log.warning("send of %s failed: %s", message_id, type(err).__name__)
        return await _fail(hub, row, f"{type(err).__name__}: {err}", final=True)
    async with hub.engine.begin() as conn:
        await message_store.mark_sent(conn, row, sent.native_id, sent.sent_at, sent.raw, sent.thread_id)
    return await _reload(hub, message_id)


async def _fail(hub: Hub, row: dict[str, Any], error: str, *, final: bool) -> dict[str, Any]:
    async with hub.engine.begin() as conn:
        await message_store.mark_failed(conn, row, error, final=final)
    if final:
        await metrics.count(hub.redis, "send_failure", row.get("platform"))
    return await _reload(hub, row["id"])


async def _reload(hub: Hub, message_id: str) -> dict[str, Any]:
    async with hub.engine.connect() as conn:
        row = (await conn.execute(messages.select().where(messages.c.id == message_id))).mappings().first()
    return dict(row) if row else {}


async def schedule_retry(hub: Hub, message_id: str, attempt: int, delay: float) -> None:

    await enqueue(jobs_pool(hub), "send_pending", message_id, attempt, job_id=f"send:{message_id}:{attempt}", defer=max(delay, 0.5))
