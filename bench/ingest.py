"""Inbound pipeline throughput and latency, each against a baseline measured in the same run.

Usage::

    .venv/bin/python -m bench.ingest [--backend sqlite|postgresql|both] [--messages N]
                                     [--rate R] [--seconds S] [--worker process|inproc|both]
                                     [--workers K] [--no-indexer] [--detect pubsub|poll]
                                     [--plain-fake] [--set LOOMI_X=VALUE] [--profile DIR]

Per database kind, each on a fresh database (tests/e2e/harness.fresh_database) and a dedicated
Redis db (`--redis-db`, default 10, flushed before and after):

1. **e2e msgs/s**: FakeTelegram runs in this process, with a hub API (used only to connect the
   bot through POST /api/telegram/listener/init and to read the store) and a worker: by default
   one separate `loomi worker` process (tests/e2e/harness.WorkerProcess; `--workers K` for
   more, `--worker inproc` for a HubWorker on this event loop). The worker's real listener
   (python-telegram-bot long polling, at most 100 updates per getUpdates as on Telegram) ->
   Redis stream -> ingest -> store. After a 300-message warm-up, N messages are posted into the
   fake as fast as it takes them (yielding every 500 so it keeps serving getUpdates); the clock
   runs from the first post until `SELECT count(*) FROM messages` (every 50 ms) shows all N.
   Also printed: the 10%->90% slope (sustained rate without start-up and tail) and, from the
   fake's side, each getUpdates cycle: time inside the fake vs. outside it (transfer, the
   worker's handling, waiting for its event loop).
2. **baseline rows/s**: the same N rows, read back from the e2e store, inserted into the
   messages table of a second fresh database migrated to the same schema (indexes, FTS
   trigger / GIN index included) with plain SQLAlchemy Core `INSERT` executemany, 500 rows per
   transaction, through store.db.create_engine (the hub's drivers and settings).
   `ratio = e2e / baseline`. Aim: >= 0.5.
3. **latency**: messages posted into the fake at `--rate` per second for `--seconds`, the post
   time recorded per (chat, message id). Visibility: this process subscribes to the Redis
   pub/sub channel `loomi:changes` (ingest PUBLISHes the user id after each commit) and on
   each notice reads the rows with `seq` above the last seen one, so a message counts as
   visible only once it has been read back from the database (the read's own time included).
   `--detect poll` reads every 5 ms instead. p50 / p99 in ms. Aim: p99 <= 100 ms at 500 msg/s.

The fake is "lean" unless `--plain-fake`: same protocol, minus two costs that a real platform
does not put on our cores (see TimedFake). Each phase prints CPU use: this process (bench +
fake), the worker(s) and worker CPU per message, all postgres and redis-server processes, and
the machine (with "others": load that is none of these; the machine is shared, so compare runs
with little of it). `--profile DIR` records py-spy collapsed stacks of the worker and of this
process per phase (py-spy must be installed in the venv; `BENCH_PYSPY_ARGS=--gil` adds flags).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import psutil
import sqlalchemy as sa
from redis.asyncio import Redis

from store.db import create_engine, migrate
from store.schema import accounts, messages, users
from tests.conftest import REDIS_URL
from tests.e2e.harness import ROOT, WorkerProcess, e2e_env, fresh_database, running_hub
from tests.fakes.telegram import FakeTelegram
from workers import keys

TOKEN = "424242:AAbenchTokenForTheLoopbackFakeTelegram"
BOT_ID = 424242
SENDERS = [
    {"id": 601, "first_name": "Alice", "username": "alice"},
    {"id": 602, "first_name": "Bob", "last_name": "Builder"},
    {"id": 603, "first_name": "Carol", "username": "carol_c"},
]
WORDS = (
    "the quick brown fox jumps over lazy dog meeting tomorrow deploy release notes please review "
    "budget lunch invoice customer ticket urgent thanks later call agenda draft update server "
    "database latency queue worker stream commit batch ingest hub message thread reply"
).split()
BATCH = 500


def _say(line: str) -> None:
    print(line, flush=True)


# ---- the fake platform side ----------------------------------------------------------------


class TimedFake(FakeTelegram):
    """FakeTelegram that records each getUpdates: when it arrived, when it answered, how many.

    `lean` (the default) drops two costs of the fake that a real platform does not put on our
    CPU, with the protocol unchanged: confirming an offset scans the whole backlog (O(backlog)
    per getUpdates; here a bisect, updates being queued in update_id order), and each answer
    deep-copies the updates it returns (here not: they are copies already, made when queued,
    and are serialized before anything can change them)."""

    def __init__(self, *, lean: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lean = lean
        self.polls: list[tuple[float, float, int]] = []

    def _confirm(self, bot: Any, offset: int) -> None:
        if not self.lean or offset < 0:
            return super()._confirm(bot, offset)
        cut = bisect.bisect_left(bot.updates, offset, key=lambda u: u["update_id"])
        if cut:
            bot.last_confirmed = bot.updates[cut - 1]
            del bot.updates[:cut]

    def _take(self, bot: Any, limit: int) -> list[dict[str, Any]]:
        if not self.lean:
            return super()._take(bot, limit)
        out = bot.updates[:limit]
        if bot.redeliver and bot.last_confirmed is not None:
            out.insert(0, bot.last_confirmed)
            bot.redeliver = False
        return out

    async def _get_updates(self, bot: Any, p: dict[str, Any], request: Any) -> list[dict[str, Any]]:
        arrived = time.monotonic()
        found = await super()._get_updates(bot, p, request)
        self.polls.append((arrived, time.monotonic(), len(found)))
        return found

    def poll_summary(self, since: float, until: float) -> str:
        """Where a listener cycle's time goes: in the fake (from the request's arrival to its
        answer, a long poll's wait included) and outside it (answer -> next request: transfer,
        the worker's handling and queueing, waits for the worker's event loop)."""
        polls = [p for p in self.polls if since <= p[0] <= until]
        busy = [p for p in polls if p[2]]
        if len(polls) < 2 or not busy:
            return "listener: no polls"
        outside = [polls[i + 1][0] - polls[i][1] for i in range(len(polls) - 1) if polls[i][2]]
        inside = [p[1] - p[0] for p in busy]
        per = sum(p[2] for p in busy) / len(busy)
        return (f"listener: {len(busy)} getUpdates with updates, {per:.0f} updates each, "
                f"{1000 * sum(inside) / len(inside):.2f} ms in the fake + "
                f"{1000 * sum(outside) / max(len(outside), 1):.2f} ms outside it per call")


class Poster:
    """Posts messages into the fake, spread over a few chats, with ~`chars` characters of text."""

    def __init__(self, fake: FakeTelegram, chats: int, chars: int, seed: int = 7) -> None:
        self.fake, self.chars, self.rng = fake, chars, random.Random(seed)
        self.chats: list[int] = []
        for i in range(chats):
            if i % 3 == 0:
                chat = 700 + i  # a DM: positive id, "private"
                fake.add_chat(chat, "private", first_name=SENDERS[i % len(SENDERS)]["first_name"])
            else:
                chat = -100_000 - i
                fake.add_chat(chat, "supergroup", f"Team {i}")
            self.chats.append(chat)
        self.count = 0

    def prepare(self, n: int) -> None:
        """Make the next `n` texts now, so the timed part only posts."""
        self._texts = [self._make_text(self.count + i) for i in range(n)]
        self._first = self.count

    def text(self) -> str:
        index = self.count - getattr(self, "_first", 0)
        texts = getattr(self, "_texts", [])
        return texts[index] if 0 <= index < len(texts) else self._make_text(self.count)

    def _make_text(self, count: int) -> str:
        words: list[str] = [f"msg {count}"]
        size = len(words[0])
        while size < self.chars:
            word = self.rng.choice(WORDS)
            words.append(word)
            size += len(word) + 1
        return " ".join(words)[: self.chars]

    def post(self) -> tuple[str, str]:
        chat = self.chats[self.count % len(self.chats)]
        sender = SENDERS[self.count % len(SENDERS)]
        native = self.fake.post_message(TOKEN, chat, sender, self.text())
        self.count += 1
        return str(chat), str(native)


# ---- the worker ---------------------------------------------------------------------------

# `--no-indexer`: the worker without its background embedding indexer (HubWorker.index_messages,
# when the worker has one), to see the message pipeline alone; it is a bench-only switch.
_NO_INDEXER = """
import asyncio
from workers.process import HubWorker
if hasattr(HubWorker, "index_messages"):
    async def _no_indexing(self):
        await self.stop_event.wait()
    HubWorker.index_messages = _no_indexing
