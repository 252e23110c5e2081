"""Redis killed -9 mid-stream and restarted from its append-only file, then frozen (SIGSTOP)
and thawed: every message stored exactly once; `/healthz` says Redis is down (503, the
store still ok) within a couple of seconds of each fault, answers in bounded time even while
Redis hangs, and is ok again after; the listener is connected again after each."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.chaos.services import OwnRedis
from tests.chaos.watch import Watch, all_stored, assert_exactly_once, stored_ids
from tests.e2e.harness import e2e_env, fresh_database, running_hub
from tests.e2e.test_telegram_e2e import ALICE, TOKEN, _connect
from tests.fakes.telegram import FakeTelegram
from tests.waiting import eventually
from workers import supervisor

HEALTH_DEADLINE = 4.0  # s /healthz may take while a part hangs (its probes give up after 2 s each)


@pytest.fixture(autouse=True)
def short_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervisor, "backoff_delay", lambda attempt: min(0.2 * attempt, 1.0))


async def test_redis_kill_9_and_freeze_lose_nothing_and_healthz_tells(backend: str, tmp_path: Path) -> None:
    redis = OwnRedis(tmp_path / "redis", backend).start()
    try:
        async with FakeTelegram() as fake, fresh_database(backend, tmp_path) as db:
            fake.add_bot(TOKEN, 123456, "loomi_bot")
            env = e2e_env(backend, tmp_path, db, redis_url=redis.url, LOOMI_TELEGRAM_BASE_URL=fake.base_url)
            async with running_hub(env) as hub:
                hub.hub.connector("telegram").poll_timeout = 1
                headers = await hub.login()
                account_id = await _connect(hub, headers)
                sent: list[tuple[str, str]] = []

                def post(label: str, n: int = 10) -> None:
                    sent.extend(("42", str(fake.post_message(TOKEN, 42, ALICE, f"{label} {i}"))) for i in range(n))

                async def health(ok: bool) -> bool:
                    s = await watch.sample()
                    if ok:
                        return s.health_status == 200
                    return s.health_status == 503 and s.health["redis"]["ok"] is False and s.health["store"]["ok"] is True

                async def connected() -> bool:
                    s = await watch.latest(account_id)
                    return bool(s) and s[0] == "connected"

                async with Watch(hub, headers, health_timeout=HEALTH_DEADLINE + 2) as watch:
                    with watch.explained(account_id):
                        await eventually(connected, what="connected")
                        post("before")
                        await eventually(lambda: all_stored(hub, sent), what="first messages")

                        watch.phase("killed")
                        redis.kill9()
                        post("while Redis is dead")  # Telegram keeps them: the offset was not confirmed
                        await eventually(lambda: health(ok=False), timeout=3, what="/healthz: Redis down")
                        # the account list still answers, from the rows the supervisor also writes
                        listed = await hub.client.get("/api/integrations/accounts", headers=headers)
                        assert listed.status_code == 200, listed.text
                        assert [a["id"] for a in listed.json()["accounts"]] == [account_id]
                        await asyncio.sleep(1.5)
                        watch.phase("restarted")
                        redis.start()
                        post("after the restart")
                        await eventually(lambda: health(ok=True), timeout=10, what="/healthz ok again")
                        await eventually(connected, timeout=15, what="connected after the restart")
                        await eventually(lambda: all_stored(hub, sent), timeout=20, what="every message after the restart")

                        watch.phase("frozen")
                        redis.freeze()
                        try:
                            post("while Redis hangs")
                            await eventually(lambda: health(ok=False), timeout=HEALTH_DEADLINE + 3, what="/healthz: Redis hangs")
                            await asyncio.sleep(3.0)  # long enough for whole samples of a hung Redis
                        finally:
                            watch.phase("thawed")
                            redis.thaw()
                        post("after the thaw")
                        await eventually(lambda: health(ok=True), timeout=10, what="/healthz ok after the thaw")
                        await eventually(connected, timeout=15, what="connected after the thaw")
                        await eventually(lambda: all_stored(hub, sent), timeout=20, what="every message after the thaw")
                        watch.phase("end")

                        assert_exactly_once(await stored_ids(hub, account_id), sent)
                        # /healthz never said ok while Redis was dead or hung (after a moment to notice),
                        # and always answered in bounded time
                        for phase, notice in (("killed", 1.0), ("frozen", 2.5)):
                            during = watch.during(phase, after=notice)
                            assert during and all(s.health_status == 503 for s in during), phase
                        assert all(s.health_seconds < HEALTH_DEADLINE for s in watch.samples), max(s.health_seconds for s in watch.samples)
                        assert (await watch.sample()).health_status == 200
    finally:
        redis.stop()
