"""Workers join and leave while messages stream in (a rolling deploy): listeners are handed
over and taken up, each held by one worker at a time, every message stored exactly once, and
no account says "connected" through a worker that has let it go or has left.

The workers are `HubWorker`s in the test's process (what `loomi worker` runs; joining is
`start`, leaving is the SIGTERM path `stop`), so the test can look at every supervisor's
listeners between two of its steps. kill -9 is tests/chaos/test_worker_kill.py."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

from tests.chaos.watch import all_stored, assert_exactly_once, stored_ids
from tests.e2e.harness import e2e_env, fresh_database, running_hub
from tests.fakes.telegram import FakeTelegram
from tests.waiting import eventually
from workers.process import HubWorker

BOTS = 12
ALICE = {"id": 601, "first_name": "Alice"}


def token(i: int) -> str:
    return f"{810000 + i}:AAChaosJoinLeaveTokenForTheFake{i:04d}"


async def test_workers_joining_and_leaving_mid_stream(backend: str, tmp_path: Path) -> None:
    async with FakeTelegram() as fake, fresh_database(backend, tmp_path) as db:
        for i in range(BOTS):
            fake.add_bot(token(i), 810000 + i, f"chaos_bot_{i}")
        env = e2e_env(backend, tmp_path, db, LOOMI_TELEGRAM_BASE_URL=fake.base_url)
        async with running_hub(env) as hub:
            hub.hub.connector("telegram").poll_timeout = 1
            assert hub.worker is not None
            workers: dict[str, HubWorker] = {hub.worker.name: hub.worker}
            headers = await hub.login()
            inits = await asyncio.gather(*(hub.client.post("/api/telegram/listener/init", json={"botToken": token(i)}, headers=headers)
                                           for i in range(BOTS)))
            assert all(r.status_code == 200 for r in inits), [r.text for r in inits if r.status_code != 200]

            async def accounts() -> list[dict]:
                return (await hub.client.get("/api/integrations/accounts", headers=headers)).json()["accounts"]

            async def shares(n_workers: int) -> Counter[str] | None:
                """Connected listeners per worker, once every account is connected through one of
                `n_workers` live workers holding about a fair share each."""
                held = Counter(a["worker"] for a in await accounts() if a["state"] == "connected")
                fair = -(-BOTS // n_workers)
                ok = sum(held.values()) == BOTS and set(held) <= set(workers) and len(held) == n_workers and max(held.values()) <= fair + 1
                return held if ok else None

            began = time.monotonic()
            await eventually(lambda: shares(1), timeout=30, what="one worker holding every listener")
            print(f"\n{BOTS} listeners connected in {time.monotonic() - began:.1f} s")

            sent: list[tuple[str, str]] = []
            overlaps: list[str] = []
            stop = asyncio.Event()

            async def stream() -> None:
                """A message every 20 ms to the bots in turn; and, between two steps of any
                worker, no listener running in two supervisors at once."""
                n = 0
                while not stop.is_set():
                    chat = 5000 + n % BOTS
                    sent.append((str(chat), str(fake.post_message(token(n % BOTS), chat, ALICE, f"rolling {n}"))))
                    n += 1
                    seen: Counter[str] = Counter()
                    for worker in list(workers.values()):
                        seen.update(a for a, r in worker.supervisor.running.items() if not r.task.done())
                    overlaps.extend(a for a, k in seen.items() if k > 1)
                    await asyncio.sleep(0.02)

            producer = asyncio.create_task(stream())
            joined: list[HubWorker] = []
            try:
                for name in ("joiner-1", "joiner-2"):
                    worker = HubWorker(hub.hub, name=name)
                    await worker.start()
                    workers[name], _ = worker, joined.append(worker)
                    joined_at = time.monotonic()
                    await eventually(lambda: shares(len(workers)), timeout=30, what=f"fair shares after {name} joined")
                    print(f"fair shares {len(workers)} ways {time.monotonic() - joined_at:.1f} s after {name} joined")

                # one leaves (SIGTERM path): the moment it is gone, none of its accounts claims it
                leaving = workers.pop("joiner-1")
                held_before = {a for a, r in leaving.supervisor.running.items()}
                assert held_before
                await leaving.stop()
                left_at = time.monotonic()
                after = {a["id"]: a for a in await accounts()}
                said = {a: (after[a]["state"], after[a]["stateDetail"] or "", after[a]["worker"]) for a in held_before}
                # each says it waits for another worker, or is already with one that is still here
                assert all((state == "connecting" and "stopped" in detail and not worker) or worker in workers
                           for state, detail, worker in said.values()), said
                await eventually(lambda: shares(len(workers)), timeout=30, what="its listeners taken up by the others")
                print(f"\nlisteners of a worker that left connected again in {time.monotonic() - left_at:.1f} s")
                await asyncio.sleep(0.5)  # more messages after the hand-over
            finally:
                stop.set()
                await producer
                for worker in joined:
                    if worker.name in workers:
                        await worker.stop()

            await eventually(lambda: all_stored(hub, sent), timeout=30, what="every message of the rolling deploy")
            assert_exactly_once(await stored_ids(hub), sent)
            assert not overlaps, f"listeners running in two workers at once: {sorted(set(overlaps))}"
            print(f"{len(sent)} messages over {BOTS} bots while 2 workers joined and 1 left")