from loomi.cli import main
raise SystemExit(main(["worker"]))
"""


class BenchWorker(WorkerProcess):
    """`loomi worker` as tests/e2e/harness.WorkerProcess starts it, optionally without indexer."""

    def __init__(self, env: dict[str, str], log: Path, *, indexer: bool) -> None:
        super().__init__(env, log)
        self.indexer = indexer

    def start(self) -> "BenchWorker":
        if self.indexer:
            super().start()
            return self
        self._fh = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _NO_INDEXER], cwd=ROOT, env=self.env, stdout=self._fh, stderr=self._fh
        )
        return self


@contextlib.contextmanager
def inproc_indexer(enabled: bool) -> Iterator[None]:
    """The same switch for an in-process HubWorker."""
    from workers.process import HubWorker

    original = getattr(HubWorker, "index_messages", None)
    if enabled or original is None:
        yield
        return

    async def _no_indexing(self: Any) -> None:
        await self.stop_event.wait()

    HubWorker.index_messages = _no_indexing  # type: ignore[method-assign]
    try:
        yield
    finally:
        HubWorker.index_messages = original  # type: ignore[method-assign]


def has_indexer() -> bool:
    from workers.process import HubWorker

    return hasattr(HubWorker, "index_messages")


# ---- measurements --------------------------------------------------------------------------


@dataclass
class CpuMeter:
    """CPU used over an interval by this process (bench + fake platform), the worker
    process(es), and every postgres and redis-server process on the machine (shared services:
    other users' load shows up there too), as % of one core."""

    worker_pids: list[int]
    _start: dict[str, float] = field(default_factory=dict)
    _services: dict[int, tuple[str, float]] = field(default_factory=dict)

    @staticmethod
    def _scan() -> dict[int, tuple[str, float]]:
        found: dict[int, tuple[str, float]] = {}
        for proc in psutil.process_iter(["name", "cpu_times"]):
            name = proc.info["name"] or ""
            if name.startswith("postgres") or name.startswith("redis-server"):
                times = proc.info["cpu_times"]
                if times is not None:
                    found[proc.pid] = ("postgres" if name.startswith("postgres") else "redis", times.user + times.system)
        return found

    def _now(self) -> dict[str, float]:
        out = {"bench": sum(psutil.Process().cpu_times()[:2]), "wall": time.monotonic()}
        with contextlib.suppress(psutil.Error):
            for i, pid in enumerate(self.worker_pids):
                out[f"worker{i}"] = sum(psutil.Process(pid).cpu_times()[:2])
        system = psutil.cpu_times()
        out["busy"] = system.user + system.system + system.nice + getattr(system, "irq", 0) + getattr(system, "softirq", 0)
        return out

    def start(self) -> None:
        self._services = self._scan()
        self._start = self._now()

    def stop(self, messages: int) -> str:
        end = self._now()
        services = self._scan()
        wall = end["wall"] - self._start["wall"]
        parts = [f"bench+fake {100 * (end['bench'] - self._start['bench']) / wall:.0f}%"]
        spent = 0.0
        for i in range(len(self.worker_pids)):
            key = f"worker{i}"
            if key in end and key in self._start:
                name = "worker" if len(self.worker_pids) == 1 else key
                spent += end[key] - self._start[key]
                parts.append(f"{name} {100 * (end[key] - self._start[key]) / wall:.0f}%")
        if spent:
            parts.append(f"= {1e6 * spent / messages:.0f} us worker cpu/msg")
        used: dict[str, float] = {"postgres": 0.0, "redis": 0.0}
        for pid, (kind, seconds) in services.items():
            before = self._services.get(pid)
            used[kind] += seconds - (before[1] if before and before[0] == kind else 0.0)
        parts += [f"{kind} {100 * seconds / wall:.0f}%" for kind, seconds in used.items()]
        ours = (end["bench"] - self._start["bench"]) + sum(used.values()) + sum(
            end[k] - self._start[k] for k in end if k.startswith("worker") and k in self._start
        )
        busy = end["busy"] - self._start["busy"]
        parts.append(f"machine {100 * busy / wall:.0f}% of {psutil.cpu_count()}00% (others {100 * max(busy - ours, 0) / wall:.0f}%)")
        return "cpu: " + ", ".join(parts)


async def count_rows(engine: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(messages))).scalar_one())


