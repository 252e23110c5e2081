"""Taking over the listeners of a worker that stopped heartbeating, before their leases lapse.

Real Redis; the supervisors' lease methods only (the whole path, with three `loomi worker`
processes and a kill -9, is tests/e2e/test_scale_out.py)."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio import Redis

from connectors.base import Envelope
from tests.conftest import REDIS_URL
from workers import keys
from workers.stream import LeaseLost, append
from workers.supervisor import Supervisor


@pytest.fixture
async def redis():
    client = Redis.from_url(f"{REDIS_URL}/13")
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


class _Hub:
    def __init__(self, redis: Redis) -> None:
        self.redis = redis


def supervisor(redis: Redis, name: str) -> Supervisor:
    return Supervisor(_Hub(redis), name, lease_ms=10_000, heartbeat=0.2)  # type: ignore[arg-type]


async def test_a_silent_workers_leases_are_taken_over_fenced(redis: Redis) -> None:
    a, b, c = supervisor(redis, "host:1"), supervisor(redis, "host:2"), supervisor(redis, "host:3")
    assert a.registration_ms == 1000  # five heartbeats
    for s in (a, b, c):
        await s._register()
    assert await a._takeable(["acct_1", "acct_2"]) == {"acct_1": None, "acct_2": None}
    held = await a._acquire([("acct_1", None), ("acct_2", None)])
    assert set(held) == {"acct_1", "acct_2"}

    # while A heartbeats, nobody may take its listeners
    assert await b._takeable(["acct_1", "acct_2"]) == {}

    # A goes silent (killed, or its event loop blocked): its registration lapses, its leases do not
    await asyncio.sleep(1.1)
    await b._register()
    await c._register()
    assert await redis.pttl(keys.lease("acct_1")) > 5000
    takeable = await b._takeable(["acct_1", "acct_2"])
    assert takeable == {"acct_1": held["acct_1"].encode(), "acct_2": held["acct_2"].encode()}

    # B and C both saw the orphans: each lease goes to exactly one of them
    seen_by_c = await c._takeable(["acct_1", "acct_2"])
    got_b = await b._acquire(list(takeable.items()))
    got_c = await c._acquire(list(seen_by_c.items()))
    assert set(got_b) == {"acct_1", "acct_2"} and got_c == {}
    assert await redis.get(keys.lease("acct_1")) == got_b["acct_1"].encode()

    # A was only paused: its next append and renewal fail, so it stops and writes nothing
    with pytest.raises(LeaseLost):
        await append(redis, [Envelope("telegram", "acct_1", "1", 0, {})], lease=("acct_1", held["acct_1"]))
    assert await redis.xlen(keys.stream_for("acct_1")) == 0
    assert await append(redis, [Envelope("telegram", "acct_1", "1", 0, {})], lease=("acct_1", got_b["acct_1"])) == 1


async def test_registration_uses_the_redis_clock(redis: Redis) -> None:
    """Machines' clocks differ; a registration is compared with Redis's TIME, not ours."""
    s = supervisor(redis, "host:9")
    await s._register()
    seconds, micros = await redis.time()
    until = await redis.zscore(keys.WORKERS, "host:9")
    assert 0 < until - (seconds * 1000 + micros // 1000) <= s.registration_ms
    assert await s.live_workers() == 1
