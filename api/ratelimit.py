"""Failed-login throttling in Redis, shared by every API process on every machine."""

from __future__ import annotations

from redis.asyncio import Redis

PREFIX = "loomi:login-fail:"


async def retry_after(redis: Redis, keys: list[str], limit: int) -> int | None:
    """Seconds to wait when any key has reached `limit` failures, else None."""
    for key in keys:
        count = await redis.get(PREFIX + key)
        if count is not None and int(count) >= limit:
            ttl = await redis.ttl(PREFIX + key)
            return max(int(ttl), 1)
    return None


async def record_failure(redis: Redis, keys: list[str], window_seconds: int) -> None:
    """Count a failure; the window starts at a key's first failure.

    `SET … NX EX` then `INCR` (which keeps the TTL) instead of `EXPIRE … NX`: that option is
    Redis 7 and the embedded Redis is 6.2, where it fails the whole transaction.
    """
    async with redis.pipeline(transaction=True) as pipe:
        for key in keys:
            pipe.set(PREFIX + key, 0, ex=window_seconds, nx=True)
            pipe.incr(PREFIX + key)
        await pipe.execute()


async def clear(redis: Redis, keys: list[str]) -> None:
    await redis.delete(*(PREFIX + key for key in keys))