async def wait_for_count(engine: Any, target: int, timeout: float, interval: float = 0.05) -> tuple[float, list[tuple[float, int]]]:
    """Poll COUNT(*) until it reaches `target`; returns the time it did and the (t, count) trace."""
    trace: list[tuple[float, int]] = []
    deadline = time.monotonic() + timeout
    while True:
        n = await count_rows(engine)
        now = time.monotonic()
        trace.append((now, n))
        if n >= target:
            return now, trace
        if now > deadline:
            raise TimeoutError(f"store holds {n} of {target} messages after {timeout:.0f} s")
        await asyncio.sleep(interval)


@dataclass
class Throughput:
    n: int
    seconds: float
    post_seconds: float
    steady: float | None
    cpu: str
    started: float = 0.0
    ended: float = 0.0

    @property
    def rate(self) -> float:
        return self.n / self.seconds


class Profiler:
    """`py-spy record` (collapsed stacks) of the worker and of this process during one phase."""

    def __init__(self, folder: str | None, name: str, pids: dict[str, int]) -> None:
        self.folder, self.name, self.pids = folder, name, pids
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> "Profiler":
        if self.folder:
            Path(self.folder).mkdir(parents=True, exist_ok=True)
            spy = str(Path(sys.executable).with_name("py-spy"))
            for who, pid in self.pids.items():
                out = Path(self.folder) / f"{self.name}-{who}.txt"
                self.procs.append(subprocess.Popen(
                    [spy, "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--nonblocking", "-o", str(out),
                     *os.environ.get("BENCH_PYSPY_ARGS", "").split()],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                ))
            time.sleep(0.5)  # let py-spy attach
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()


