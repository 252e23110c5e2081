"""Long ARQ jobs (backfill) that outlive flaky platforms and killed workers.

ARQ fails a job for good on any exception but `Retry`, and marks a running job with an
in-progress key that lives the job timeout + 10 s, so:
- a platform answering 500, 429, garbage or a cut-off page once would end a history backfill
  half-read until someone reconnects the account. `retrying` turns a failure into `Retry` with
  a backoff (Retry-After for rate limits), up to the job's `max_tries`; the per-chat cursors
  make the next try go on where this one stopped.
- a worker killed during a backfill would leave its job to nobody for the whole job timeout
  (15 minutes). `leased` shortens the in-progress key to the listener lease time and renews it
  while the job runs, so another worker picks the job up within one lease.
A job run twice at once (a stalled worker whose lease lapsed) is harmless: backfill only queues,
and the stream's dedup and the store's uniqueness drop the overlap.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

from arq import Retry
from arq.constants import in_progress_key_prefix

from connectors.base import NeedsReauth, RateLimited

log = logging.getLogger("loomi.jobs")
T = TypeVar("T")
MAX_RETRY_DELAY = 60.0


def retry_delay(job_try: int) -> float:
    """1, 2, 4, 8… seconds after the 1st, 2nd, 3rd… failed try, at most a minute."""
    return min(2.0 ** max(job_try - 1, 0), MAX_RETRY_DELAY)


async def retrying(ctx: dict[str, Any], run: Callable[[], Awaitable[T]]) -> T:
    """Run the job's work; a failure other than rejected credentials is retried by ARQ."""
    try:
        return await run()
    except NeedsReauth:
        raise  # the person must reconnect: trying again cannot help
    except RateLimited as err:
        log.info("job %s rate limited; retrying in %.1f s", ctx.get("job_id"), err.retry_after)
        raise Retry(defer=err.retry_after) from err
    except Exception as err:  # noqa: BLE001 - transient until ARQ's max_tries says otherwise
        delay = retry_delay(int(ctx.get("job_try") or 1))
        log.warning("job %s failed (%s: %s); retrying in %.0f s", ctx.get("job_id"), type(err).__name__, str(err)[:200], delay)
        raise Retry(defer=delay) from err


@contextlib.asynccontextmanager
async def leased(ctx: dict[str, Any], lease_ms: int, every: float) -> AsyncIterator[None]:
    """Keep this job's in-progress mark alive for `lease_ms` at a time while it runs."""
    redis, job_id = ctx.get("redis"), ctx.get("job_id")
    if redis is None or job_id is None:  # called outside ARQ (a test, `loomi backfill`)
        yield
        return
    key = in_progress_key_prefix + job_id

    async def renew() -> None:
        while True:
            try:
                await redis.pexpire(key, lease_ms)
            except Exception as err:  # noqa: BLE001 - Redis away: the mark may lapse; a rerun is harmless
                log.warning("could not renew job %s (%s)", job_id, type(err).__name__)
            await asyncio.sleep(every)

    task = asyncio.create_task(renew(), name=f"lease:{job_id}")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
