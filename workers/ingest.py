"""Ingest: read the inbound streams in batches, normalize, write once, then ack.

One XREADGROUP reads every shard (up to 500 entries each) and one transaction writes the
batch: one ARQ job per
message would cap the pipeline near 1.5k messages/s (notes/limits.md). Entries of a consumer
that died are reclaimed with XAUTOCLAIM after `claim_idle_ms`. An envelope its connector
cannot read goes to the dead-letter list and is acked, so one bad payload never blocks
the stream; a batch the database refuses is retried row by row to isolate the bad row.
"""

from __future__ import annotations

import asyncio
import logging
import time

import asyncpg
import orjson
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

from connectors.base import Account, Envelope
from connectors.registry import UnknownPlatform
from loomi.hub import Hub
from store.accounts import load_accounts
from store.messages import Owned, apply_changes
from workers import keys, metrics
from workers.stream import decode

log = logging.getLogger("loomi.ingest")
ACCOUNT_CACHE_SECONDS = 30.0
INGEST_ACTIVE_MS = 2000  # workers/process.py: background work waits this long after a stored batch


Entry = tuple[str, bytes, dict[bytes, bytes]]  # (stream, entry id, fields)


async def ensure_group(redis: Redis) -> None:
    """The ingest group on every shard (created empty with its stream)."""
    for stream in keys.inbound_streams():
        try:
            await redis.xgroup_create(stream, keys.INGEST_GROUP, id="0", mkstream=True)
        except ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise


async def legacy_stream(redis: Redis) -> list[str]:
    """The pre-sharding stream while it still holds entries (written by an older version)."""
    if not await redis.exists(keys.LEGACY_INBOUND_STREAM):
        return []
    try:
        await redis.xgroup_create(keys.LEGACY_INBOUND_STREAM, keys.INGEST_GROUP, id="0")
    except ResponseError as err:
        if "BUSYGROUP" not in str(err):
            raise
    return [keys.LEGACY_INBOUND_STREAM]


async def dead_letter(redis: Redis, raw: bytes, error: str, entry_id: str) -> None:
    """Keep the stream entry byte for byte (`raw`, replayed as is) and why it failed."""
    try:
        envelope, readable = orjson.loads(raw), True
    except orjson.JSONDecodeError:
        envelope, readable = {}, False
    record = {
        "id": entry_id,
        "error": error[:1000],
        "at": int(time.time() * 1000),
        "raw": raw.decode(errors="replace"),
        "replayable": readable,
        "envelope": envelope,
    }
    await redis.rpush(keys.DEAD_LETTERS, orjson.dumps(record))
    await metrics.count(redis, "dead_letter", envelope.get("p") if isinstance(envelope, dict) else None)


