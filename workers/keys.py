"""The Redis keys of the pipeline, in one place (like arq's constants.py). Keys private to one
module live there (OAuth state: connectors/oauth.py; login flows: api/routes/integrations.py).

The inbound stream is sharded by account: `LOOMI_INBOUND_SHARDS` streams, each with the ingest
consumer group. The keys the append script touches with a shard's stream (the account's lease,
resume state and delivery dedup) carry that shard's hash tag, so each shard lives in one Redis
Cluster slot and the script stays single-slot. The count is fixed for a deployment: every
process agrees on it through `SHARD_COUNT` in Redis (workers/sharding.py).
"""

from __future__ import annotations

import zlib

LEGACY_INBOUND_STREAM = "loomi:inbound"  # the single stream before sharding; drained, then unused
INGEST_GROUP = "ingest"
SHARD_COUNT = "loomi:inbound:shards"  # the deployment's shard count, set by the first process
DEAD_LETTERS = "loomi:dlq"
CHANGES_CHANNEL = "loomi:changes"  # pub/sub: user ids whose messages changed
INGEST_ACTIVE = "loomi:ingest:active"  # set for 2 s by every stored batch: background work waits
INDEXER_LOCK = "loomi:indexer-lock"  # one embedding indexer at a time across workers
WORKERS = "loomi:workers"  # sorted set: worker name -> when its registration lapses (ms)
ACCOUNTS_VERSION = "loomi:accounts:version"  # bumped whenever an account's listener must be reconsidered

DEFAULT_SHARDS = 4
_shards = DEFAULT_SHARDS


def configure(shards: int) -> None:
    """Set this process's shard count (Hub.open from settings; workers/sharding.py checks it
    against the deployment's)."""
    global _shards
    if not 1 <= shards <= 256:
        raise ValueError(f"inbound shards must be 1..256, not {shards}")
    _shards = shards


def shard_count() -> int:
    return _shards


def shard_of(account_id: str) -> int:
    """Stable across processes and Python runs (crc32, not hash())."""
    return zlib.crc32(account_id.encode()) % _shards


def _tag(account_id: str) -> str:
    return f"loomi:{{s{shard_of(account_id)}}}"


def inbound_stream(shard: int) -> str:
    return f"loomi:{{s{shard}}}:inbound"


def inbound_streams() -> list[str]:
    return [inbound_stream(i) for i in range(_shards)]


def stream_for(account_id: str) -> str:
    return inbound_stream(shard_of(account_id))


def lease(account_id: str) -> str:
    return f"{_tag(account_id)}:lease:{account_id}"


def seen(shard: int, account_id: str, delivery_id: str) -> str:
    """Dedup of one delivery, in the shard of the stream it was queued on."""
    return f"loomi:{{s{shard}}}:seen:{account_id}:{delivery_id}"


def resume(account_id: str) -> str:
    return f"{_tag(account_id)}:resume:{account_id}"


def legacy_resume(account_id: str) -> str:
    """Where resume state lived before sharding: read once as a fallback."""
    return f"loomi:resume:{account_id}"


def fence(account_id: str) -> str:
    return f"loomi:fence:{account_id}"


def status(account_id: str) -> str:
    return f"loomi:status:{account_id}"


def backfill_cursor(account_id: str, chat_id: str) -> str:
    return f"loomi:backfill:{account_id}:{chat_id}"


def refresh_lock(account_id: str) -> str:
    return f"loomi:refresh-lock:{account_id}"
