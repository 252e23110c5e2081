"""Agreeing on the inbound shard count, and changing it.

Every key an account's listener writes with its shard's stream (lease, resume state, dedup)
names the shard, so two processes with different counts would run two listeners for one
account. The first process to start records its count in Redis; a process configured
otherwise says so and follows the deployment's count. `loomi reshard N` changes it while no
worker runs and nothing waits in the streams, carrying every listener's resume state over.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis

from workers import keys
from workers.stream import queued

log = logging.getLogger("loomi.sharding")


class ReshardRefused(Exception):
    """The count cannot change now; the message says why and what to do."""


async def agree(redis: Redis, configured: int) -> int:
    """Use the deployment's shard count (recording `configured` if it is the first); returns it."""
    await redis.set(keys.SHARD_COUNT, configured, nx=True)
    stored = int(await redis.get(keys.SHARD_COUNT) or configured)
    if stored != configured:
        log.warning(
            "LOOMI_INBOUND_SHARDS=%d, but this deployment's Redis uses %d inbound shards: using %d "
            "(every process must agree; to change it, stop all workers and run `loomi reshard %d`)",
            configured, stored, stored, configured,
        )
    keys.configure(stored)
    return stored


async def _scan(redis: Redis, pattern: str) -> list[bytes]:
    return [key async for key in redis.scan_iter(match=pattern, count=1000)]


async def reshard(redis: Redis, shards: int, *, now_ms: int) -> int:
    """Move to `shards` inbound streams; returns how many resume states were carried over.

    Refused while a worker is registered (its listeners hold leases under the old names) or
    while events wait in a stream (they would be read under the old count)."""
    if not 1 <= shards <= 256:
        raise ReshardRefused(f"the shard count must be 1..256, not {shards}")
    live = await redis.zcount(keys.WORKERS, now_ms, "+inf")
    if live:
        raise ReshardRefused(f"{live} worker(s) are running: stop every `loomi worker` and `loomi serve` first")
    waiting = await queued(redis) + int(await redis.xlen(keys.LEGACY_INBOUND_STREAM))
    if waiting:
        raise ReshardRefused(f"{waiting} event(s) are still queued: start the workers until `loomi status` shows empty queues, then stop them")
    old = int(await redis.get(keys.SHARD_COUNT) or keys.shard_count())
    keys.configure(old)
    states: dict[str, bytes] = {}
    for key in await _scan(redis, "loomi:{s*}:resume:*"):
        account_id = key.decode().split(":resume:", 1)[1]
        value = await redis.hget(key, "state")
        if value is not None:
            states[account_id] = value
    stale = await _scan(redis, "loomi:{s*}:lease:*") + await _scan(redis, "loomi:{s*}:resume:*")
    stale += [stream.encode() for stream in keys.inbound_streams()]
    keys.configure(shards)
    async with redis.pipeline(transaction=True) as pipe:
        if stale:
            pipe.delete(*stale)
        for account_id, value in states.items():
            pipe.hset(keys.resume(account_id), "state", value)
        pipe.set(keys.SHARD_COUNT, shards)
        await pipe.execute()
    log.info("inbound shards %d -> %d; %d resume states carried over", old, shards, len(states))
    return len(states)
