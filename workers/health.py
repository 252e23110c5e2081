"""Health of the pipeline for /healthz: are the inbound streams being drained?"""

from __future__ import annotations

from typing import Any

from redis.exceptions import ResponseError

from loomi.hub import Hub
from workers import keys

STALL_MS = 60_000


async def _shard_health(hub: Hub, stream: str) -> tuple[int, int, int]:
    """(pending, lag, oldest pending ms) of one shard; zeros while it does not exist yet."""
    try:
        pending = await hub.redis.xpending_range(stream, keys.INGEST_GROUP, "-", "+", 1)
        groups = await hub.redis.xinfo_groups(stream)
    except ResponseError:  # no stream yet: nothing has arrived, nothing is stalled
        return 0, 0, 0
    info = next((g for g in groups if g["name"] in (keys.INGEST_GROUP, keys.INGEST_GROUP.encode())), {})
    oldest = int(pending[0]["time_since_delivered"]) if pending else 0
    lag = info.get("lag")
    if lag is None:  # XINFO GROUPS has `lag` from Redis 7 on; ingest XDELs what it acks, so
        # on 6.2 the entries not yet delivered are the stream's length minus the group's pending
        lag = max(int(await hub.redis.xlen(stream)) - int(info.get("pending", 0)), 0)
    return int(info.get("pending", 0)), int(lag), oldest


async def ingest_health(hub: Hub) -> dict[str, Any]:
    """Not ok when an entry of any shard has waited unacknowledged for a minute: work is stalled."""
    shards = [await _shard_health(hub, stream) for stream in keys.inbound_streams()]
    pending = sum(s[0] for s in shards)
    lag = sum(s[1] for s in shards)
    oldest = max((s[2] for s in shards), default=0)
    return {"ok": oldest < STALL_MS, "pending": pending, "lag": lag, "oldestPendingMs": oldest}
