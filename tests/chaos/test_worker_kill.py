"""kill -9 of the `loomi worker` that runs a Slack account's listener, its ingest and its
history backfill (held mid-way by the platform), while live messages stream in. Another
worker takes the listener over within the lease, reclaims the killed one's unacknowledged
stream entries, and picks the interrupted backfill up where its cursor stopped (within a
lease, not ARQ's job timeout): every message, history and live, stored exactly once. The
account never claims to be connected through the dead worker longer than the lease; `/healthz`
stays ok (Redis, the store and ingest are fine: a worker died, not the hub)."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

from tests.chaos.watch import Watch, all_stored, assert_exactly_once, stored_ids
from tests.e2e.harness import WorkerProcess, fresh_database, running_hub
from tests.e2e.test_slack_e2e import _env as slack_env, _install
from tests.fakes.slack import FakeSlack
from tests.waiting import eventually
from workers import keys

HISTORY = 300  # per channel: two pages of conversations.history (200 a page)


async def test_kill_9_during_backfill_and_ingest(backend: str, tmp_path: Path) -> None:
    async with FakeSlack() as fake, fresh_database(backend, tmp_path) as db:
        fake.add_user("UALICE", "alice")
        for ch in ("C1", "C2"):
            fake.add_channel(ch, ch.lower())
        sent = [(ch, fake.add_history_only(ch, "UALICE", f"old {ch} {i}")) for ch in ("C1", "C2") for i in range(HISTORY)]
        fake.stall("conversations.history", after=1)  # the first page comes, the second hangs until release()
        env = slack_env(backend, tmp_path, db, fake)
        lease_s = int(env["LOOMI_LEASE_MS"]) / 1000
        async with running_hub(env, worker=False) as hub:
            headers = await hub.login()
            first = WorkerProcess(env, tmp_path / "w1.log").start()
            processes = [first]
            try:
                await eventually(lambda: _live_workers(hub, 1), timeout=60, what="the first worker up")
                account_id = await _install(hub, fake, headers)
                first_name = f"{socket.gethostname()}:{first.pid}"

                async def holder(name: str) -> bool:
                    s = await watch.latest(account_id)
                    return bool(s) and s[0] == "connected" and s[2] == name

                async with Watch(hub, headers) as watch:
                    with watch.explained(account_id):
                        await eventually(lambda: holder(first_name), timeout=30, what="the first worker's listener connected")
                        # the backfill job runs on the first worker and is now held mid-way
                        await eventually(lambda: _count(hub, account_id, HISTORY // 2), timeout=30, what="the first history page stored")
                        await eventually(lambda: _held(fake), timeout=10, what="the second history page requested")

                        stop = asyncio.Event()

                        async def stream() -> None:
                            n = 0
                            while not stop.is_set():
                                ch = ("C1", "C2")[n % 2]
                                sent.append((ch, fake.post_message(ch, "UALICE", f"live {n}")))
                                n += 1
                                await asyncio.sleep(0.03)

                        producer = asyncio.create_task(stream())
                        second = WorkerProcess(env, tmp_path / "w2.log").start()
                        processes.append(second)
                        second_name = f"{socket.gethostname()}:{second.pid}"
                        await eventually(lambda: _live_workers(hub, 2), timeout=60, what="the second worker up")
                        await asyncio.sleep(0.5)  # live messages in flight through the first worker's ingest

                        watch.phase("killed")
                        first.kill9()
                        killed_at = time.monotonic()
                        fake.release()  # the held page answers a dead socket; later calls pass
                        await eventually(lambda: holder(second_name), timeout=lease_s + 20, what="the listener taken over")
                        took = time.monotonic() - killed_at
                        await asyncio.sleep(0.5)
                        stop.set()
                        await producer
                        await eventually(lambda: all_stored(hub, sent, account_id), timeout=40, what="history and live messages")
                        await eventually(lambda: _backfilled(hub, account_id), timeout=20, what="the history job finished")
                        watch.phase("end")
                        print(f"\nlistener taken over {took:.1f} s after kill -9 (lease {lease_s:g} s); "
                              f"{len(sent) - 2 * HISTORY} live messages, {2 * HISTORY} history")

                        assert_exactly_once(await stored_ids(hub, account_id), sent)
                        assert took < lease_s + 10, took
                        # the backfill went on from its checkpoint: C1's first page was read once,
                        # before the kill; after it, C1 was read from the saved cursor on
                        c1 = [cursor for ch, cursor in fake.history_requests if ch == "C1"]
                        assert c1.count(None) == 1 and len(c1) >= 3, c1
                        late = [s for s in watch.during("killed", after=lease_s + 2)
                                if s.states and s.states[account_id][0] == "connected" and s.states[account_id][2] == first_name]
                        assert not late, "connected through a dead worker past its lease"
                        assert all(s.health_status == 200 for s in watch.samples)
            finally:
                for process in processes:
                    process.stop()


async def _live_workers(hub, n: int) -> bool:
    return int(await hub.hub.redis.zcount(keys.WORKERS, int(time.time() * 1000), "+inf")) >= n


async def _count(hub, account_id: str, n: int) -> bool:
    return len(await stored_ids(hub, account_id)) >= n


async def _held(fake: FakeSlack) -> bool:
    return fake.faults.count("stall", "conversations.history") >= 1


async def _backfilled(hub, account_id: str) -> bool:
    return bool(await hub.hub.redis.hget(keys.status(account_id), "history_backfill_at"))
