"""Listeners per worker process: how many accounts one `loomi worker` holds, and its memory.

Usage::

    .venv/bin/python -m bench.listeners [--quick] [--accounts N] [--messages M]
                                        [--backend sqlite|postgresql] [--no-indexer]

FakeTelegram (tests/fakes/telegram.py, in this process) serves N bots (default 1,000). One
`loomi worker` process (tests/e2e/harness.WorkerProcess) starts with no account, and once it
has settled its memory is the **baseline**: the same process holding 0 listeners. Then N
Telegram bot accounts are inserted through the store (credentials sealed by the vault, as
connecting does) and the supervisor is told accounts changed; the worker takes them at its
ramp (25 listeners per scan, `LOOMI_SCAN_SECONDS=0.5`), each a python-telegram-bot long poll
(`getUpdates`, 30 s) held open against the fake. Measured:

- time until every account's status says `connected`;
- the worker's RSS (and USS) holding all of them, settled; `MB per listener` =
  (RSS - baseline) / N. Aim: N = 1,000 under 1 GB;
- its CPU while idle, over one long-poll period (30 s), against its idle CPU holding none; and
  this process's (bench + fake: the fake must not be what limits the worker);
- one message posted to each of M (default 100) random bots, 50 ms apart: every one stored,
  latency from the post to the row's ingest time (`messages.created_at`), p50 / p99.

`--quick`: 200 accounts, 50 messages.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import sqlalchemy as sa
from redis.asyncio import Redis

from bench.backfill import redis_url
from bench.common import emit, percentile
from bench.ingest import BenchWorker, CpuMeter
from connectors.base import AccountSpec
from store import accounts as account_store
from store.schema import messages
from tests.e2e.harness import e2e_env, fresh_database, running_hub
from tests.fakes.telegram import FakeTelegram
from workers import keys
from workers.supervisor import accounts_changed

POLL_SECONDS = 30  # the connector's getUpdates long-poll timeout
ALICE = {"id": 5150, "first_name": "Alice", "username": "alice_b"}


def _say(line: str) -> None:
    print(line, flush=True)


def token(i: int) -> str:
    return f"{7_000_000 + i}:AAListenerBenchTokenForTheLoopbackFake{i:05d}"


async def cpu_use(pid: int, seconds: float) -> float:
    """% of one core a process used over the next `seconds`."""
    proc = psutil.Process(pid)
    before, started = sum(proc.cpu_times()[:2]), time.monotonic()
    await asyncio.sleep(seconds)
    return 100 * (sum(proc.cpu_times()[:2]) - before) / (time.monotonic() - started)


def memory(pid: int) -> tuple[float, float]:
    """RSS and USS of a process, in MB."""
    info = psutil.Process(pid).memory_full_info()
    return info.rss / 1e6, info.uss / 1e6


async def settled_memory(pid: int, *, at_least: float, most: float = 60.0) -> tuple[float, float]:
    """Memory once it stopped moving: RSS within 1 MB over 3 one-second samples."""
    started = time.monotonic()
    await asyncio.sleep(at_least)
    samples = [memory(pid)]
    while time.monotonic() - started < most:
        await asyncio.sleep(1)
        samples.append(memory(pid))
        recent = [rss for rss, _ in samples[-3:]]
        if len(recent) == 3 and max(recent) - min(recent) < 1.0:
            break
    return samples[-1]


async def states(redis: Redis, account_ids: list[str]) -> list[bytes | None]:
    async with redis.pipeline(transaction=False) as pipe:
        for account_id in account_ids:
            pipe.hget(keys.status(account_id), "state")
        return await pipe.execute()


async def insert_accounts(hub: Any, user_id: str, n: int) -> list[str]:
    """n bot accounts, as `POST /api/telegram/listener/init` would store them (minus the getMe)."""
    ids = []
    async with hub.engine.begin() as conn:
        for i in range(n):
            spec = AccountSpec(
                external_id=str(7_000_000 + i), name=f"@bench_bot_{i}",
                credentials={"bot_token": token(i), "webhook_secret": f"secret{i:05d}" + "x" * 20, "bot_id": 7_000_000 + i},
                settings={"mode": "polling"},
            )
            ids.append((await account_store.upsert_account(conn, hub.vault, user_id, "telegram", spec))["id"])
    await accounts_changed(hub)
    return ids


async def run(args: argparse.Namespace) -> list[str]:
    with tempfile.TemporaryDirectory(prefix="loomi-bench-listeners-") as tmp_name:
        tmp = Path(tmp_name)
        url = redis_url(args.backend, args.redis_db)
        try:
            return await _run(args, tmp, url)
        finally:
            cleanup = Redis.from_url(url)
            try:
                await cleanup.flushdb()
            finally:
                await cleanup.aclose()


async def _run(args: argparse.Namespace, tmp: Path, url: str) -> list[str]:
    n = args.accounts
    async with FakeTelegram() as fake, fresh_database(args.backend, tmp) as db:
        for i in range(n):
            fake.add_bot(token(i), 7_000_000 + i, f"bench_bot_{i}")
        env = e2e_env(
            args.backend, tmp, db, redis_url=url, LOOMI_TELEGRAM_BASE_URL=fake.base_url,
            LOOMI_LEASE_MS="10000", LOOMI_HEARTBEAT_SECONDS="3", LOOMI_SCAN_SECONDS="0.5",
            LOOMI_INGEST_CLAIM_IDLE_MS="30000",
        )
        async with running_hub(env, worker=False) as running:
            hub = running.hub
            me = (await running.client.get("/api/remote-auth/user", headers=await running.login())).json()
            worker = BenchWorker(env, tmp / "worker.log", indexer=args.indexer).start()
            try:
                base_rss, base_uss = await settled_memory(worker.pid, at_least=8)
                base_cpu = await cpu_use(worker.pid, 10)
                _say(f"worker {worker.pid} holding 0 listeners: RSS {base_rss:.1f} MB, USS {base_uss:.1f} MB, "
                     f"idle CPU {base_cpu:.1f}% of a core")

                started = time.monotonic()
                account_ids = await insert_accounts(hub, me["id"], n)
                inserted = time.monotonic() - started
                deadline = started + max(120, n * 0.5)
                connected = 0
                while connected < n:
                    if time.monotonic() > deadline or worker.proc.poll() is not None:
                        raise TimeoutError(f"{connected} of {n} connected after {time.monotonic() - started:.0f} s; see {tmp}/worker.log")
                    await asyncio.sleep(0.25)
                    connected = sum(state == b"connected" for state in await states(hub.redis, account_ids))
                connect_all = time.monotonic() - started
                _say(f"{n} accounts inserted in {inserted:.1f} s, all connected {connect_all:.1f} s after the insert began")

                rss, uss = await settled_memory(worker.pid, at_least=3)
                per = (rss - base_rss) / n
                fds = psutil.Process(worker.pid).num_fds()
                _say(f"worker holding {n} listeners: RSS {rss:.1f} MB, USS {uss:.1f} MB; "
                     f"{per * 1000:.0f} KB RSS / {(uss - base_uss) / n * 1000:.0f} KB USS per listener; "
                     f"{fds} open files and sockets" + (" (more than the common soft limit of 1,024)" if fds > 1024 else ""))

                cpu = CpuMeter([worker.pid])
                cpu.start()
                polls_before = fake.calls["getUpdates"]
                idle_cpu = await cpu_use(worker.pid, POLL_SECONDS)
                usage = cpu.stop(1)
                polls = fake.calls["getUpdates"] - polls_before
                lost = n - sum(state == b"connected" for state in await states(hub.redis, account_ids))
                _say(f"idle {POLL_SECONDS} s: worker {idle_cpu:.1f}% of a core, {polls} getUpdates ({polls / POLL_SECONDS:.0f}/s); "
                     f"{usage.split(' = ')[0].split(', worker')[0]}, {usage.split('msg, ')[-1]}; {lost} listeners not connected")

                latencies = await send_and_measure(fake, hub, account_ids, args.messages)
                after_rss, after_uss = memory(worker.pid)
                _say(f"{len(latencies)}/{args.messages} messages stored: latency p50 {percentile(latencies, 0.5):.0f} ms, "
                     f"p99 {percentile(latencies, 0.99):.0f} ms, max {max(latencies):.0f} ms; "
                     f"RSS after them {after_rss:.1f} MB")
                still = sum(state == b"connected" for state in await states(hub.redis, account_ids))
            finally:
                worker.stop()
    lines = [
        f"accounts held by one worker: {still} of {n}, connected in {connect_all:.1f} s",
        f"RSS {rss:.1f} MB holding {n} (baseline {base_rss:.1f} MB holding 0): {per * 1000:.0f} KB per listener",
        f"message latency over {args.messages} random accounts: p50 {percentile(latencies, 0.5):.0f} ms, p99 {percentile(latencies, 0.99):.0f} ms",
    ]
    budget = (1024 - base_rss) / 1000  # MB a listener may cost for 1,000 to fit in 1 GB
    emit("listeners", "accounts one worker holds", still, "accounts", baseline=n, baseline_label="bot accounts on the fake",
         aim="all of them, 1,000 by default", ok=still == n and len(latencies) == args.messages)
    emit("listeners", f"worker RSS holding {n} listeners", round(rss, 1), "MB", baseline=round(base_rss, 1),
         baseline_label="the same worker holding 0", aim="< 1024 MB with 1,000", ok=rss < 1024 if n >= 1000 else None)
    emit("listeners", "RSS per listener", round(per * 1000, 1), "KB", baseline=round(budget * 1000, 1),
         baseline_label="(1024 MB - RSS holding 0) / 1,000", aim="ratio <= 1 (1,000 fit in 1 GB)", ok=per <= budget)
    emit("listeners", f"idle CPU holding {n} listeners", round(idle_cpu, 1), "% of a core", baseline=round(base_cpu, 1),
         baseline_label="the same worker holding 0", ratio=None, aim="< 25% of a core", ok=idle_cpu < 25)
    emit("listeners", f"time to connect {n} listeners", round(connect_all, 1), "s", baseline=round(n / 25 * 0.5, 1),
         baseline_label="the supervisor's ramp: 25 per 0.5 s scan", aim="ratio <= 2")
    emit("listeners", "message latency p99 (one worker holding all)", round(percentile(latencies, 0.99), 1), "ms",
         aim="<= 1000 ms", ok=percentile(latencies, 0.99) <= 1000)
    return lines


async def send_and_measure(fake: FakeTelegram, hub: Any, account_ids: list[str], count: int) -> list[float]:
    """One message to each of `count` random bots, 50 ms apart; ms from post to ingest."""
    rng = random.Random(5)
    chosen = rng.sample(range(len(account_ids)), count)
    posted: dict[tuple[str, str], float] = {}
    for i in chosen:
        message_id = fake.post_message(token(i), ALICE["id"], ALICE, f"hello bot {i}")
        posted[(account_ids[i], str(message_id))] = time.time() * 1000
        await asyncio.sleep(0.05)
    deadline = time.monotonic() + 60
    wanted = sa.select(messages.c.account_id, messages.c.native_id, messages.c.created_at).where(
        messages.c.account_id.in_([a for a, _ in posted]))
    while True:
        async with hub.engine.connect() as conn:
            rows = (await conn.execute(wanted)).all()
        stored = {(a, native.split(":")[-1]): created for a, native, created in rows}
        if all(key in stored for key in posted) or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    latencies = [stored[key] - at for key, at in posted.items() if key in stored]
    slowest = sorted(range(len(latencies)), key=lambda k: -latencies[k])[:5]
    _say("slowest: " + ", ".join(f"#{k} {latencies[k]:.0f} ms" for k in slowest) + " (# = order sent)")
    return latencies


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.listeners", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 accounts, 50 messages")
    parser.add_argument("--accounts", type=int, default=None, help="bots one worker holds (default 1,000)")
    parser.add_argument("--messages", type=int, default=None, help="messages to random bots (default 100)")
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--no-indexer", dest="indexer", action="store_false",
                        help="the worker without its embedding indexer (its model is a large part of the baseline)")
    parser.add_argument("--redis-db", type=int, default=8, help="of the embedded Redis (SQLite) or LOOMI_TEST_REDIS_URL")
    args = parser.parse_args(argv)
    args.accounts = args.accounts or (200 if args.quick else 1000)
    args.messages = min(args.messages or (50 if args.quick else 100), args.accounts)
    _say(f"bench.listeners: {args.accounts:,} Telegram bots on one worker, {args.backend}, "
         f"{os.cpu_count()} cores, python {sys.version.split()[0]}")
    started = time.monotonic()
    lines = asyncio.run(run(args))
    _say(f"summary ({time.monotonic() - started:.0f} s):")
    for line in lines:
        _say("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
