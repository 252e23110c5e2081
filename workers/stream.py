"""The durable inbound queue: a Redis stream of raw envelopes.

`append` is the only way in. One Lua script per batch does, atomically: check the caller
still holds the account's lease (fencing), drop deliveries already seen (Slack event_id,
Telegram update_id; remembered for a day), XADD the rest, and save the listener's resume
state. So an offset never advances past an event that is not queued, and a listener that
lost its lease cannot write at all.
"""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis

from connectors.base import Envelope
from workers import keys

SEEN_TTL_SECONDS = 86400
STREAM_MAXLEN = 2_000_000  # approximate cap; far above any backlog a healthy hub holds

_APPEND = """
-- KEYS[1] stream, KEYS[2] lease key ('' = no fencing), KEYS[3] resume hash ('' = none)
-- ARGV[1] lease token, ARGV[2] seen ttl, ARGV[3] maxlen, ARGV[4] resume json, then pairs (seen key, envelope)
if KEYS[2] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return -1
end
local added = 0
for i = 5, #ARGV, 2 do
  if redis.call('SET', ARGV[i], '1', 'NX', 'EX', tonumber(ARGV[2])) then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'e', ARGV[i + 1])
    added = added + 1
  end
end
if KEYS[3] ~= '' and ARGV[4] ~= '' then
  redis.call('HSET', KEYS[3], 'state', ARGV[4])
end
return added
"""


class LeaseLost(Exception):
    """Another worker holds this account now; the caller must stop."""


def encode(envelope: Envelope) -> bytes:
    return orjson.dumps(
        {
            "p": envelope.platform,
            "a": envelope.account_id,
            "d": envelope.delivery_id,
            "t": envelope.received_at,
            "s": envelope.source,
            "payload": envelope.payload,
        }
    )


def decode(raw: bytes) -> Envelope:
    data = orjson.loads(raw)
    return Envelope(data["p"], data["a"], data["d"], data["t"], data["payload"], data.get("s", "listen"))


async def append(
    redis: Redis,
    envelopes: list[Envelope],
    *,
    lease: tuple[str, str] | None = None,
    resume: tuple[str, dict[str, Any]] | None = None,
) -> int:
    """Queue envelopes durably; returns how many were new. `lease` = (account_id, token)."""
    if not envelopes and resume is None:
        return 0
    argv: list[Any] = [
        lease[1] if lease else "",
        SEEN_TTL_SECONDS,
        STREAM_MAXLEN,
        orjson.dumps(resume[1]) if resume else "",
    ]
    for envelope in envelopes:
        dedup = envelope.delivery_id if envelope.source != "backfill" else f"bf:{envelope.delivery_id}"
        argv += [keys.seen(envelope.account_id, dedup), encode(envelope)]
    script_keys = [
        keys.INBOUND_STREAM,
        keys.lease(lease[0]) if lease else "",
        keys.resume(resume[0]) if resume else "",
    ]
    added = await redis.eval(_APPEND, 3, *script_keys, *argv)
    if added == -1:
        raise LeaseLost(lease[0] if lease else "")
    return int(added)


async def load_resume(redis: Redis, account_id: str) -> dict[str, Any] | None:
    raw = await redis.hget(keys.resume(account_id), "state")
    return orjson.loads(raw) if raw else None
