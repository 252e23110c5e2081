"""The dead-letter list: envelopes ingest could not read, kept with the reason, replayable.

Replay moves entries back onto the inbound stream (skipping the delivery dedup, which would
drop them as already seen) in one Lua call, so an entry is never both lost and queued twice.
"""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from workers import keys

_REPLAY = """
local moved = 0
for i = 1, tonumber(ARGV[1]) do
  local item = redis.call('LPOP', KEYS[1])
  if not item then break end
  local record = cjson.decode(item)
  if record['replayable'] then
    -- the stream entry exactly as it was: only the record's top level is decoded here
    redis.call('XADD', KEYS[2], '*', 'e', record['raw'])
    moved = moved + 1
  else
    redis.call('RPUSH', KEYS[1], item)
  end
end
return moved
"""


async def entries(redis: Redis, start: int = 0, count: int = 50) -> list[dict[str, Any]]:
    raw = await redis.lrange(keys.DEAD_LETTERS, start, start + count - 1)
    return [orjson.loads(item) for item in raw]


async def size(redis: Redis) -> int:
    return int(await redis.llen(keys.DEAD_LETTERS))


async def replay(redis: Redis, count: int) -> int:
    """Move up to `count` of the oldest entries back to the stream; returns how many moved."""
    return int(await redis.eval(_REPLAY, 2, keys.DEAD_LETTERS, keys.INBOUND_STREAM, count))
