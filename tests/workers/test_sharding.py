"""The inbound stream sharded by account: routing, single-slot scripts, the agreed count,
`loomi reshard`, draining the pre-sharding stream, dead-letter replay and /healthz over shards.

Real Redis (the system one); the hub-level paths (ingest into the store, /metrics per shard) run
on both backends in tests/workers/test_ingest_nul.py and tests/ops/test_metrics.py, and every
e2e test runs on the default four shards.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from typing import Iterator

import orjson
import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from connectors.base import Envelope
from tests.conftest import REDIS_URL
from workers import dlq, keys, sharding
from workers.ingest import Ingestor, ensure_group, legacy_stream
from workers.stream import append, encode, load_resume, queued


@pytest.fixture
async def redis():
    client = Redis.from_url(f"{REDIS_URL}/13")
    await client.flushdb()
    yield client
    await client.flushdb()
    await client.aclose()


@contextlib.contextmanager
def shards(n: int) -> Iterator[None]:
    before = keys.shard_count()
    keys.configure(n)
    try:
        yield
    finally:
        keys.configure(before)


def _env(account: str, i: int) -> Envelope:
    return Envelope("telegram", account, str(i), 0, {"update_id": i})


def test_accounts_spread_over_shards_the_same_way_in_every_process() -> None:
    with shards(4):
        counts = Counter(keys.shard_of(f"acct_{i:05d}") for i in range(4000))
        assert set(counts) == {0, 1, 2, 3}
        assert min(counts.values()) > 850  # about a quarter each
        assert keys.shard_of("acct_00042") == keys.shard_of("acct_00042")  # crc32: no per-run hash seed
        assert keys.stream_for("acct_00042") == keys.inbound_stream(keys.shard_of("acct_00042"))


def test_every_key_of_one_append_is_in_one_cluster_slot() -> None:
    """What lets a Redis Cluster spread the shards: the script touches one slot only."""
    with shards(8):
        slots = {key_slot(s.encode()) for s in keys.inbound_streams()}
        assert len(slots) == 8  # each shard can live on its own node
        for account in ("acct_a", "acct_b", "app:discord"):
            shard = keys.shard_of(account)
            touched = [keys.inbound_stream(shard), keys.lease(account), keys.resume(account), keys.seen(shard, "acct_x", "7")]
            assert {key_slot(k.encode()) for k in touched} == {key_slot(keys.inbound_stream(shard).encode())}


async def test_append_declares_every_key_it_touches(redis: Redis) -> None:
    """A cluster routes a script by its declared KEYS: none may hide in ARGV."""
    calls: list[tuple[int, tuple]] = []
    real_evalsha = redis.evalsha

    async def recording_evalsha(sha, numkeys, *args):  # noqa: ANN001
        calls.append((numkeys, args))
        return await real_evalsha(sha, numkeys, *args)

    redis.evalsha = recording_evalsha  # type: ignore[method-assign]
    with shards(4):
        await redis.set(keys.lease("acct_k"), "w:1")
        await append(redis, [_env("acct_k", 1), _env("acct_k", 2)], lease=("acct_k", "w:1"), resume=("acct_k", {"o": 1}))
        await append(redis, [_env(f"acct_{i}", i) for i in range(6)])
    for numkeys, args in calls:
        declared = [k for k in args[:numkeys] if k]
        assert len({key_slot(k.encode()) for k in declared}) == 1, declared
        assert not any(isinstance(a, str) and a.startswith("loomi:") for a in args[numkeys:])
    assert calls[0][0] == 3 + 2  # stream, lease, resume + one seen key per envelope


async def test_append_survives_a_script_cache_flush(redis: Redis) -> None:
    """EVALSHA after a Redis restart (or SCRIPT FLUSH) finds no script: it is loaded again."""
    assert await append(redis, [_env("acct_f", 1)]) == 1
    await redis.script_flush()
    assert await append(redis, [_env("acct_f", 2)]) == 1


async def test_append_routes_each_account_to_its_shard(redis: Redis) -> None:
    with shards(4):
        accounts = [f"acct_{i}" for i in range(12)]
        assert await append(redis, [_env(a, i) for i, a in enumerate(accounts)]) == 12
        for shard in range(4):
            entries = await redis.xrange(keys.inbound_stream(shard))
            assert {orjson.loads(f[b"e"])["a"] for _, f in entries} == {a for a in accounts if keys.shard_of(a) == shard}
        assert await queued(redis) == 12
        assert await append(redis, [_env(a, i) for i, a in enumerate(accounts)]) == 0  # seen: dropped


async def test_an_app_listener_queues_on_its_own_shard_fenced_with_its_resume(redis: Redis) -> None:
    """Discord-style: one lease for many accounts; fencing, dedup and resume stay one call."""
    with shards(4):
        await redis.set(keys.lease("app:discord"), "w:1")
        many = [_env(f"acct_{i}", i) for i in range(10)]
        assert await append(redis, many, lease=("app:discord", "w:1"), resume=("app:discord", {"seq": 5})) == 10
        assert await redis.xlen(keys.stream_for("app:discord")) == 10 == await queued(redis)
        assert await load_resume(redis, "app:discord") == {"seq": 5}


async def test_resume_state_saved_before_sharding_is_still_found(redis: Redis) -> None:
    await redis.hset(keys.legacy_resume("acct_old"), "state", orjson.dumps({"offset": 41}))
    assert await load_resume(redis, "acct_old") == {"offset": 41}
    await append(redis, [], resume=("acct_old", {"offset": 42}))
    assert await load_resume(redis, "acct_old") == {"offset": 42}  # the new place wins once written


async def test_processes_agree_on_the_first_count(redis: Redis) -> None:
    with shards(4):
        assert await sharding.agree(redis, 4) == 4
        assert await sharding.agree(redis, 8) == 4  # configured otherwise: follows the deployment
        assert keys.shard_count() == 4
        assert await redis.get(keys.SHARD_COUNT) == b"4"


async def test_reshard_carries_positions_over_and_refuses_while_unsafe(redis: Redis) -> None:
    with shards(4):
        await sharding.agree(redis, 4)
        now = int(time.time() * 1000)
        await append(redis, [_env("acct_a", 1)], resume=("acct_a", {"offset": 2}))
        await append(redis, [], resume=("acct_b", {"offset": 9}))
        await redis.set(keys.lease("acct_a"), "w:1")
        with pytest.raises(sharding.ReshardRefused, match="still queued"):
            await sharding.reshard(redis, 3, now_ms=now)
        await redis.delete(*keys.inbound_streams())
        await redis.zadd(keys.WORKERS, {"w:1": now + 10_000})
        with pytest.raises(sharding.ReshardRefused, match="worker"):
            await sharding.reshard(redis, 3, now_ms=now)
        await redis.zrem(keys.WORKERS, "w:1")
        with pytest.raises(sharding.ReshardRefused, match="1..256"):
            await sharding.reshard(redis, 0, now_ms=now)

        assert await sharding.reshard(redis, 3, now_ms=now) == 2
        assert keys.shard_count() == 3 and await redis.get(keys.SHARD_COUNT) == b"3"
        assert await load_resume(redis, "acct_a") == {"offset": 2}
        assert await load_resume(redis, "acct_b") == {"offset": 9}
        leftovers = [k async for k in redis.scan_iter(match="loomi:{s*}:lease:*")]
        assert leftovers == []  # old-name leases are gone; listeners take new ones


async def test_ingest_drains_the_pre_sharding_stream(redis: Redis) -> None:
    """An upgrade with events still queued on `loomi:inbound`: they are read, then it is dropped."""
    for i in range(3):
        await redis.xadd(keys.LEGACY_INBOUND_STREAM, {"e": encode(_env("acct_up", i))})
    await ensure_group(redis)
    assert await legacy_stream(redis) == [keys.LEGACY_INBOUND_STREAM]

    class Probe(Ingestor):
        def __init__(self) -> None:
            super().__init__(hub=type("H", (), {"redis": redis})(), consumer="c1", block_ms=10)  # type: ignore[arg-type]
            self.seen: list[tuple[str, str]] = []

        async def process(self, entries):  # noqa: ANN001 - record, ack like ingest
            for stream, entry_id, _ in entries:
                self.seen.append((stream, entry_id))
                await redis.xack(stream, keys.INGEST_GROUP, entry_id)
                await redis.xdel(stream, entry_id)

    probe = Probe()
    probe._streams = keys.inbound_streams() + await legacy_stream(redis)
    probe._next_claim = float("inf")
    assert await probe.step() == 3
    assert {s for s, _ in probe.seen} == {keys.LEGACY_INBOUND_STREAM}
    assert await probe.step() == 0
    assert keys.LEGACY_INBOUND_STREAM not in probe.streams  # drained: no longer read


async def test_a_group_lost_with_an_empty_restart_is_recreated(redis: Redis) -> None:
    """A Redis that keeps nothing on disk comes back empty while ingest runs: the groups are
    re-created and what listeners queue afterwards is read."""

    class Hub:  # the ingest loop needs only Redis until it has entries
        pass

    hub = Hub()
    hub.redis = redis  # type: ignore[attr-defined]
    ingestor = Ingestor(hub, "c1", block_ms=10)  # type: ignore[arg-type]
    stop = asyncio.Event()
    task = asyncio.create_task(ingestor.run(stop))
    await asyncio.sleep(0.2)  # running, groups made
    await redis.flushdb()  # the restart
    await asyncio.sleep(0.2)
    await append(redis, [_env("acct_r", 1)])
    pending = 0
    for _ in range(100):
        with contextlib.suppress(Exception):  # NOGROUP until ingest has re-created the group
            pending = int((await redis.xpending(keys.stream_for("acct_r"), keys.INGEST_GROUP))["pending"])
        if pending:
            break
        await asyncio.sleep(0.05)
    stop.set()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    assert pending == 1  # delivered to ingest (it then fails on this stub hub, which is beside the point)


async def test_dead_letter_replay_goes_to_the_accounts_shard(redis: Redis) -> None:
    with shards(4):
        raw = encode(_env("acct_dl", 5))
        await redis.rpush(keys.DEAD_LETTERS, orjson.dumps({"id": "1-0", "error": "x", "raw": raw.decode(), "replayable": True, "envelope": orjson.loads(raw)}))
        await redis.rpush(keys.DEAD_LETTERS, orjson.dumps({"id": "2-0", "error": "x", "raw": "{", "replayable": False, "envelope": {}}))
        assert await dlq.replay(redis, 10) == 1
        assert await redis.xlen(keys.stream_for("acct_dl")) == 1
        assert await dlq.size(redis) == 1  # the unreadable one stays