async def measure_throughput(poster: Poster, engine: Any, n: int, cpu: CpuMeter) -> Throughput:
    base = await count_rows(engine)
    poster.prepare(n)
    cpu.start()
    t0 = time.monotonic()
    posted_at = t0

    async def post_all() -> None:
        nonlocal posted_at
        for i in range(n):
            poster.post()
            if i % BATCH == BATCH - 1:
                await asyncio.sleep(0)  # let the fake serve getUpdates while we keep posting
        posted_at = time.monotonic()

    posting = asyncio.create_task(post_all())
    done_at, trace = await wait_for_count(engine, base + n, timeout=max(60, n / 200))
    await posting
    usage = cpu.stop(n)
    # the sustained part: from 10% to 90% of N stored (start-up and tail excluded)
    lo = next((t, c) for t, c in trace if c - base >= 0.1 * n)
    hi = next((t, c) for t, c in trace if c - base >= 0.9 * n)
    steady = (hi[1] - lo[1]) / (hi[0] - lo[0]) if hi[0] > lo[0] else None
    return Throughput(n, done_at - t0, posted_at - t0, steady, usage, t0, done_at)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class Latency:
    sent: int
    seen: int
    p50: float
    p99: float
    worst: float
    achieved_rate: float
    cpu: str


async def measure_latency(poster: Poster, hub: Any, user_id: str, rate: float, seconds: float, detect: str, cpu: CpuMeter) -> Latency:
    engine = hub.engine
    posted: dict[tuple[str, str], float] = {}
    visible: dict[tuple[str, str], float] = {}
    async with engine.connect() as conn:
        last_seq = int((await conn.execute(sa.select(sa.func.coalesce(sa.func.max(users.c.seq), 0)).where(users.c.id == user_id))).scalar_one())
    query = sa.select(messages.c.chat_id, messages.c.native_id, messages.c.seq).where(messages.c.user_id == user_id)
    finished = asyncio.Event()

    async def read_new() -> None:
        nonlocal last_seq
        async with engine.connect() as conn:
            rows = (await conn.execute(query.where(messages.c.seq > last_seq).order_by(messages.c.seq))).all()
        now = time.monotonic()
        for chat_id, native_id, seq in rows:
            visible.setdefault((chat_id, native_id), now)
            last_seq = max(last_seq, seq)

    async def observe_pubsub() -> None:
        pubsub = hub.redis.pubsub()
        await pubsub.subscribe(keys.CHANGES_CHANNEL)
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        ready.set()
        try:
            while not finished.is_set():
                msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                if msg is None:
                    continue  # nothing committed (the wait at the end reads once more anyway)
                while await pubsub.get_message(ignore_subscribe_messages=True, timeout=0) is not None:
                    pass  # several commits announced: one read covers them all
                await read_new()
        finally:
            await pubsub.unsubscribe()
            await pubsub.aclose()

    async def observe_poll() -> None:
        ready.set()
        while not finished.is_set():
            await read_new()
            await asyncio.sleep(0.005)

    ready = asyncio.Event()
    total = int(rate * seconds)
    poster.prepare(total)
    observer = asyncio.create_task(observe_pubsub() if detect == "pubsub" else observe_poll())
    await ready.wait()
    cpu.start()
    t0 = time.monotonic()
    for i in range(total):
        target = t0 + i / rate
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        now = time.monotonic()
        posted[poster.post()] = now
    posted_for = time.monotonic() - t0
    deadline = time.monotonic() + 30
    while len(visible.keys() & posted.keys()) < len(posted) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        if detect == "pubsub":
            await read_new()  # in case the last notification raced the subscription read
    usage = cpu.stop(total)
    finished.set()
    await observer
    lat = [1000 * (visible[k] - t) for k, t in posted.items() if k in visible]
    if not lat:
        raise RuntimeError("no message became visible")
    return Latency(total, len(lat), percentile(lat, 0.5), percentile(lat, 0.99), max(lat), total / posted_for, usage)


