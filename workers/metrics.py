"""The operator's numbers: counters every process adds to in Redis, and one cached read of the
facts of the whole hub (queue depth, listener states, dead letters, workers, AI usage).

Counters live in Redis, not only in the process that counted, because the API process that
Prometheus scrapes is rarely the worker that ingested: a hash of totals by kind and platform
(`TOTALS`), and per-minute buckets of messages ingested per account (`minute_key`, kept two
hours) that the status page draws. Writing them costs one HINCRBY per account per batch, in
the pipeline ingest already sends. Reading the cluster (`ClusterFacts`) touches the database
only for the accounts list and the AI ledger, at most once per `cache_seconds` per process.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import ResponseError

from config.platforms import PLATFORMS
from loomi.hub import Hub
from store import accounts as account_store
from store.schema import ledger
from workers import keys

TOTALS = "loomi:metrics:totals"  # hash: "<kind>:<platform>" -> count since Redis was last emptied
MINUTE_PREFIX = "loomi:metrics:minute:"  # + epoch minute: hash account id -> messages ingested
MINUTE_KEEP_SECONDS = 2 * 3600
KINDS = ("ingested", "dead_letter", "listener_failure", "send_failure")
STATES = ("connecting", "connected", "backoff", "needs_reauth", "stopped")
AI_CACHE_SECONDS = 60.0  # the ledger is aggregated whole; AI usage moves slowly enough
MAX_MODELS = 50  # label values kept apart; the rest are summed as "other"
_VIA = re.compile(r" via (\S+) · ")


def platform_label(platform: Any) -> str:
    """A label value from our platform table only: an envelope's `p` is untrusted input."""
    return platform if isinstance(platform, str) and platform in PLATFORMS else "unknown"


def minute_key(minute: int) -> str:
    return f"{MINUTE_PREFIX}{minute}"


def count_ingested(pipe: Pipeline, by_account: dict[str, tuple[str, int]], now_ms: int | None = None) -> None:
    """Queue on `pipe` (account id -> (platform, entries stored)): the totals by platform and
    this minute's bucket per account."""
    if not by_account:
        return
    minute = (now_ms if now_ms is not None else int(time.time() * 1000)) // 60_000
    per_platform: dict[str, int] = {}
    for account_id, (platform, count) in by_account.items():
        pipe.hincrby(minute_key(minute), account_id, count)
        label = platform_label(platform)
        per_platform[label] = per_platform.get(label, 0) + count
    pipe.expire(minute_key(minute), MINUTE_KEEP_SECONDS)
    for label, count in per_platform.items():
        pipe.hincrby(TOTALS, f"ingested:{label}", count)


async def count(redis: Redis, kind: str, platform: Any, amount: int = 1) -> None:
    """Add to a total (a dead letter, a listener failure, a failed send). Never raises: a
    counter must not turn a handled failure into an unhandled one."""
    try:
        await redis.hincrby(TOTALS, f"{kind}:{platform_label(platform)}", amount)
    except Exception:  # noqa: BLE001 - Redis away: the count is lost, the work is not
        pass


async def totals(redis: Redis) -> dict[str, dict[str, int]]:
    """kind -> platform -> count."""
    out: dict[str, dict[str, int]] = {kind: {} for kind in KINDS}
    for raw, value in (await redis.hgetall(TOTALS)).items():
        kind, _, platform = (raw.decode() if isinstance(raw, bytes) else raw).partition(":")
        out.setdefault(kind, {})[platform] = int(value)
    return out


async def ingested_per_minute(redis: Redis, account_ids: list[str], minutes: int = 60, now_ms: int | None = None) -> list[tuple[int, dict[str, int]]]:
    """The last `minutes` minutes, oldest first: (epoch minute, account id -> messages)."""
    last = (now_ms if now_ms is not None else int(time.time() * 1000)) // 60_000
    span = list(range(last - minutes + 1, last + 1))
    if not account_ids:
        return [(m, {}) for m in span]
    async with redis.pipeline(transaction=False) as pipe:
        for m in span:
            pipe.hmget(minute_key(m), account_ids)
        replies = await pipe.execute()
    return [(m, {a: int(v) for a, v in zip(account_ids, values) if v is not None}) for m, values in zip(span, replies)]


def shards() -> list[tuple[str, str]]:
    """(shard label, stream key) of every inbound stream."""
    return [(str(i), name) for i, name in enumerate(keys.inbound_streams())]


async def stream_facts(redis: Redis, stream: str, now_ms: int) -> dict[str, int | float]:
    """Depth (entries not yet stored: ingest deletes what it acks), entries handed to a consumer
    and not yet acked, and the age of the oldest entry waiting: the queue's lag."""
    depth = int(await redis.xlen(stream))
    try:
        pending = int((await redis.xpending(stream, keys.INGEST_GROUP))["pending"])
    except ResponseError:  # no group yet
        pending = 0
    oldest = await redis.xrange(stream, "-", "+", count=1) if depth else []
    age = 0.0
    if oldest:
        entry_id = oldest[0][0].decode() if isinstance(oldest[0][0], bytes) else oldest[0][0]
        age = max(now_ms - int(entry_id.split("-")[0]), 0) / 1000
    return {"depth": depth, "pending": pending, "oldest_age_seconds": age}


def decode_status(raw: dict[Any, Any]) -> dict[str, str]:
    return {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v) for k, v in raw.items()}


async def statuses(redis: Redis, account_ids: list[str]) -> list[dict[str, str]]:
    """Each account's live status hash (state, worker, last_event_at, lag_ms…), one round trip."""
    if not account_ids:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for account_id in account_ids:
            pipe.hgetall(keys.status(account_id))
        return [decode_status(raw) for raw in await pipe.execute()]


