"""The durable inbound queue: a Redis stream of raw envelopes.

`append` is the only way in. One Lua script per batch does, atomically: check the caller
still holds the account's lease (fencing), drop deliveries already seen (Slack event_id,
Telegram update_id; remembered for a day), XADD the rest to the account's shard, and save the
listener's resume state. So an offset never advances past an event that is not queued, and a
listener that lost its lease cannot write at all. Every key the script touches is declared and
carries the shard's hash tag (workers/keys.py), so it runs on one Redis Cluster slot.
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
-- KEYS[1] stream, KEYS[2] lease key ('' = no fencing), KEYS[3] resume hash ('' = none),
-- KEYS[4..] one seen key per envelope
-- ARGV[1] lease token, ARGV[2] seen ttl, ARGV[3] maxlen, ARGV[4] resume json, ARGV[5..] envelopes
if KEYS[2] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return -1
end
local added = 0
for i = 4, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', tonumber(ARGV[2])) then
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
    """Queue envelopes durably; returns how many were new. `lease` = (listener key, token).

    A listener's envelopes go to its own key's shard (an app-wide listener's carry many
    accounts), so fencing, dedup and resume stay one atomic call; without a listener (webhook
    routes) each envelope goes to its account's shard."""
    if not envelopes and resume is None:
        return 0
    owner = lease[0] if lease else resume[0] if resume else None
    if owner is not None:
        return await _append_shard(redis, keys.shard_of(owner), envelopes, lease, resume)
    by_shard: dict[int, list[Envelope]] = {}
    for envelope in envelopes:
        by_shard.setdefault(keys.shard_of(envelope.account_id), []).append(envelope)
    return sum([await _append_shard(redis, shard, batch, None, None) for shard, batch in by_shard.items()])


async def _append_shard(
    redis: Redis,
    shard: int,
    envelopes: list[Envelope],
    lease: tuple[str, str] | None,
    resume: tuple[str, dict[str, Any]] | None,
) -> int:
    script_keys = [keys.inbound_stream(shard), keys.lease(lease[0]) if lease else "", keys.resume(resume[0]) if resume else ""]
    argv: list[Any] = [
        lease[1] if lease else "",
        SEEN_TTL_SECONDS,
        STREAM_MAXLEN,
        orjson.dumps(resume[1]) if resume else "",
    ]
    for envelope in envelopes:
        dedup = envelope.delivery_id if envelope.source != "backfill" else f"bf:{envelope.delivery_id}"
        script_keys.append(keys.seen(shard, envelope.account_id, dedup))
        argv.append(encode(envelope))
    # EVALSHA (the script loaded once per server, again after a restart): not its text every call
    added = await redis.register_script(_APPEND)(keys=script_keys, args=argv)
    if added == -1:
        raise LeaseLost(lease[0] if lease else "")
    return int(added)


async def load_resume(redis: Redis, account_id: str) -> dict[str, Any] | None:
    """The listener's saved position (where it was saved before sharding, if not yet since)."""
    raw = await redis.hget(keys.resume(account_id), "state") or await redis.hget(keys.legacy_resume(account_id), "state")
    return orjson.loads(raw) if raw else None


async def queued(redis: Redis) -> int:
    """Events waiting in every shard (ingest deletes what it acks): 0 means ingest is idle."""
    async with redis.pipeline(transaction=False) as pipe:
        for stream in keys.inbound_streams():
            pipe.xlen(stream)
        return sum(int(n) for n in await pipe.execute())