class Ingestor:
    def __init__(self, hub: Hub, consumer: str, *, batch: int = 500, block_ms: int = 1000, claim_idle_ms: int = 30_000) -> None:
        self.hub, self.consumer = hub, consumer
        self.batch, self.block_ms, self.claim_idle_ms = batch, block_ms, claim_idle_ms
        self._accounts: dict[str, tuple[float, Account]] = {}  # id -> (loaded at, account)
        self._next_claim = 0.0
        self._streams: list[str] | None = None  # set by run(): the shards, plus a legacy stream to drain
        self.processed = 0

    async def run(self, stop: asyncio.Event) -> None:
        await ensure_group(self.hub.redis)
        self._streams = keys.inbound_streams() + await legacy_stream(self.hub.redis)
        while not stop.is_set():
            try:
                await self.step()
            except (OperationalError, ConnectionError, OSError, RedisConnectionError, RedisTimeoutError) as err:
                log.warning("ingest paused: %s", err)  # redis-py's ConnectionError is not the built-in one
                await asyncio.sleep(1)
            except ResponseError as err:
                if "NOGROUP" not in str(err):
                    log.exception("ingest step failed")
                    await asyncio.sleep(1)
                    continue
                # a Redis that keeps nothing on disk came back empty: the groups are gone with the
                # streams, and listeners re-create the streams as they append
                log.warning("ingest: consumer group missing (Redis restarted empty?): re-creating it")
                await ensure_group(self.hub.redis)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - never let the ingest loop die
                log.exception("ingest step failed")
                await asyncio.sleep(1)

    @property
    def streams(self) -> list[str]:
        return self._streams or keys.inbound_streams()

    async def step(self) -> int:
        entries = await self._claim_stale() or await self._read_new()
        if entries:
            await self.process(entries)
        return len(entries)

    async def _read_new(self) -> list[Entry]:
        reply = await self.hub.redis.xreadgroup(
            keys.INGEST_GROUP, self.consumer, {stream: ">" for stream in self.streams}, count=self.batch, block=self.block_ms
        )
        entries = [(_text(stream), entry_id, fields) for stream, batch in reply or () for entry_id, fields in batch]
        if not entries and keys.LEGACY_INBOUND_STREAM in self.streams and not await self.hub.redis.xlen(keys.LEGACY_INBOUND_STREAM):
            self._streams = keys.inbound_streams()  # the old stream is drained: stop reading it
        return entries

    async def _claim_stale(self) -> list[Entry]:
        """Entries a dead consumer was given and never acked, every `claim_idle_ms / 4`."""
        if time.monotonic() < self._next_claim:
            return []
        self._next_claim = time.monotonic() + max(self.claim_idle_ms / 4000, 0.5)
        entries: list[Entry] = []
        for stream in self.streams:
            _, claimed, *_ = await self.hub.redis.xautoclaim(
                stream, keys.INGEST_GROUP, self.consumer, self.claim_idle_ms, "0-0", count=self.batch
            )
            entries += [(stream, entry_id, fields) for entry_id, fields in claimed if fields]
        return entries

    async def _load_accounts(self, account_ids: set[str]) -> None:
        """Accounts (owner, platform, own external id, settings) for `normalize`, cached for
        ACCOUNT_CACHE_SECONDS so a settings change reaches ingest soon without a read per batch."""
        now = time.monotonic()
        stale = [a for a in account_ids if now - self._accounts.get(a, (-ACCOUNT_CACHE_SECONDS, None))[0] >= ACCOUNT_CACHE_SECONDS]
        if stale:
            async with self.hub.engine.connect() as conn:
                loaded = await load_accounts(conn, self.hub.vault, stale)
            self._accounts.update({a: (now, account) for a, account in loaded.items()})

    async def process(self, entries: list[Entry]) -> None:
        redis = self.hub.redis
        decoded: list[tuple[str, bytes, Envelope]] = []
        done: list[str] = []
        stream_of: dict[str, str] = {}
        for stream, entry_id, fields in entries:
            eid = _text(entry_id)
            stream_of[eid] = stream
            raw = fields[b"e"]
            try:
                decoded.append((eid, raw, decode(raw)))
            except Exception as err:  # noqa: BLE001
                await dead_letter(redis, raw, f"undecodable: {err!r}", eid)
                done.append(eid)
        await self._load_accounts({env.account_id for _, _, env in decoded})
        items: list[tuple[str, bytes, list[Owned]]] = []
        lag: dict[str, int] = {}
        stored: dict[str, tuple[str, int]] = {}  # account -> (platform, entries): workers/metrics.py
        now = int(time.time() * 1000)
        for eid, raw, env in decoded:
            account = self._accounts[env.account_id][1] if env.account_id in self._accounts else None
            try:
                if account is None:
                    raise LookupError(f"account {env.account_id} does not exist")
                changes = self.hub.connector(env.platform).normalize(env, account)
            except (UnknownPlatform, LookupError, ValueError, KeyError, TypeError) as err:
                await dead_letter(redis, raw, f"{type(err).__name__}: {err}", eid)
                done.append(eid)
                continue
            user_id, platform = account.user_id, account.platform
            raw_payload = env.payload
            items.append((eid, raw, [Owned(user_id, env.account_id, platform, c, raw_payload) for c in changes]))
            lag[env.account_id] = max(lag.get(env.account_id, 0), now - env.received_at)
            stored[env.account_id] = (platform, stored.get(env.account_id, (platform, 0))[1] + 1)
        await self._write(items)
        done += [eid for eid, _, _ in items]
        if done:
            by_stream: dict[str, list[str]] = {}
            for eid in done:
                by_stream.setdefault(stream_of[eid], []).append(eid)
            async with redis.pipeline(transaction=False) as pipe:
                for stream, ids in by_stream.items():
                    pipe.xack(stream, keys.INGEST_GROUP, *ids)
                    pipe.xdel(stream, *ids)
                for account_id, ms in lag.items():
                    pipe.hset(keys.status(account_id), mapping={"lag_ms": ms, "last_ingest_at": now})
                metrics.count_ingested(pipe, stored, now)
                pipe.set(keys.INGEST_ACTIVE, 1, px=INGEST_ACTIVE_MS)
                users = {o.user_id for _, _, owned in items for o in owned}
                for user_id in users:
                    pipe.publish(keys.CHANGES_CHANNEL, user_id)
                await pipe.execute()
        self.processed += len(done)

    async def _write(self, items: list[tuple[str, bytes, list[Owned]]]) -> None:
        """One transaction for the batch; if it fails for any reason but the database being
        away, each entry is written alone and the ones that still fail are dead-lettered."""
        flat = [o for _, _, owned in items for o in owned]
        if not flat:
            return
        try:
            async with self.hub.engine.begin() as conn:
                await apply_changes(conn, flat)
            return
        except Exception as err:  # noqa: BLE001 - driver errors (asyncpg's COPY) are not DBAPIError
            if database_away(err):
                raise  # keep the batch unacked: run() pauses and it is retried
            log.warning("batch of %d refused (%s); retrying one by one", len(items), type(err).__name__)
        for eid, raw, owned in items:
            try:
                async with self.hub.engine.begin() as conn:
                    await apply_changes(conn, owned)
            except Exception as err:  # noqa: BLE001
                if database_away(err):
                    raise
                reason = str(getattr(err, "orig", None) or err)[:300]
                await dead_letter(self.hub.redis, raw, f"store refused: {type(err).__name__}: {reason}", eid)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def database_away(err: BaseException) -> bool:
    """The database (or our connection to it) is unavailable, as opposed to refusing this data."""
    if isinstance(err, (OperationalError, InterfaceError, DisconnectionError, OSError)):  # OSError: refused, reset, timeout
        return True
    if isinstance(err, DBAPIError) and err.connection_invalidated:
        return True
    # asyncpg's own errors reach us unwrapped from the COPY path (store/messages.py); its
    # InterfaceError is "connection closed" and the like, except ValueError kinds (bad input)
    if isinstance(err, asyncpg.InterfaceError):
        return not isinstance(err, ValueError)
    return isinstance(err, (asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError))