async def measure_baseline(backend: str, tmp: Path, rows: list[dict[str, Any]], user: dict[str, Any], account: dict[str, Any]) -> float:
    """Plain batched INSERTs of `rows` into a fresh messages table of the same schema."""
    async with fresh_database(backend, tmp) as url:
        await migrate(url)
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                await conn.execute(users.insert(), [user])
                await conn.execute(accounts.insert(), [account])
            t0 = time.perf_counter()
            for start in range(0, len(rows), BATCH):
                async with engine.begin() as conn:
                    await conn.execute(messages.insert(), rows[start : start + BATCH])
            elapsed = time.perf_counter() - t0
            assert await count_rows(engine) == len(rows)
        finally:
            await engine.dispose()
    return len(rows) / elapsed


# ---- one backend, one worker mode ------------------------------------------------------------


@dataclass
class Outcome:
    throughput: Throughput
    latency: Latency
    rows: list[dict[str, Any]]
    user: dict[str, Any]
    account: dict[str, Any]
    listener: str


async def wait_connected(hub: Any, account_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = await hub.redis.hget(keys.status(account_id), "state")
        if state == b"connected":
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the Telegram listener did not connect (state {state!r})")


async def run_pipeline(backend: str, args: argparse.Namespace, mode: str, tmp: Path) -> Outcome:
    redis_url = f"{REDIS_URL}/{args.redis_db}"
    try:
        return await _run_pipeline(backend, args, mode, tmp, redis_url)
    finally:
        # after every worker has stopped (an in-process one stops when running_hub exits)
        cleanup = Redis.from_url(redis_url)
        try:
            await cleanup.flushdb()
        finally:
            await cleanup.aclose()


async def _run_pipeline(backend: str, args: argparse.Namespace, mode: str, tmp: Path, redis_url: str) -> Outcome:
    async with TimedFake(lean=not args.plain_fake) as fake, fresh_database(backend, tmp) as db:
        fake.add_bot(TOKEN, BOT_ID, "bench_bot")
        poster = Poster(fake, args.chats, args.chars)
        env = e2e_env(
            backend, tmp, db, redis_url=redis_url,
            LOOMI_TELEGRAM_BASE_URL=fake.base_url,
            # production values for everything on the hot path; only the scan is quicker
            LOOMI_LEASE_MS="10000", LOOMI_HEARTBEAT_SECONDS="3", LOOMI_INGEST_CLAIM_IDLE_MS="30000",
            **dict(item.split("=", 1) for item in args.set),
        )
        with inproc_indexer(args.indexer):
            return await _measure(backend, args, mode, tmp, fake, poster, env)


async def _measure(
    backend: str, args: argparse.Namespace, mode: str, tmp: Path, fake: TimedFake, poster: Poster, env: dict[str, str]
) -> Outcome:
    async with running_hub(env, worker=(mode == "inproc")) as running:
        hub = running.hub
        count = args.workers if mode == "process" else 0
        workers = [BenchWorker(env, tmp / f"worker{i}.log", indexer=args.indexer).start() for i in range(count)]
        try:
            headers = await running.login()
            r = await running.client.post("/api/telegram/listener/init", json={"botToken": TOKEN}, headers=headers)
            r.raise_for_status()
            account_id = r.json()["account"]["id"]
            await wait_connected(hub, account_id)
            async with hub.engine.connect() as conn:
                account = dict((await conn.execute(accounts.select().where(accounts.c.id == account_id))).mappings().one())
                user = dict((await conn.execute(users.select().where(users.c.id == account["user_id"]))).mappings().one())
            cpu = CpuMeter([w.pid for w in workers])
            # warm-up: imports, prepared statements, PTB and SQLAlchemy caches
            for _ in range(300):
                poster.post()
            await wait_for_count(hub.engine, 300, timeout=30)
            async with hub.engine.connect() as conn:
                seq_before = int((await conn.execute(sa.select(users.c.seq).where(users.c.id == user["id"]))).scalar_one())
            pids = {"bench": os.getpid(), **{f"worker{i}": w.pid for i, w in enumerate(workers)}}
            with Profiler(args.profile, f"{backend}-{mode}-throughput", pids):
                throughput = await measure_throughput(poster, hub.engine, args.messages, cpu)
            listener = fake.poll_summary(throughput.started, throughput.ended)
            async with hub.engine.connect() as conn:
                rows = [
                    dict(row)
                    for row in (await conn.execute(
                        messages.select().where(messages.c.user_id == user["id"], messages.c.seq > seq_before).order_by(messages.c.seq)
                    )).mappings()
                ]
            if len(rows) != args.messages:
                raise RuntimeError(f"the store holds {len(rows)} new rows for {args.messages} messages sent")
            await asyncio.sleep(0.5)
            with Profiler(args.profile, f"{backend}-{mode}-latency", pids):
                latency = await measure_latency(poster, hub, user["id"], args.rate, args.seconds, args.detect, cpu)
            account["state"] = "stopped"
            return Outcome(throughput, latency, rows, user, account, listener)
        finally:
            for w in workers:
                w.stop()


def _fmt(n: float) -> str:
    return f"{n:,.0f}"


async def run_backend(backend: str, args: argparse.Namespace) -> list[str]:
    lines: list[str] = []
    modes = ["process", "inproc"] if args.worker == "both" else [args.worker]
    baseline: float | None = None
    for mode in modes:
        with tempfile.TemporaryDirectory(prefix="loomi-bench-") as tmp:
            outcome = await run_pipeline(backend, args, mode, Path(tmp))
        t, lat = outcome.throughput, outcome.latency
        if baseline is None:
            with tempfile.TemporaryDirectory(prefix="loomi-bench-base-") as tmp:
                baseline = await measure_baseline(backend, Path(tmp), outcome.rows, outcome.user, outcome.account)
        tag = f"{backend:<10}" + ("" if len(modes) == 1 else f" [{mode}]")
        steady = f", steady 10-90% {_fmt(t.steady)} msg/s" if t.steady else ""
        result = [
            f"{tag} e2e {_fmt(t.rate)} msg/s  baseline {_fmt(baseline)} rows/s  ratio {t.rate / baseline:.2f}",
            f"{tag}   ({t.n:,} msgs in {t.seconds:.2f} s, posting took {t.post_seconds:.2f} s{steady}; {t.cpu})",
            f"{tag}   ({outcome.listener})",
            f"{tag} latency @{args.rate:g}/s p50 {lat.p50:.1f} ms p99 {lat.p99:.1f} ms",
            f"{tag}   ({lat.seen}/{lat.sent} seen, max {lat.worst:.1f} ms, posted at {lat.achieved_rate:.0f}/s, "
            f"detect={args.detect}, worker={mode}; {lat.cpu})",
        ]
        for line in result:
            _say(line)
        lines += result
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--messages", type=int, default=20_000, help="messages for the throughput run")
    parser.add_argument("--rate", type=float, default=500, help="messages/s for the latency run")
    parser.add_argument("--seconds", type=float, default=10, help="length of the latency run")
    parser.add_argument("--worker", choices=["process", "inproc", "both"], default="process",
                        help="`loomi worker` subprocess (default) or a HubWorker on this event loop")
    parser.add_argument("--workers", type=int, default=1, help="how many `loomi worker` processes (process mode)")
    parser.add_argument("--no-indexer", dest="indexer", action="store_false",
                        help="run the worker without its background embedding indexer (the message pipeline alone)")
    parser.add_argument("--detect", choices=["pubsub", "poll"], default="pubsub", help="how visibility is noticed")
    parser.add_argument("--plain-fake", action="store_true", help="FakeTelegram as is (O(backlog) confirms, deep copies)")
    parser.add_argument("--chats", type=int, default=8)
    parser.add_argument("--chars", type=int, default=200, help="characters of text per message")
    parser.add_argument("--redis-db", type=int, default=10)
    parser.add_argument("--set", action="append", default=[], metavar="LOOMI_X=VALUE",
                        help="an extra setting for the hub and worker, e.g. LOOMI_INGEST_BATCH=200 (repeatable)")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the worker and this process per phase (collapsed stacks into DIR)")
    args = parser.parse_args(argv)
    if any("=" not in item for item in args.set):
        parser.error("--set takes LOOMI_X=VALUE")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    indexer = ("on" if args.indexer else "off") if has_indexer() else "none in this worker"
    _say(f"bench.ingest: {args.messages:,} messages, latency at {args.rate:g}/s for {args.seconds:g} s, "
         f"worker={args.worker} x{args.workers}, embedding indexer {indexer}, {os.cpu_count()} cores, "
         f"python {sys.version.split()[0]}")
    started = time.monotonic()
    summary: list[str] = []

    async def go() -> None:
        for backend in backends:
            summary.extend(await run_backend(backend, args))

    asyncio.run(go())
    _say(f"summary ({time.monotonic() - started:.0f} s):")
    for line in summary:
        if "(" not in line:
            _say("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
