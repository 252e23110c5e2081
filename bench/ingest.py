"""Inbound pipeline throughput and latency, each against a baseline measured in the same run.

Usage::

    .venv/bin/python -m bench.ingest [--quick] [--backend sqlite|postgresql|both] [--messages N]
                                     [--rate R] [--seconds S] [--no-latency] [--arrival burst|stream]
                                     [--worker process|inproc|both] [--workers K[,K...]]
                                     [--no-indexer] [--detect pubsub|poll] [--redis paired|shared]
                                     [--plain-fake] [--set LOOMI_X=VALUE] [--profile DIR]

Per database kind, each phase on a fresh database (tests/e2e/harness.fresh_database) and a
dedicated Redis db (`--redis-db`, default 10, flushed after). The Redis is the one each kind of
deployment runs (`--redis paired`): SQLite with the embedded Redis 6.2 `loomi serve` starts,
PostgreSQL with the Redis server at LOOMI_TEST_REDIS_URL (`python -m bench` starts a throwaway
one). FakeTelegram runs in this process, with a hub API (used only to connect the bot through
POST /api/telegram/listener/init and to read the store) and a worker: by default one separate
`loomi worker` process (tests/e2e/harness.WorkerProcess; `--workers 1,2,3` runs the burst with
each count in turn, `--worker inproc` a HubWorker on this event loop). The worker's real listener
(python-telegram-bot long polling, at most 100 updates per getUpdates as on Telegram) -> Redis
stream -> ingest -> store. Each pipeline is warmed up with 300 messages, and the clock starts
only once the worker has done the background work they cause (the embedding indexer has
embedded them, its model loaded; the insights loop has made their chats' insights).

1. **e2e msg/s, whole run** (the headline): N messages (20,000; 5,000 with --quick) are waiting
   at the fake when the clock starts (`--arrival stream`: posted while it runs, which makes the
   poster compete with the fake in this process); the clock stops when
   `SELECT count(*) FROM messages` (every 50 ms) shows all N. Also printed: the 10%->90% slope,
   where the whole run loses against it (start-up, tail), and from the fake's side each
   getUpdates cycle: time inside the fake vs. outside it (transfer, the worker's handling).
2. **baseline rows/s**: right after, the same N rows, read back from the e2e store, inserted
   into the messages table of a second fresh database migrated to the same schema (indexes,
   FTS trigger / GIN index included) with plain SQLAlchemy Core `INSERT` executemany, 500 rows
   per transaction, through store.db.create_engine (the hub's drivers and settings).
   `ratio = e2e / baseline`. Aim: >= 0.5. Each burst and its baseline are repeated on fresh
   pipelines (`--repeat`, 3; 1 with --quick) and the pair with the median ratio is reported: on
   a shared machine the load of others moves between a burst and its baseline.
3. **latency** (first worker count only; `--no-latency` skips it), on another fresh pipeline so
   it does not inherit the burst's embedding backlog: messages posted into the fake at `--rate`
   per second for `--seconds` (10; 4 with --quick), the post time recorded per (chat, message
   id). Visibility: this process subscribes to the Redis pub/sub channel `loomi:changes`
   (ingest PUBLISHes the user id after each commit) and on each notice reads the rows with
   `seq` above the last seen one, so a message counts as visible only once it has been read
   back from the database (the read's own time included). `--detect poll` reads every 5 ms.
   p50 / p99 in ms. Aim: p99 <= 100 ms at 500 msg/s. Baseline, in the same pipeline right
   after: the same rate of rows written straight by this process (whatever is waiting in one
   transaction, then PUBLISH), seen by the same reader: the database's and the reader's part.

Each phase prints CPU use: this process (bench + fake), the worker(s) and worker CPU per
message, all postgres and redis-server processes, and the machine (with "others": load that is
none of these; the machine is shared, so compare runs with little of it). The fake is "lean"
unless `--plain-fake`: same protocol, minus two costs that a real platform does not put on our
cores (see TimedFake). `--profile DIR` records py-spy collapsed stacks of the worker and of this
process per phase (py-spy must be installed in the venv; `BENCH_PYSPY_ARGS=--gil` adds flags).
One BENCH line per figure (bench/common.py) for `python -m bench`.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import psutil
import sqlalchemy as sa
from redis.asyncio import Redis

from store.db import create_engine, migrate
from store.schema import accounts, message_embeddings, messages, users
from bench.common import emit, percentile
from tests.conftest import REDIS_URL, embedded_redis
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
        return (f"listener: first updates handed out {1000 * (busy[0][1] - since):.0f} ms after the clock started, "
                f"{len(busy)} getUpdates with updates, {per:.0f} updates each, "
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
    phases: str = ""

    @property
    def rate(self) -> float:
        return self.n / self.seconds


def phases(t0: float, trace: list[tuple[float, int]], base: int, n: int) -> tuple[float | None, str]:
    """The whole run cut where the store held its first row, 10% and 90% of N: the 10->90%
    slope (sustained rate) and where the whole run loses against it (start-up, tail)."""
    def first(fraction: float) -> tuple[float, int]:
        return next((t, c) for t, c in trace if c - base >= max(1, fraction * n))

    (t_first, _), (t_lo, c_lo), (t_hi, c_hi), (t_end, _) = first(0), first(0.1), first(0.9), trace[-1]
    steady = (c_hi - c_lo) / (t_hi - t_lo) if t_hi > t_lo else None
    text = (f"phases: first row stored after {1000 * (t_first - t0):.0f} ms, 0->10% {t_lo - t0:.2f} s, "
            f"10->90% {t_hi - t_lo:.2f} s, 90->100% {t_end - t_hi:.2f} s")
    if steady:
        # what the whole run would have taken at the sustained rate throughout, and what each end added
        ideal = n / steady
        text += (f"; at the 10->90% rate all of it would take {ideal:.2f} s: start-up adds "
                 f"{(t_lo - t0) - 0.1 * n / steady:+.2f} s, tail {(t_end - t_hi) - 0.1 * n / steady:+.2f} s "
                 f"(COUNT(*) polled every 50 ms)")
    return steady, text


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


async def measure_throughput(poster: Poster, engine: Any, n: int, cpu: CpuMeter, arrival: str = "burst") -> Throughput:
    """`burst`: all N messages are waiting at the platform when the clock starts (posted before,
    without yielding, so the listener cannot take any early). `stream`: posted while the clock
    runs, yielding to the fake every 500; the poster then shares this process's event loop with
    the fake serving getUpdates, which delays the first answers by hundreds of ms on a busy
    machine: a cost of the bench, not of the pipeline."""
    base = await count_rows(engine)
    poster.prepare(n)
    posting_started = time.monotonic()
    if arrival == "burst":
        for _ in range(n):
            poster.post()
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

    posting = asyncio.create_task(post_all()) if arrival == "stream" else None
    done_at, trace = await wait_for_count(engine, base + n, timeout=max(60, n / 200))
    if posting is not None:
        await posting
    usage = cpu.stop(n)
    steady, breakdown = phases(t0, trace, base, n)
    post_seconds = posted_at - t0 if arrival == "stream" else t0 - posting_started
    return Throughput(n, done_at - t0, post_seconds, steady, usage, t0, done_at, breakdown)


@dataclass
class Latency:
    sent: int
    seen: int
    p50: float
    p99: float
    worst: float
    achieved_rate: float
    cpu: str


async def measure_latency(
    send: Callable[[], tuple[str, str]], hub: Any, user_id: str, rate: float, seconds: float, detect: str, cpu: CpuMeter,
    prepare: Callable[[int], None] | None = None,
) -> Latency:
    """`send()` puts one message on its way and returns its (chat id, native id); the time until
    this process has read that row back from the database is its latency."""
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
    if prepare is not None:
        prepare(total)
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
        posted[send()] = now
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


class DirectWriter:
    """The latency baseline: the same kind of rows written straight into the store by this
    process, as a pipeline with nothing but the database in it would: each waits in a queue,
    whatever is waiting goes in one transaction, then the commit is PUBLISHed on the changes
    channel as ingest does. No platform, listener or stream. What is left of the pipeline's
    latency above this is ours to cut; this part is the database's and the reader's."""

    def __init__(self, hub: Any, template: dict[str, Any], seq: int) -> None:
        self.hub, self.template, self.seq = hub, template, seq
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.count = 0
        self.task: asyncio.Task[None] | None = None

    def send(self) -> tuple[str, str]:
        self.count += 1
        self.seq += 1
        row = {**self.template, "id": f"floor{self.count:08d}", "native_id": f"floor-{self.count}", "seq": self.seq}
        self.queue.put_nowait(row)
        return str(row["chat_id"]), row["native_id"]

    async def _run(self) -> None:
        while True:
            rows = [await self.queue.get()]
            while not self.queue.empty():
                rows.append(self.queue.get_nowait())
            async with self.hub.engine.begin() as conn:
                await conn.execute(messages.insert(), rows)
            await self.hub.redis.publish(keys.CHANGES_CHANNEL, self.template["user_id"])

    async def __aenter__(self) -> "DirectWriter":
        self.task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


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
    throughput: Throughput | None
    latency: Latency | None
    floor: Latency | None
    rows: list[dict[str, Any]]
    user: dict[str, Any]
    account: dict[str, Any]
    listener: str
    warm: str


async def wait_connected(hub: Any, account_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = await hub.redis.hget(keys.status(account_id), "state")
        if state == b"connected":
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the Telegram listener did not connect (state {state!r})")


def redis_url(backend: str, args: argparse.Namespace) -> str:
    """The Redis each kind of deployment runs: `loomi serve` on SQLite starts the embedded Redis
    6.2 (unix socket, append-only file, fsync every second); a PostgreSQL deployment has a Redis
    server (LOOMI_TEST_REDIS_URL). `--redis shared` puts both on the latter."""
    if backend == "sqlite" and args.redis == "paired":
        return f"{embedded_redis().url}?db={args.redis_db}"
    return f"{REDIS_URL}/{args.redis_db}"


async def run_pipeline(backend: str, args: argparse.Namespace, mode: str, workers: int, phase: str, tmp: Path) -> Outcome:
    url = redis_url(backend, args)
    try:
        return await _run_pipeline(backend, args, mode, workers, phase, tmp, url)
    finally:
        # after every worker has stopped (an in-process one stops when running_hub exits)
        cleanup = Redis.from_url(url)
        try:
            await cleanup.flushdb()
        finally:
            await cleanup.aclose()


async def _run_pipeline(
    backend: str, args: argparse.Namespace, mode: str, workers: int, phase: str, tmp: Path, url: str
) -> Outcome:
    async with TimedFake(lean=not args.plain_fake) as fake, fresh_database(backend, tmp) as db:
        fake.add_bot(TOKEN, BOT_ID, "bench_bot")
        poster = Poster(fake, args.chats, args.chars)
        env = e2e_env(
            backend, tmp, db, redis_url=url,
            LOOMI_TELEGRAM_BASE_URL=fake.base_url,
            # production values for everything on the hot path; only the scan is quicker
            LOOMI_LEASE_MS="10000", LOOMI_HEARTBEAT_SECONDS="3", LOOMI_INGEST_CLAIM_IDLE_MS="30000",
            **dict(item.split("=", 1) for item in args.set),
        )
        with inproc_indexer(args.indexer):
            return await _measure(backend, args, mode, workers, phase, tmp, fake, poster, env)


def indexer_runs(args: argparse.Namespace) -> bool:
    """Whether the worker embeds messages in the background (its indexer is there, on, and has
    a model to load)."""
    if not (args.indexer and has_indexer()):
        return False
    from ai.local.embeddings import ModelNotInstalledError, find_model_dir

    try:
        find_model_dir()
    except ModelNotInstalledError:
        return False
    return True


async def wait_settled(hub: Any, user_id: str, indexer: bool, timeout: float) -> str:
    """Until the background work the warm-up caused is done: the embedding indexer has embedded
    every warm-up message (its model loaded) and the insights loop has folded them in (one
    insight per chat, 5 s after a chat's last message), as on a hub that has been running a
    while. Otherwise a second or more of model loading and embedding and the warm-up chats'
    insights land inside the measured run, on the same cores."""
    from ai.insights.worker import CURSOR

    started = time.monotonic()
    query = sa.select(
        sa.select(users.c.seq).where(users.c.id == user_id).scalar_subquery(),
        sa.select(sa.func.count()).select_from(messages).where(messages.c.user_id == user_id, messages.c.text != "").scalar_subquery(),
        sa.select(sa.func.count()).select_from(message_embeddings).where(message_embeddings.c.user_id == user_id).scalar_subquery(),
    )
    embedded_at = None if indexer else 0.0
    while True:
        async with hub.engine.connect() as conn:
            seq, stored, embedded = (await conn.execute(query)).one()
        folded = int(await hub.redis.hget(CURSOR, user_id) or 0)
        waited = time.monotonic() - started
        if embedded_at is None and embedded >= stored:
            embedded_at = waited
        if embedded_at is not None and folded >= seq:
            what = f"warm-up embedded after {embedded_at:.1f} s, " if indexer else ""
            return f"{what}its insights made after {waited:.1f} s"
        if waited > timeout:
            return (f"not settled after {timeout:.0f} s: {stored - embedded if indexer else 0} messages to embed, "
                    f"insights at seq {folded} of {seq}")
        await asyncio.sleep(0.2)


async def wait_idle(pids: list[int], timeout: float, below: float = 0.1) -> str:
    """Until the worker processes use under `below` of a core over half a second: nothing else
    they started on their own (a vector index build, a retry) still runs when the clock starts."""
    if not pids:
        return "in-process worker"
    procs = [psutil.Process(pid) for pid in pids]

    def used() -> float:
        return sum(sum(p.cpu_times()[:2]) for p in procs)

    started = time.monotonic()
    while True:
        before, t = used(), time.monotonic()
        await asyncio.sleep(0.5)
        share = (used() - before) / (time.monotonic() - t)
        waited = time.monotonic() - started
        if share < below:
            return f"worker cpu {100 * share:.0f}% when the clock started ({waited:.1f} s of waiting for it)"
        if waited > timeout:
            return f"worker still busy ({100 * share:.0f}% cpu) after {timeout:.0f} s; clock started anyway"


async def _measure(
    backend: str, args: argparse.Namespace, mode: str, workers_wanted: int, phase: str, tmp: Path,
    fake: TimedFake, poster: Poster, env: dict[str, str],
) -> Outcome:
    """One pipeline on a fresh database: set up, warm up, then one phase: `throughput` (a burst
    of N) or `latency` (a steady rate, then the same rate written straight: the floor)."""
    async with running_hub(env, worker=(mode == "inproc")) as running:
        hub = running.hub
        count = workers_wanted if mode == "process" else 0
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
            # warm-up: imports, prepared statements, PTB and SQLAlchemy caches, the embedding model,
            # then the background work it causes (embeddings, insights): the clock starts at rest
            for _ in range(300):
                poster.post()
            await wait_for_count(hub.engine, 300, timeout=30)
            warm = await wait_settled(hub, user["id"], indexer_runs(args), timeout=90)
            warm += "; " + await wait_idle([w.pid for w in workers], timeout=20)
            async with hub.engine.connect() as conn:
                seq_before = int((await conn.execute(sa.select(users.c.seq).where(users.c.id == user["id"]))).scalar_one())
            pids = {"bench": os.getpid(), **{f"worker{i}": w.pid for i, w in enumerate(workers)}}
            account["state"] = "stopped"
            outcome = Outcome(None, None, None, [], user, account, "", warm)
            if phase == "latency":
                await asyncio.sleep(0.5)
                with Profiler(args.profile, f"{backend}-{mode}-x{count}-latency", pids):
                    outcome.latency = await measure_latency(poster.post, hub, user["id"], args.rate, args.seconds,
                                                            args.detect, cpu, prepare=poster.prepare)
                await asyncio.sleep(0.5)
                async with hub.engine.connect() as conn:
                    seq = int((await conn.execute(sa.select(users.c.seq).where(users.c.id == user["id"]))).scalar_one())
                    template = dict((await conn.execute(
                        messages.select().where(messages.c.user_id == user["id"]).order_by(messages.c.seq.desc()).limit(1)
                    )).mappings().one())
                async with DirectWriter(hub, template, seq) as writer:
                    outcome.floor = await measure_latency(writer.send, hub, user["id"], args.rate, args.seconds, args.detect, cpu)
                return outcome
            with Profiler(args.profile, f"{backend}-{mode}-x{count}-throughput", pids):
                outcome.throughput = await measure_throughput(poster, hub.engine, args.messages, cpu, args.arrival)
            outcome.listener = fake.poll_summary(outcome.throughput.started, outcome.throughput.ended)
            async with hub.engine.connect() as conn:
                outcome.rows = [
                    dict(row)
                    for row in (await conn.execute(
                        messages.select().where(messages.c.user_id == user["id"], messages.c.seq > seq_before).order_by(messages.c.seq)
                    )).mappings()
                ]
            if len(outcome.rows) != args.messages:
                raise RuntimeError(f"the store holds {len(outcome.rows)} new rows for {args.messages} messages sent")
            return outcome
        finally:
            for w in workers:
                w.stop()


def _fmt(n: float) -> str:
    return f"{n:,.0f}"


BASELINE_LABEL = "plain batched INSERT, 500 rows/transaction, same rows and schema, fresh database"
FLOOR_LABEL = "the same rows written straight by the bench: batched commit + PUBLISH, no platform/listener/stream"


async def run_backend(backend: str, args: argparse.Namespace) -> list[str]:
    """Per worker mode and worker count: a burst through the pipeline, then the raw insert of the
    rows it stored (the baseline, right after it); for the first count, latency on a second
    fresh pipeline (so it does not inherit the burst's embedding backlog) and its floor."""
    lines: list[str] = []
    modes = ["process", "inproc"] if args.worker == "both" else [args.worker]
    scaling = len(args.workers) > 1
    for mode in modes:
        counts = args.workers if mode == "process" else [1]
        first: float | None = None
        for i, k in enumerate(counts):
            pairs: list[tuple[Outcome, float]] = []
            for r in range(args.repeat):
                with tempfile.TemporaryDirectory(prefix="loomi-bench-") as tmp:
                    burst = await run_pipeline(backend, args, mode, k, "throughput", Path(tmp))
                with tempfile.TemporaryDirectory(prefix="loomi-bench-base-") as tmp:
                    baseline = await measure_baseline(backend, Path(tmp), burst.rows, burst.user, burst.account)
                pairs.append((burst, baseline))
                if args.repeat > 1:
                    assert burst.throughput is not None
                    rate = burst.throughput.rate
                    others = re.search(r"others \d+%", burst.throughput.cpu)
                    _say(f"{backend:<10} x{k} burst {r + 1}/{args.repeat}: e2e {_fmt(rate)} msg/s  baseline {_fmt(baseline)} "
                         f"rows/s  ratio {rate / baseline:.2f}  ({others.group(0) if others else ''})")
            # the pair with the median ratio (each ratio from a burst and the baseline right after it)
            pairs.sort(key=lambda pair: pair[0].throughput.rate / pair[1] if pair[0].throughput else 0.0)
            burst, baseline = pairs[len(pairs) // 2]
            steady = None
            if args.latency and i == 0:
                with tempfile.TemporaryDirectory(prefix="loomi-bench-") as tmp:
                    steady = await run_pipeline(backend, args, mode, k, "latency", Path(tmp))
            result = report(backend, args, mode, k, burst, steady, baseline, first, tagged=len(modes) > 1, scaling=scaling)
            assert burst.throughput is not None
            first = first or burst.throughput.rate
            for line in result:
                _say(line)
            lines += result
    return lines


def report(
    backend: str, args: argparse.Namespace, mode: str, k: int, burst: Outcome, steady: Outcome | None,
    baseline: float, first: float | None, *, tagged: bool, scaling: bool,
) -> list[str]:
    """The human lines of one worker count, and its BENCH lines (printed here)."""
    t = burst.throughput
    assert t is not None
    label = f"{k} worker{'s' if k > 1 else ''}" if mode == "process" else "in-process worker"
    tag = f"{backend:<10}" + (f" [{mode}]" if tagged else "") + (f" x{k}" if scaling else "")
    ratio = t.rate / baseline
    versus = f"  ({t.rate / first:.2f}x the first count)" if first else ""
    slope = f", steady 10-90% {_fmt(t.steady)} msg/s = ratio {t.steady / baseline:.2f}" if t.steady else ""
    result = [
        f"{tag} e2e {_fmt(t.rate)} msg/s  baseline {_fmt(baseline)} rows/s  ratio {ratio:.2f}{versus}",
        f"{tag}   ({t.n:,} msgs in {t.seconds:.2f} s, "
        + (f"posted in {t.post_seconds:.2f} s before the clock" if args.arrival == "burst" else f"posting took {t.post_seconds:.2f} s")
        + f"{slope}; {t.cpu})",
        f"{tag}   ({t.phases}; {burst.warm})",
        f"{tag}   ({burst.listener})",
    ]
    figure = f"{backend} e2e msg/s, whole run" + (f", {label}" if scaling or mode != "process" or k != 1 else "")
    emit("ingest", figure, t.rate, "msg/s", baseline=baseline, baseline_label=BASELINE_LABEL,
         aim="ratio >= 0.5", ok=ratio >= 0.5)
    if steady is not None and steady.latency is not None and steady.floor is not None:
        lat, floor = steady.latency, steady.floor
        result += [
            f"{tag} latency @{args.rate:g}/s p50 {lat.p50:.1f} ms p99 {lat.p99:.1f} ms"
            f"  written straight p50 {floor.p50:.1f} ms p99 {floor.p99:.1f} ms",
            f"{tag}   ({lat.seen}/{lat.sent} seen, max {lat.worst:.1f} ms, posted at {lat.achieved_rate:.0f}/s, "
            f"detect={args.detect}, worker={mode}; {steady.warm}; {lat.cpu})",
            f"{tag}   (written straight: {floor.seen}/{floor.sent} seen, max {floor.worst:.1f} ms; {floor.cpu})",
        ]
        where = f"{backend} event-to-visible @{args.rate:g} msg/s"
        emit("ingest", f"{where}, p50", lat.p50, "ms", baseline=floor.p50, baseline_label=FLOOR_LABEL)
        emit("ingest", f"{where}, p99", lat.p99, "ms", baseline=floor.p99, baseline_label=FLOOR_LABEL,
             aim="p99 <= 100 ms", ok=lat.p99 <= 100)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--quick", action="store_true", help="5,000 messages and 4 s of latency (defaults 20,000 and 10 s)")
    parser.add_argument("--messages", type=int, help="messages for the throughput run (default 20,000)")
    parser.add_argument("--rate", type=float, default=500, help="messages/s for the latency run")
    parser.add_argument("--seconds", type=float, help="length of the latency run (default 10)")
    parser.add_argument("--no-latency", dest="latency", action="store_false", help="throughput only")
    parser.add_argument("--repeat", type=int, help="bursts per worker count, each on a fresh pipeline with its own "
                        "baseline; the one with the median ratio is reported (default 3; 1 with --quick)")
    parser.add_argument("--arrival", choices=["burst", "stream"], default="burst",
                        help="burst: the N messages wait at the platform when the clock starts; stream: posted while it runs")
    parser.add_argument("--worker", choices=["process", "inproc", "both"], default="process",
                        help="`loomi worker` subprocess (default) or a HubWorker on this event loop")
    parser.add_argument("--workers", default="1", metavar="K[,K...]",
                        help="how many `loomi worker` processes (process mode); a list runs each count in turn")
    parser.add_argument("--no-indexer", dest="indexer", action="store_false",
                        help="run the worker without its background embedding indexer (the message pipeline alone)")
    parser.add_argument("--detect", choices=["pubsub", "poll"], default="pubsub", help="how visibility is noticed")
    parser.add_argument("--plain-fake", action="store_true", help="FakeTelegram as is (O(backlog) confirms, deep copies)")
    parser.add_argument("--chats", type=int, default=8)
    parser.add_argument("--chars", type=int, default=200, help="characters of text per message")
    parser.add_argument("--redis", choices=["paired", "shared"], default="paired",
                        help="paired: SQLite with the embedded Redis, PostgreSQL with LOOMI_TEST_REDIS_URL; "
                             "shared: both with LOOMI_TEST_REDIS_URL")
    parser.add_argument("--redis-db", type=int, default=10)
    parser.add_argument("--set", action="append", default=[], metavar="LOOMI_X=VALUE",
                        help="an extra setting for the hub and worker, e.g. LOOMI_INGEST_BATCH=200 (repeatable)")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the worker and this process per phase (collapsed stacks into DIR)")
    args = parser.parse_args(argv)
    if any("=" not in item for item in args.set):
        parser.error("--set takes LOOMI_X=VALUE")
    try:
        args.workers = [int(k) for k in args.workers.split(",")]
    except ValueError:
        parser.error("--workers takes a count or a list of counts, e.g. 1,2,3")
    if any(k < 1 for k in args.workers):
        parser.error("--workers: at least 1")
    args.messages = args.messages or (5_000 if args.quick else 20_000)
    args.seconds = args.seconds or (4 if args.quick else 10)
    args.repeat = max(1, args.repeat or (1 if args.quick else 3))
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    indexer = ("on" if args.indexer else "off") if has_indexer() else "none in this worker"
    redis = {b: ("embedded" if b == "sqlite" and args.redis == "paired" else REDIS_URL) for b in backends}
    _say(f"bench.ingest: {args.messages:,} messages"
         + (f", latency at {args.rate:g}/s for {args.seconds:g} s" if args.latency else "")
         + f", worker={args.worker} x{','.join(map(str, args.workers))}, embedding indexer {indexer}, "
         f"Redis {', '.join(f'{b}: {u}' for b, u in redis.items())}, {os.cpu_count()} cores, python {sys.version.split()[0]}")
    started = time.monotonic()
    summary: list[str] = []

    async def go() -> None:
        for backend in backends:
            summary.extend(await run_backend(backend, args))

    asyncio.run(go())
    _say(f"summary ({time.monotonic() - started:.0f} s):")
    for line in summary:
        if "   (" not in line:  # the headline lines, not the details under them
            _say("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
