"""Putting work on the ARQ queue, from any process (API-only ones too)."""

from __future__ import annotations

from typing import Any

from arq.connections import ArqRedis

from loomi.hub import Hub

QUEUE = "loomi:jobs"


def jobs_pool(hub: Hub) -> ArqRedis:
    """The process's ARQ pool for enqueueing, made on first use."""
    pool = hub.extras.get("jobs")
    if pool is None:
        pool = hub.extras["jobs"] = ArqRedis.from_url(hub.redis_url)
    return pool


async def enqueue(pool: ArqRedis, function: str, *args: Any, job_id: str | None = None, defer: float | None = None) -> None:
    await pool.enqueue_job(function, *args, _job_id=job_id, _defer_by=defer, _queue_name=QUEUE)
