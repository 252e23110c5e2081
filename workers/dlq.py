"""The dead-letter list: envelopes ingest could not read, kept with the reason, replayable.

Replay moves entries back onto the inbound stream of their account's shard (skipping the
delivery dedup, which would drop them as already seen), one Lua call per entry, so an entry is
never both lost and queued twice. The list and the streams are different Redis Cluster slots:
replay is an operator's command for a plain Redis.
"""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from workers import keys

_REPLAY_ONE = """
-- KEYS[1] the dead-letter list, KEYS[2] the stream; ARGV[1] the item we read at its head
local item = redis.call('LINDEX', KEYS[1], 0)
if item ~= ARGV[1] then return -1 end
redis.call('LPOP', KEYS[1])
local record = cjson.decode(item)
if record['replayable'] then
  -- the stream entry exactly as it was: only the record's top level is decoded here
  redis.call('XADD', KEYS[2], '*', 'e', record['raw'])
  return 1
end
redis.call('RPUSH', KEYS[1], item)
return 0
"""


async def entries(redis: Redis, start: int = 0, count: int = 50) -> list[dict[str, Any]]:
    raw = await redis.lrange(keys.DEAD_LETTERS, start, start + count - 1)
    return [orjson.loads(item) for item in raw]


async def size(redis: Redis) -> int:
    return int(await redis.llen(keys.DEAD_LETTERS))


def _stream_of(item: bytes) -> str:
    record = orjson.loads(item)
    envelope = record.get("envelope") if isinstance(record, dict) else None
    account = envelope.get("a") if isinstance(envelope, dict) else None
    return keys.stream_for(account) if isinstance(account, str) else keys.inbound_stream(0)


async def replay(redis: Redis, count: int) -> int:
    """Move up to `count` of the oldest entries back to the streams; returns how many moved.
    Unreplayable entries go to the back of the list and count against `count`."""
    moved = 0
    for _ in range(count):
        item = await redis.lindex(keys.DEAD_LETTERS, 0)
        if item is None:
            break
        result = int(await redis.eval(_REPLAY_ONE, 2, keys.DEAD_LETTERS, _stream_of(item), item))
        if result == -1:  # another replay took the head first: look again
            continue
        moved += result
    return moved