def account_view(row: dict[str, Any], status: dict[str, str]) -> dict[str, Any]:
    """An account as the operator sees it: the live status over the last one stored."""
    # a listener stamps last_event_at; events that came by webhook only have ingest's stamp
    stamp = status.get("last_event_at") or status.get("last_ingest_at")
    last_event = int(stamp) if stamp else row.get("last_event_at")
    return {
        "id": row["id"],
        "user_id": row["user_id"],
        "platform": row["platform"],
        "name": row["name"],
        "enabled": bool(row["enabled"]),
        "state": status.get("state") or row["state"],
        "detail": status.get("detail") or row.get("state_detail") or "",
        "worker": status.get("worker") or "",
        "last_event_at": last_event,
        "lag_ms": int(status["lag_ms"]) if status.get("lag_ms") else row.get("lag_ms"),
    }


async def accounts_view(hub: Hub, user_id: str | None = None) -> list[dict[str, Any]]:
    """Every account (or one person's), with listener state, worker, last event and lag."""
    async with hub.engine.connect() as conn:
        rows = await account_store.list_rows(conn, user_id)
    return [account_view(row, status) for row, status in zip(rows, await statuses(hub.redis, [r["id"] for r in rows]))]


async def workers_alive(redis: Redis, now_ms: int | None = None) -> list[tuple[str, int]]:
    """(worker name, registration expiry ms) of the workers whose registration has not lapsed."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    rows = await redis.zrangebyscore(keys.WORKERS, now, "+inf", withscores=True)
    return [((name.decode() if isinstance(name, bytes) else name), int(score)) for name, score in rows]


async def ai_usage(hub: Hub) -> list[dict[str, Any]]:
    """AI calls, tokens and cost by (provider, model), from the ledger's usage rows. The
    provider is read from the row's description ("… · model via provider · …")."""
    query = (
        sa.select(
            ledger.c.model,
            sa.func.min(ledger.c.description),
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(ledger.c.input_tokens), 0),
            sa.func.coalesce(sa.func.sum(ledger.c.output_tokens), 0),
            sa.func.coalesce(sa.func.sum(ledger.c.delta), 0),
        )
        .where(ledger.c.source == "usage")
        .group_by(ledger.c.model)
        .order_by(sa.func.count().desc())
    )
    async with hub.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    for index, (model, description, calls, tokens_in, tokens_out, delta) in enumerate(rows):
        via = _VIA.search(description or "")
        key = ("other", "other") if index >= MAX_MODELS else (via.group(1) if via else "unknown", model or "unknown")
        item = merged.setdefault(key, {"provider": key[0], "model": key[1], "requests": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0})
        item["requests"] += int(calls)
        item["input_tokens"] += int(tokens_in)
        item["output_tokens"] += int(tokens_out)
        item["cost_usd"] += -float(delta)  # usage is written as a negative delta
    return list(merged.values())


@dataclass
class Facts:
    """The hub at one moment, aggregate only: no account id, name or person in here."""

    at: float
    streams: dict[str, dict[str, int | float]]
    listeners: dict[tuple[str, str], int]  # (platform, state) -> accounts
    lag_seconds: dict[str, float]  # platform -> the largest event-to-store lag of its accounts' last batch
    dead_letters: int
    workers: int
    totals: dict[str, dict[str, int]]
    ai: list[dict[str, Any]] = field(default_factory=list)


class ClusterFacts:
    """`Facts`, read at most once per `cache_seconds` per process (the AI ledger at most once
    per AI_CACHE_SECONDS), however often Prometheus scrapes."""

    def __init__(self, cache_seconds: float = 5.0) -> None:
        self.cache_seconds = cache_seconds
        self._facts: Facts | None = None
        self._ai: tuple[float, list[dict[str, Any]]] = (-1e18, [])

    def invalidate(self) -> None:
        """Read everything again on the next `get` (tests; after an operator's change)."""
        self._facts, self._ai = None, (-1e18, [])

    async def get(self, hub: Hub) -> Facts:
        now = time.monotonic()
        if self._facts is not None and now - self._facts.at < self.cache_seconds:
            return self._facts
        now_ms = int(time.time() * 1000)
        redis = hub.redis
        streams = {label: await stream_facts(redis, name, now_ms) for label, name in shards()}
        async with hub.engine.connect() as conn:
            rows = await account_store.list_rows(conn)
        listeners: dict[tuple[str, str], int] = {}
        lag: dict[str, float] = {}
        for row, status in zip(rows, await statuses(redis, [r["id"] for r in rows])):
            view = account_view(row, status)
            platform = platform_label(view["platform"])
            state = view["state"] if view["state"] in STATES else "stopped"
            listeners[(platform, state)] = listeners.get((platform, state), 0) + 1
            if view["lag_ms"] is not None:
                lag[platform] = max(lag.get(platform, 0.0), view["lag_ms"] / 1000)
        if now - self._ai[0] >= max(AI_CACHE_SECONDS, self.cache_seconds):
            self._ai = (now, await ai_usage(hub))
        self._facts = Facts(
            at=now,
            streams=streams,
            listeners=listeners,
            lag_seconds=lag,
            dead_letters=int(await redis.llen(keys.DEAD_LETTERS)),
            workers=len(await workers_alive(redis, now_ms)),
            totals=await totals(redis),
            ai=self._ai[1],
        )
        return self._facts


def cluster_facts(hub: Hub) -> ClusterFacts:
    """This process's cache of the cluster's facts (one per Hub)."""
    facts = hub.extras.get("metrics.facts")
    if facts is None:
        facts = hub.extras["metrics.facts"] = ClusterFacts(float(getattr(hub.settings, "metrics_cache_seconds", 5.0)))
    return facts
