"""Small pieces of the worker: settings names, backoff, the fenced append."""

from __future__ import annotations

import inspect

import pytest
from arq.worker import Worker
from redis.asyncio import Redis

from connectors.base import Envelope
from tests.conftest import REDIS_URL
from workers import keys
from workers.process import WorkerSettings
from workers.stream import LeaseLost, append, load_resume, queued
from workers.supervisor import backoff_delay


def test_worker_settings_names_are_worker_parameters() -> None:
    """arq silently ignores a misspelled attribute: catch it here."""
    params = set(inspect.signature(Worker.__init__).parameters)
    names = {k for k in vars(WorkerSettings) if not k.startswith("_")}
    assert names <= params, names - params


def test_backoff_grows_with_full_jitter_and_caps() -> None:
    samples = {attempt: [backoff_delay(attempt, base=1, cap=30) for _ in range(400)] for attempt in (1, 3, 10)}
    assert max(samples[1]) <= 1 and max(samples[3]) <= 4 and max(samples[10]) <= 30
    assert max(samples[10]) > 20 and min(samples[10]) < 10  # spread, not a fixed delay
    assert sum(samples[3]) / 400 > sum(samples[1]) / 400


@pytest.fixture
async def redis():
    client = Redis.from_url(f"{REDIS_URL}/13")
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


def _env(i: int, source: str = "listen") -> Envelope:
    return Envelope("telegram", "acct_1", str(i), 0, {"update_id": i}, source)


async def test_append_dedups_deliveries_and_saves_resume_atomically(redis) -> None:
    assert await append(redis, [_env(1), _env(2)], resume=("acct_1", {"offset": 3})) == 2
    assert await append(redis, [_env(2), _env(3)], resume=("acct_1", {"offset": 4})) == 1
    assert await redis.xlen(keys.stream_for("acct_1")) == 3 == await queued(redis)
    assert await load_resume(redis, "acct_1") == {"offset": 4}
    # backfill copies of the same ids are a different delivery kind: queued, the store dedups them
    assert await append(redis, [_env(1, "backfill")]) == 1


async def test_append_is_fenced_by_the_lease(redis) -> None:
    await redis.set(keys.lease("acct_1"), "worker-b:7")
    with pytest.raises(LeaseLost):
        await append(redis, [_env(1)], lease=("acct_1", "worker-a:6"), resume=("acct_1", {"offset": 2}))
    assert await queued(redis) == 0 and await load_resume(redis, "acct_1") is None
    assert await append(redis, [_env(1)], lease=("acct_1", "worker-b:7")) == 1
