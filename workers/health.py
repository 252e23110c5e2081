"""Health of the pipeline for /healthz: is the inbound stream being drained?"""

from __future__ import annotations

from typing import Any

from redis.exceptions import ResponseError

from loomi.hub import Hub
from workers import keys

STALL_MS = 60_000


async def ingest_health(hub: Hub) -> dict[str, Any]:
    """Not ok when an entry has waited unacknowledged for a minute: work is stalled."""
    try:
        pending = await hub.redis.xpending_range(keys.INBOUND_STREAM, keys.INGEST_GROUP, "-", "+", 1)
        groups = await hub.redis.xinfo_groups(keys.INBOUND_STREAM)
    except ResponseError:  # no stream yet: nothing has arrived, nothing is stalled
        return {"ok": True, "pending": 0, "lag": 0}
    info = next((g for g in groups if g["name"] in (keys.INGEST_GROUP, keys.INGEST_GROUP.encode())), {})
    oldest = int(pending[0]["time_since_delivered"]) if pending else 0
    lag = info.get("lag")
    if lag is None:  # XINFO GROUPS has `lag` from Redis 7 on; ingest XDELs what it acks, so
        # on 6.2 the entries not yet delivered are the stream's length minus the group's pending
        lag = max(int(await hub.redis.xlen(keys.INBOUND_STREAM)) - int(info.get("pending", 0)), 0)
    lag = int(lag)
    return {"ok": oldest < STALL_MS, "pending": int(info.get("pending", 0)), "lag": lag, "oldestPendingMs": oldest}
