"""PostgreSQL crashes (every backend killed at once: `pg_ctl stop -m immediate`) mid-stream and
comes back: the listener keeps queueing into Redis meanwhile, ingest waits and then writes
every message exactly once; `/healthz` says the store is down (503, Redis still ok) within a
couple of seconds and ok again after.

Runs on a throwaway cluster of its own (tests/chaos/services.py), whatever LOOMI_TEST_BACKENDS
says: the shared PostgreSQL serves everybody else's tests and cannot be restarted."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.chaos.services import OwnPostgres
from tests.chaos.watch import Watch, all_stored, assert_exactly_once, stored_ids
from tests.e2e.harness import e2e_env, running_hub
from tests.e2e.test_telegram_e2e import ALICE, TOKEN, _connect
from tests.fakes.telegram import FakeTelegram
from tests.waiting import eventually
from workers import supervisor


@pytest.fixture(autouse=True)
def short_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "backoff_delay", lambda attempt: min(0.2 * attempt, 1.0))


async def test_postgresql_crash_and_restart_lose_nothing_and_healthz_tells(tmp_path: Path) -> None:
    pg = OwnPostgres().init()
    pg.start()
    try:
        async with FakeTelegram() as fake:
            fake.add_bot(TOKEN, 123456, "loomi_bot")
            env = e2e_env("postgresql", tmp_path, pg.url, LOOMI_TELEGRAM_BASE_URL=fake.base_url)
            async with running_hub(env) as hub:
                hub.hub.connector("telegram").poll_timeout = 1
                headers = await hub.login()
                account_id = await _connect(hub, headers)
                sent: list[tuple[str, str]] = []

                def post(label: str, n: int = 20) -> None:
                    sent.extend(("42", str(fake.post_message(TOKEN, 42, ALICE, f"{label} {i}"))) for i in range(n))

                async def store_down() -> bool:
                    s = await watch.sample()
                    return s.health_status == 503 and s.health["store"]["ok"] is False and s.health["redis"]["ok"] is True

                async def healthy() -> bool:
                    return (await watch.sample()).health_status == 200

                async def connected() -> bool:
                    s = await watch.latest(account_id)
                    return bool(s) and s[0] == "connected"

                async with Watch(hub, headers) as watch:
                    with watch.explained(account_id):
                        await eventually(connected, what="connected")
                        post("before")
                        await eventually(lambda: all_stored(hub, sent), what="first messages")

                        watch.phase("crashed")
                        post("in flight")  # the crash lands while ingest writes these
                        pg.crash()
                        post("while the database is down")
                        await eventually(store_down, timeout=4, what="/healthz: store down")
                        await asyncio.sleep(2.0)
                        watch.phase("restarted")
                        pg.start()
                        post("after the restart")
                        await eventually(healthy, timeout=10, what="/healthz ok again")
                        await eventually(lambda: all_stored(hub, sent), timeout=30, what="every message after the restart")
                        await eventually(connected, timeout=10, what="connected after the restart")
                        watch.phase("end")

                        assert_exactly_once(await stored_ids(hub, account_id), sent)
                        down = watch.during("crashed", after=1.0)
                        assert down and all(s.health_status == 503 and s.health["store"]["ok"] is False
                                            and s.health["redis"]["ok"] is True for s in down)
                        assert all(s.health_seconds < 4.0 for s in watch.samples)
    finally:
        pg.remove()
