"""History backfill under a platform rate limit, against the floor that limit sets.

Usage::

    .venv/bin/python -m bench.backfill [--quick] [--backend sqlite|postgresql|both]
                                       [--messages N] [--channels C] [--rate R]

A Slack workspace (tests/fakes/slack.py, in this process) holds N messages of history spread
over C channels (default 100,000 over 4: 25,000 each, so every channel is paged in several
rounds of 50 pages). Its Web API enforces a rate limit on `conversations.history` the way
Slack does: a token bucket per token holding one second's worth of requests (`--rate`, default
3 requests/s); past it, HTTP 429 `ratelimited` with an integer `Retry-After` (seconds until a
request is allowed again, rounded up), which the hub's Slack client obeys, and after the first
429 paces its requests (connectors/slack/pacing.py). The hub asks for 200 messages a page
(connectors/slack/history.py, Slack's recommended page size).

**floor** = N / (200 * rate): the least time any client could take to read N messages through
that limit. **hub time**: from the history job being queued (as connecting an account does)
until `SELECT count(*)` shows all N stored, through one `loomi worker` process (its ARQ
backfill job -> Redis stream -> ingest -> store) on a fresh database. `ratio = hub / floor`,
aim <= 1.2 (above 1: the job's start, the first burst and its whole-second Retry-After, the
rare refusals of the paced requests, and the last pages' ingest).
Then every seeded message is checked to be stored exactly once: count == distinct == N and
the stored ids are exactly the seeded ones.

`--quick`: 10,000 messages over 2 channels, on SQLite. The fake answers history pages from an index (same
answers as FakeSlack's scan of the whole channel, which at 25,000 messages would cost this
process more than the hub spends); the CPU line shows this process (bench + fake) stays light.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import copy
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiohttp import web
from redis.asyncio import Redis

from bench.common import emit
from bench.ingest import BenchWorker, CpuMeter
from connectors.base import AccountSpec
from connectors.slack.history import PAGE_LIMIT
from store import accounts as account_store
from store.schema import messages
from tests.conftest import REDIS_URL, embedded_redis
from tests.e2e.harness import e2e_env, fresh_database, running_hub
from tests.fakes.slack import FakeSlack, _cursor, _uncursor, ts_key
from workers import keys
from workers.jobs import enqueue, jobs_pool

LIMITED = ("conversations.history", "conversations.replies")  # Slack's Tier 3 methods we page
USERS = [("U0ALICE", "alice"), ("U0BOB", "bob"), ("U0CAROL", "carol"), ("U0DAN", "dan")]
WORDS = (
    "the quick brown fox jumps over lazy dog meeting tomorrow deploy release notes please review "
    "budget lunch invoice customer ticket urgent thanks later call agenda draft update server "
    "database latency queue worker stream commit batch ingest hub message thread reply"
).split()


def _say(line: str) -> None:
    print(line, flush=True)


def redis_url(backend: str, db: int) -> str:
    """The Redis each kind of deployment runs: the embedded Redis 6.2 `loomi serve` starts on
    SQLite, a Redis server (LOOMI_TEST_REDIS_URL) beside PostgreSQL."""
    return f"{embedded_redis().url}?db={db}" if backend == "sqlite" else f"{REDIS_URL}/{db}"


class RateLimitedSlack(FakeSlack):
    """FakeSlack whose history methods are rate limited like Slack's tiers, and answered from
    an index (a bisect per page instead of a scan of the channel).

    The limit: a token bucket per (token, method), `rate` requests a second, holding one
    second's worth (Slack allows short bursts). A request without a token gets HTTP 429,
    `{"ok": false, "error": "ratelimited"}` and `Retry-After: <whole seconds until a token>`."""

    def __init__(self, *, rate: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rate = rate
        self._buckets: dict[tuple[str, str], list[float]] = {}  # -> [tokens, at]
        self.served: dict[str, int] = {}
        self.refused: dict[str, int] = {}
        self.busy = 0.0  # seconds spent answering limited methods
        self.first_at = self.last_at = 0.0
        self.timeline: list[tuple[float, bool]] = []  # (arrival, allowed) of each limited request
        self._index: dict[str, tuple[list[dict[str, Any]], list[int]]] = {}

    def _take(self, token: str, method: str) -> float:
        """0 if a request may go now (and takes the token), else seconds until one may."""
        now = time.monotonic()
        bucket = self._buckets.setdefault((token, method), [self.rate, now])
        bucket[0] = min(self.rate, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if bucket[0] >= 1:
            bucket[0] -= 1
            return 0.0
        return (1 - bucket[0]) / self.rate

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if method not in LIMITED:
            return await super()._api(request)
        auth = request.headers.get("Authorization", "")
        wait = self._take(auth, method)
        self.timeline.append((time.monotonic(), not wait))
        if wait:
            self.refused[method] = self.refused.get(method, 0) + 1
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                     headers={"Retry-After": str(max(1, math.ceil(wait)))})
        started = time.monotonic()
        self.first_at = self.first_at or started
        response = await super()._api(request)
        self.last_at = time.monotonic()
        self.busy += self.last_at - started
        self.served[method] = self.served.get(method, 0) + 1
        return response

    def where_time_went(self) -> str:
        """The gaps between allowed requests: their median (the pace), those after a 429 (the
        waits), and the excess of the rest over twice the median (stalls: the hub was late)."""
        gaps: list[tuple[float, bool]] = []  # (gap before an allowed request, a 429 came between)
        last, refused = None, False
        for at, allowed in self.timeline:
            if not allowed:
                refused = True
                continue
            if last is not None:
                gaps.append((at - last, refused))
            last, refused = at, False
        plain = sorted(g for g, r in gaps if not r)
        if not plain:
            return "no pace"
        median = plain[len(plain) // 2]
        waits = sum(g for g, r in gaps if r)
        stalls = [max(g - 2 * median, 0.0) if not r else 0.0 for g, r in gaps]
        quarter = max(len(stalls) // 4, 1)
        by_quarter = "/".join(f"{sum(stalls[i:i + quarter]):.1f}" for i in range(0, quarter * 4, quarter))
        return (f"pace {1000 * median:.0f} ms between pages (limit: {1000 / self.rate:.0f} ms), "
                f"{waits:.1f} s in gaps with a 429, {sum(stalls):.1f} s of gaps over twice the pace "
                f"({by_quarter} s by quarter of the pages)")

    def index(self) -> None:
        """Build the per-channel index once the history is seeded (top-level messages, ts order)."""
        for channel, msgs in self._messages.items():
            top = sorted((m for m in msgs if m.get("thread_ts") in (None, m["ts"])), key=lambda m: ts_key(m["ts"]))
            self._index[channel] = (top, [ts_key(m["ts"]) for m in top])

    async def _m_conversations_history(self, p: dict[str, Any], me: Any) -> dict[str, Any]:
        ch = self._channel(p.get("channel"))
        if p.get("oldest") or p.get("latest") or ch["id"] not in self._index:
            return await super()._m_conversations_history(p, me)
        top, stamps = self._index[ch["id"]]
        end = len(top)
        if p.get("cursor"):
            end = bisect.bisect_right(stamps, ts_key(_uncursor(str(p["cursor"])) or "0"))
        limit = int(p.get("limit") or 100)
        start = max(0, end - limit)
        out: dict[str, Any] = {"messages": copy.deepcopy(top[start:end][::-1]), "has_more": start > 0}
        if start > 0:
            out["response_metadata"] = {"next_cursor": _cursor("next_ts", top[start - 1]["ts"])}
        return out | {"pin_count": 0, "channel_actions_ts": None, "channel_actions_count": 0}


def seed(fake: RateLimitedSlack, n: int, channels: int, chars: int = 200, seed: int = 11) -> dict[str, set[str]]:
    """n messages of ~`chars` characters over `channels` channels, as a real export looks:
    text plus the rich_text block Slack clients send. Returns channel -> seeded ts."""
    rng = random.Random(seed)
    for user_id, name in USERS:
        fake.add_user(user_id, name)
    names = [f"C{i:03d}BENCH" for i in range(channels)]
    for i, channel in enumerate(names):
        fake.add_channel(channel, f"bench-{i}")
    seeded: dict[str, set[str]] = {c: set() for c in names}
    for i in range(n):
        channel = names[i % channels]
        words = [f"msg {i}"]
        while sum(len(w) + 1 for w in words) < chars:
            words.append(rng.choice(WORDS))
        text = " ".join(words)[:chars]
        user = USERS[i % len(USERS)][0]
        ts = fake.add_history_only(channel, user, text)
        msg = fake._messages[channel][-1]
        msg["blocks"] = [{"type": "rich_text", "block_id": f"b{i}", "elements": [
            {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}]}]
        seeded[channel].add(ts)
    fake.index()
    return seeded


async def count_rows(engine: Any, account_id: str) -> int:
    async with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(messages).where(messages.c.account_id == account_id)
        return int((await conn.execute(query)).scalar_one())


async def wait_state(redis: Redis, account_id: str, state: bytes, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while (now := await redis.hget(keys.status(account_id), "state")) != state:
        if time.monotonic() > deadline:
            raise TimeoutError(f"account state {now!r}, not {state!r}, after {timeout:.0f} s")
        await asyncio.sleep(0.1)


async def run_backend(backend: str, args: argparse.Namespace) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="loomi-bench-backfill-") as tmp_name:
        tmp = Path(tmp_name)
        url = redis_url(backend, args.redis_db)
        try:
            return await _run(backend, args, tmp, url)
        finally:
            cleanup = Redis.from_url(url)
            try:
                await cleanup.flushdb()
            finally:
                await cleanup.aclose()


async def _run(backend: str, args: argparse.Namespace, tmp: Path, url: str) -> list[str]:
    n, rate = args.messages, args.rate
    floor = n / (PAGE_LIMIT * rate)
    async with RateLimitedSlack(rate=rate) as fake, fresh_database(backend, tmp) as db:
        t = time.monotonic()
        seeded = seed(fake, n, args.channels)
        _say(f"{backend}: seeded {n:,} messages over {args.channels} channels in {time.monotonic() - t:.1f} s; "
             f"limit {rate:g} history requests/s, {PAGE_LIMIT} a page: floor {floor:.1f} s")
        env = e2e_env(
            backend, tmp, db, redis_url=url,
            LOOMI_SLACK_BASE_URL=fake.base_url, LOOMI_SLACK_APP_TOKEN=fake.app_token,
            LOOMI_LEASE_MS="10000", LOOMI_HEARTBEAT_SECONDS="3", LOOMI_INGEST_CLAIM_IDLE_MS="30000",
        )
        async with running_hub(env, worker=False) as running:
            hub = running.hub
            me = (await running.client.get("/api/remote-auth/user", headers=await running.login())).json()
            spec = AccountSpec(external_id=fake.team_id, name=fake.team_name, credentials={
                "access_token": fake.bot_token, "bot_user_id": fake.bot_user_id, "bot_id": fake.bot_id, "team_id": fake.team_id})
            async with hub.engine.begin() as conn:
                account_id = (await account_store.upsert_account(conn, hub.vault, me["id"], "slack", spec))["id"]
            worker = BenchWorker(env, tmp / "worker.log", indexer=args.indexer).start()
            try:
                await wait_state(hub.redis, account_id, b"connected", 60)  # its Socket Mode listener is up
                await asyncio.sleep(1)  # the worker idle: imports done, ARQ polling
                cpu = CpuMeter([worker.pid])
                cpu.start()
                started = time.monotonic()
                # what connecting an account does (api/routes/integrations.py)
                await enqueue(jobs_pool(hub), "backfill", account_id, "history", job_id=f"history:{account_id}:bench")
                deadline = started + 3 * floor + 120
                stored = 0
                while stored < n:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"{stored:,} of {n:,} stored after {time.monotonic() - started:.0f} s; see {tmp}/worker.log")
                    await asyncio.sleep(0.2)
                    stored = await count_rows(hub.engine, account_id)
                done = time.monotonic()
                usage = cpu.stop(n)
                async with hub.engine.connect() as conn:
                    rows = (await conn.execute(sa.select(messages.c.chat_id, messages.c.native_id)
                                               .where(messages.c.account_id == account_id))).all()
            finally:
                worker.stop()
    hub_time = done - started
    fetched = fake.last_at - started
    stored_ids = {(chat, native) for chat, native in rows}
    wanted = {(chat, ts) for chat, stamps in seeded.items() for ts in stamps}
    exact = len(rows) == len(stored_ids) == n and stored_ids == wanted
    served, refused = fake.served.get("conversations.history", 0), fake.refused.get("conversations.history", 0)
    ratio = hub_time / floor
    tag = f"{backend:<10}"
    lines = [
        f"{tag} backfill {n:,} msgs in {hub_time:.1f} s, floor {floor:.1f} s: ratio {ratio:.3f} (aim <= 1.2)",
        f"{tag}   ({served} history pages served, {refused} refused with 429; last page served at {fetched:.1f} s, "
        f"all stored {done - fake.last_at:.2f} s later; fake busy {fake.busy:.1f} s; {usage})",
        f"{tag}   ({fake.where_time_went()}; the job started {fake.first_at - started:.1f} s after it was queued)",
        f"{tag} stored {len(rows):,} rows, {len(stored_ids):,} distinct, "
        f"{'exactly the seeded messages' if stored_ids == wanted else f'{len(wanted - stored_ids)} missing, {len(stored_ids - wanted)} unknown'}",
    ]
    for line in lines:
        _say(line)
    emit("backfill", f"{backend} backfill time vs rate-limit floor", round(hub_time, 2), "s", baseline=round(floor, 2),
         baseline_label=f"floor: {n:,} msgs / ({PAGE_LIMIT}/page x {rate:g} req/s)", ratio=ratio, aim="ratio <= 1.2",
         ok=ratio <= 1.2)
    emit("backfill", f"{backend} messages stored exactly once", len(stored_ids) if exact else 0, "messages", baseline=n,
         baseline_label="messages seeded", aim="ratio = 1 (count = distinct = seeded)", ok=exact)
    if not exact:
        raise SystemExit(f"bench.backfill: {backend}: the store does not hold the seeded messages exactly once")
    return [lines[0], lines[3]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.backfill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10,000 messages, SQLite only")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default=None)
    parser.add_argument("--messages", type=int, default=None, help="messages of history (default 100,000)")
    parser.add_argument("--channels", type=int, default=None, help="default 4 (2 with --quick): whole pages each")
    parser.add_argument("--rate", type=float, default=3.0, help="conversations.history requests/s the fake allows")
    parser.add_argument("--no-indexer", dest="indexer", action="store_false",
                        help="the worker without its embedding indexer (which embeds the backfilled messages meanwhile)")
    parser.add_argument("--redis-db", type=int, default=9, help="of the embedded Redis (SQLite) or LOOMI_TEST_REDIS_URL")
    args = parser.parse_args(argv)
    args.messages = args.messages or (10_000 if args.quick else 100_000)
    args.channels = args.channels or (2 if args.quick else 4)
    backend = args.backend or ("sqlite" if args.quick else "both")
    backends = ["sqlite", "postgresql"] if backend == "both" else [backend]
    _say(f"bench.backfill: {args.messages:,} messages, {args.channels} channels, {args.rate:g} req/s, "
         f"{os.cpu_count()} cores, python {sys.version.split()[0]}")
    started = time.monotonic()
    summary: list[str] = []

    async def go() -> None:
        for name in backends:
            summary.extend(await run_backend(name, args))

    asyncio.run(go())
    _say(f"summary ({time.monotonic() - started:.0f} s):")
    for line in summary:
        _say("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
