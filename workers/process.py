"""One worker process's moving parts: ARQ (backfill, refresh jobs), the supervisor, ingest.

`loomi worker` runs this alone; `loomi serve` runs one inside the API process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import Any

from arq import cron, func
from arq.connections import ArqRedis
from arq.worker import Worker

from loomi.hub import Hub
from workers import keys
from workers.backfill import backfill_account
from workers.ingest import Ingestor
from workers.jobs import QUEUE, enqueue, jobs_pool
from workers.outbound import deliver
from workers.refresh import refresh_due
from workers.resumable import leased, retrying
from workers.stream import queued
from store.messages import latest_sent_at
from workers.supervisor import Supervisor

log = logging.getLogger("loomi.worker")
GAP_OVERLAP_MS = 120_000
STOP_GRACE_SECONDS = 10.0  # for the supervisor to hand its listeners back on stop


async def backfill(ctx: dict[str, Any], account_id: str, mode: str = "history", newest: dict[str, str] | None = None) -> dict[str, Any]:
    """Retried after a platform failure, taken over within a lease after a worker dies
    (workers/resumable.py); the per-chat cursors make each try go on from where the last stopped."""
    hub = ctx["hub"]
    async with leased(ctx, hub.settings.lease_ms, hub.settings.heartbeat_seconds):
        return await retrying(ctx, lambda: backfill_account(hub, account_id, mode, newest))


async def send_pending(ctx: dict[str, Any], message_id: str, attempt: int = 1) -> str:
    row = await deliver(ctx["hub"], message_id, attempt)
    return str(row.get("status"))


async def refresh_tokens(ctx: dict[str, Any]) -> int:
    return await refresh_due(ctx["hub"], ctx.get("worker_name", "worker"))


class WorkerSettings:
    """ARQ settings: names match `arq.worker.Worker` parameters (a test checks it)."""

    functions = [
        func(backfill, name="backfill", max_tries=5, timeout=900, keep_result=60),
        func(send_pending, name="send_pending", max_tries=3, timeout=120),
    ]
    cron_jobs = [cron(refresh_tokens, name="refresh_tokens", second={7, 37}, run_at_startup=True, unique=True)]
    queue_name = QUEUE
    max_jobs = 10
    job_timeout = 900
    keep_result = 3600
    poll_delay = 0.5
    handle_signals = False


BUSY_POLL_SECONDS = 0.25  # how often background work looks whether ingest has gone quiet


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class HubWorker:
    def __init__(self, hub: Hub, *, name: str | None = None) -> None:
        s = hub.settings
        self.hub = hub
        self.name = name or worker_name()
        self.stop_event = asyncio.Event()
        self.pool = jobs_pool(hub)
        self.supervisor = Supervisor(
            hub, self.name, scan_interval=s.scan_seconds, lease_ms=s.lease_ms, heartbeat=s.heartbeat_seconds, on_reconnect=self.recover_gaps
        )
        self.ingestor = Ingestor(hub, self.name, batch=s.ingest_batch, claim_idle_ms=s.ingest_claim_idle_ms)
        settings = {k: v for k, v in vars(WorkerSettings).items() if not k.startswith("_")}
        self.arq = Worker(**settings, redis_pool=ArqRedis.from_url(hub.redis_url), ctx={"hub": hub, "worker_name": self.name})
        self.tasks: list[asyncio.Task[Any]] = []

    async def recover_gaps(self, account_id: str) -> None:
        """Fetch what the platform sent while we were away: per chat, everything after the
        newest stored message, less an overlap window (events of the old connection may still
        be in flight, and the store's uniqueness makes the overlap free)."""
        async with self.hub.engine.connect() as conn:
            newest = {chat: str(ms - GAP_OVERLAP_MS) for chat, ms in (await latest_sent_at(conn, account_id)).items()}
        # one job per reconnect, not deduplicated: a job already running may have read the
        # platform before this gap began
        await enqueue(self.pool, "backfill", account_id, "gaps", newest)

    async def ingest_busy(self) -> bool:
        """Events wait in a stream, or some worker stored a batch in the last two seconds: the
        background work (embeddings, documents, insights) waits, so at a steady 500 msg/s it
        does not take the cores ingest needs between batches (bench/ingest)."""
        return bool(await queued(self.hub.redis)) or bool(await self.hub.redis.exists(keys.INGEST_ACTIVE))

    async def _pause(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self.stop_event.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def index_messages(self) -> None:
        """Embed new messages for grounding; one indexer at a time across workers, idle back-off."""
        from ai.indexer import index_pending

        idle = 0.5
        while not self.stop_event.is_set():
            embedded = 0
            try:
                if await self.ingest_busy():  # ingest first: embeddings can wait, messages cannot
                    await self._pause(BUSY_POLL_SECONDS)  # look again soon: no back-off grows meanwhile
                    continue
                if await self.hub.redis.set(keys.INDEXER_LOCK, self.name, nx=True, ex=120):
                    try:
                        embedded = await index_pending(self.hub, limit=128)
                    finally:
                        await self.hub.redis.delete(keys.INDEXER_LOCK)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - indexing is best effort; ingest must not suffer
                log.exception("indexing failed")
            idle = 0.5 if embedded else min(idle * 2, 30.0)
            try:
                await asyncio.wait_for(self.stop_event.wait(), 0 if embedded else idle)
            except asyncio.TimeoutError:
                pass

    async def rag_loop(self) -> None:
        """Extract and embed uploaded documents (ai/rag/jobs.py): one worker at a time across
        workers; an upload sets a wake key so an idle worker looks again within a second."""
        from ai.rag import jobs as rag_jobs

        idle = 1.0
        while not self.stop_event.is_set():
            done = 0
            try:
                if await self.ingest_busy():  # ingest first
                    await self._pause(BUSY_POLL_SECONDS)
                    continue
                if await self.hub.redis.set(rag_jobs.LOCK, self.name, nx=True, ex=300):
                    try:
                        await self.hub.redis.delete(rag_jobs.WAKE)
                        done = await rag_jobs.run_once(self.hub)
                    finally:
                        await self.hub.redis.delete(rag_jobs.LOCK)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - RAG is best effort; ingest must not suffer
                log.exception("rag processing failed")
            idle = 1.0 if done else min(idle * 2, 30.0)
            waited = 0.0
            while not done and waited < idle and not self.stop_event.is_set():
                try:  # sleep in 1 s steps, waking early when an upload set the wake key
                    await asyncio.wait_for(self.stop_event.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
                waited += 1.0
                try:
                    if await self.hub.redis.exists(rag_jobs.WAKE):
                        break
                except Exception:  # noqa: BLE001
                    pass

    async def insights_loop(self) -> None:
        """Refresh insights of chats with new messages (ai/insights/worker.py); idle back-off."""
        from ai.insights.worker import LOCK, run_once

        idle = 1.0
        while not self.stop_event.is_set():
            made = 0
            try:
                if await self.ingest_busy():  # ingest first
                    await self._pause(BUSY_POLL_SECONDS)
                    continue
                if await self.hub.redis.set(LOCK, self.name, nx=True, ex=300):
                    try:
                        made = await run_once(self.hub)
                    finally:
                        await self.hub.redis.delete(LOCK)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - insights are best effort; ingest must not suffer
                log.exception("insights failed")
            idle = 1.0 if made else min(idle * 2, 10.0)
            try:
                await asyncio.wait_for(self.stop_event.wait(), idle)
            except asyncio.TimeoutError:
                pass

    async def start(self) -> None:
        from ai import ann

        self.hub.extras["worker"] = self
        ann.attach(self.hub)  # vector indexes of this process persist under LOOMI_HOME
        self.tasks = [
            asyncio.create_task(self.supervisor.run(self.stop_event), name="supervisor"),
            asyncio.create_task(self.ingestor.run(self.stop_event), name="ingest"),
            asyncio.create_task(self.arq.main(), name="arq"),
            asyncio.create_task(self.index_messages(), name="indexer"),
            asyncio.create_task(self.insights_loop(), name="insights"),
            asyncio.create_task(self.rag_loop(), name="rag"),
        ]
        log.info("worker %s started", self.name)

    async def stop(self) -> None:
        self.stop_event.set()
        # arq cancels running jobs (they are re-queued) and its close() re-raises their
        # CancelledError: collect it as a result instead of letting it cancel our shutdown
        (closed,) = await asyncio.gather(asyncio.wait_for(self.arq.close(), 10), return_exceptions=True)
        if isinstance(closed, BaseException) and not isinstance(closed, asyncio.CancelledError):
            log.warning("arq did not close cleanly: %s", type(closed).__name__)
        # told to stop, the supervisor stops its listeners, releases their leases, says so in
        # their states and deregisters: let it finish (cancelled halfway, its accounts would
        # say "connected" through a worker that is gone until their leases lapse)
        supervising = [t for t in self.tasks if t.get_name() == "supervisor"]
        if supervising:
            await asyncio.wait(supervising, timeout=STOP_GRACE_SECONDS)
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        from ai import ann

        try:  # a cache: losing it costs a rebuild from the database, nothing more
            await asyncio.wait_for(ann.attach(self.hub).save_all(), 30)
        except Exception:  # noqa: BLE001
            log.warning("vector indexes not saved", exc_info=True)
