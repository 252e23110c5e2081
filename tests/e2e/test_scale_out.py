"""Scale-out: three `loomi worker` processes share 300 Telegram bots about evenly, hand
listeners over when a worker joins without losing or repeating a message, and spread a
killed worker's accounts over the rest within the lease time."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from pathlib import Path

from tests.e2e.harness import WorkerProcess, e2e_env, fresh_database, running_hub
from tests.fakes.telegram import FakeTelegram
from tests.waiting import eventually
from workers import keys

BOTS = 300
ALICE = {"id": 777, "first_name": "Alice"}


def token(i: int) -> str:
    return f"{900000 + i}:AAScaleOutTokenForTheLoopbackFake{i:04d}"


async def test_workers_hold_fair_shares_and_take_over_a_killed_one(backend: str, tmp_path: Path) -> None:
    async with FakeTelegram() as fake, fresh_database(backend, tmp_path) as db:
        for i in range(BOTS):
            fake.add_bot(token(i), 900000 + i, f"scale_bot_{i}")
        # the default lease (10 s) and heartbeat (1 s), not the harness's short ones: 300
        # listeners per process on a loaded 2-core machine is the point of this test
        env = e2e_env(backend, tmp_path, db, LOOMI_TELEGRAM_BASE_URL=fake.base_url,
                      LOOMI_LEASE_MS="10000", LOOMI_HEARTBEAT_SECONDS="1", LOOMI_SCAN_SECONDS="0.5")
        async with running_hub(env, worker=False) as hub:
            headers = await hub.login()
            first = WorkerProcess(env, tmp_path / "w1.log").start()
            workers = [first]
            try:
                for i in range(BOTS):
                    r = await hub.client.post("/api/telegram/listener/init", json={"botToken": token(i)}, headers=headers)
                    assert r.status_code == 200, r.text

                async def holders() -> Counter[str]:
                    accounts = (await hub.client.get("/api/integrations/accounts", headers=headers)).json()["accounts"]
                    return Counter(a["worker"] for a in accounts if a["state"] == "connected")

                async def alone() -> bool:
                    return sum((await holders()).values()) == BOTS

                await eventually(alone, timeout=120, what="one worker holding every listener")

                # two workers join while messages keep coming: the first hands listeners over
                workers += [WorkerProcess(env, tmp_path / f"w{n}.log").start() for n in (2, 3)]
                sent: list[tuple[int, int]] = []
                for round_ in range(10):
                    for i in range(0, BOTS, 30):
                        sent.append((i, fake.post_message(token(i), 4000 + i, ALICE, f"handover {round_}/{i}")))
                    await asyncio.sleep(0.3)

                seen: list[Counter[str]] = []

                async def balanced() -> Counter[str] | None:
                    held = await holders()
                    seen.append(held)
                    ok = len(held) == 3 and sum(held.values()) == BOTS and all(80 <= n <= 120 for n in held.values())
                    return held if ok else None

                try:
                    shares = await eventually(balanced, timeout=240, what="three fair shares")
                except AssertionError:
                    raise AssertionError(f"not balanced; last holders {seen[-1] if seen else None}") from None
                print(f"\nshares after two workers joined: {sorted(shares.values())}")

                async def all_stored() -> bool:
                    return len(await hub.messages(headers)) >= len(sent)

                await eventually(all_stored, timeout=60, what="messages sent during the hand-over")
                texts = [m["text"] for m in await hub.messages(headers)]
                assert len(texts) == len(sent) == len(set(texts))  # every one once

                # kill -9 one worker: its accounts spread over the other two within the lease time
                victim = workers[0]
                dead = f"{socket.gethostname()}:{victim.pid}"
                assert shares[dead] > 0
                victim.kill9()
                killed_at = time.monotonic()

                account_ids = [a["id"] for a in (await hub.client.get("/api/integrations/accounts", headers=headers)).json()["accounts"]]

                async def taken_over() -> bool:
                    """Every listener's lease is held, none by the dead worker (the lease value
                    is `<worker>:<fencing token>`)."""
                    leases = await hub.hub.redis.mget([keys.lease(a) for a in account_ids])
                    return all(lease is not None and not lease.decode().startswith(dead + ":") for lease in leases)

                await eventually(taken_over, timeout=60, interval=0.2, what="the killed worker's leases taken over")
                took = time.monotonic() - killed_at

                async def spread() -> Counter[str] | None:
                    held = await holders()
                    ok = len(held) == 2 and sum(held.values()) == BOTS and all(n <= 165 for n in held.values())
                    return held if ok else None

                after = await eventually(spread, timeout=120, interval=0.5, what="every listener connected again")
                connected = time.monotonic() - killed_at
                print(f"a killed worker's listeners: taken over in {took:.1f} s (lease 10 s), all connected again "
                      f"in {connected:.1f} s; shares {sorted(after.values())}")
                # the dead worker's registration lapses after five missed heartbeats (5 s here); the
                # next scan of each of the others takes its share of the leases at once, fenced:
                # inside the lease time (the listeners themselves then start ramped)
                assert took < 10, f"taken over in {took:.1f} s, the lease is 10 s"
            finally:
                for worker in workers:
                    worker.stop()
