"""A flaky Telegram: 500s for a while, 429 with retry_after, an answer cut off mid-body, garbage
bodies and updates, and a Bot API that stops answering. Every message stored exactly once; the
account says backoff (with what went wrong) while the platform misbehaves and connected again
after; `/healthz` stays ok, because the hub itself is fine."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.chaos.watch import Watch, all_stored, assert_exactly_once, stored_ids
from tests.e2e.harness import e2e_env, fresh_database, running_hub
from tests.e2e.test_telegram_e2e import ALICE, TOKEN, _connect
from tests.fakes.telegram import FakeTelegram
from tests.waiting import eventually
from workers import dlq
from workers import supervisor

POLL_TIMEOUT = 1  # s a long poll is held: how long a silent Bot API looks like an idle one


@pytest.fixture(autouse=True)
def short_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Restart failed listeners within a second (the curve itself is tested in tests/workers)."""
    monkeypatch.setattr(supervisor, "backoff_delay", lambda attempt: min(0.2 * attempt, 1.0))


async def test_telegram_faults_store_once_and_states_tell_the_truth(backend: str, tmp_path: Path) -> None:
    async with FakeTelegram() as fake, fresh_database(backend, tmp_path) as db:
        fake.add_bot(TOKEN, 123456, "loomi_bot")
        env = e2e_env(backend, tmp_path, db, LOOMI_TELEGRAM_BASE_URL=fake.base_url)
        async with running_hub(env) as hub:
            hub.hub.connector("telegram").poll_timeout = POLL_TIMEOUT
            headers = await hub.login()
            account_id = await _connect(hub, headers)
            sent: list[tuple[str, str]] = []

            def post(label: str, n: int = 5) -> None:
                sent.extend(("42", str(fake.post_message(TOKEN, 42, ALICE, f"{label} {i}"))) for i in range(n))

            async def state() -> tuple[str, str, str]:
                return await watch.latest(account_id) or ("?", "", "")

            async def in_state(name: str, *, detail: str = "") -> bool:
                s = await state()
                return s[0] == name and detail.lower() in s[1].lower()

            async with Watch(hub, headers) as watch:
                with watch.explained(account_id):
                    await eventually(lambda: in_state("connected"), what="connected")
                    post("before")
                    await eventually(lambda: all_stored(hub, sent), what="first messages")

                    # 500 for a while: backoff naming the error, then connected; nothing lost
                    watch.phase("500")
                    fake.fail_for("getUpdates", 2.5, status=500)
                    fake.drop_connections()  # end the poll in flight: the next one meets the 500s
                    post("during 500")
                    await eventually(lambda: in_state("backoff", detail="internal server error"), timeout=5, what="backoff naming the 500")
                    await eventually(lambda: in_state("connected"), timeout=10, what="connected after the 500s")
                    await eventually(lambda: all_stored(hub, sent), what="messages sent during the 500s")

                    # 429: Telegram's flood control is obeyed in place, and the state says we wait
                    watch.phase("429")
                    fake.fail_for("getUpdates", 2.0, status=429, retry_after=1)
                    fake.drop_connections()
                    post("during 429")
                    await eventually(lambda: in_state("backoff", detail="retry after"), timeout=5, what="backoff while rate limited")
                    await eventually(lambda: in_state("connected"), timeout=10, what="connected after the 429s")
                    await eventually(lambda: all_stored(hub, sent), what="messages sent during the 429s")

                    # an answer carrying updates cut off halfway, twice: they come again, stored once
                    watch.phase("drop")
                    fake.drop_next("getUpdates", times=2)
                    post("cut off")  # the hanging poll would answer these: abort it before it can
                    fake.drop_connections()
                    await eventually(lambda: all_stored(hub, sent), timeout=15, what="messages of the cut-off answers")
                    assert fake.faults.count("drop", "getUpdates") == 2

                    # garbage: a body that is not JSON, JSON of the wrong shape, updates that are junk
                    watch.phase("garbage")
                    dead_before = await dlq.size(hub.hub.redis)
                    fake.garbage_next("getUpdates")
                    fake.garbage_next("getUpdates", body=b'{"ok": true, "result": {"update_id": 1}}')
                    fake.drop_connections()
                    fake.push_update(TOKEN, "message", {"message_id": "not a message"})
                    post("after garbage")
                    await eventually(lambda: in_state("backoff", detail="invalid server response"), timeout=5, what="backoff on a body that is not JSON")
                    await eventually(lambda: all_stored(hub, sent), timeout=15, what="messages after the garbage")
                    await eventually(lambda: _dead_letters(hub, dead_before + 1), what="the junk update dead-lettered")
                    assert await in_state("connected")

                    # the Bot API goes silent: no claim of connected past one poll and its read timeout
                    watch.phase("stall")
                    fake.stall_for("*", 8.0)
                    post("during stall")
                    await eventually(lambda: in_state("backoff", detail="timed out"), timeout=POLL_TIMEOUT + 5 + 3,
                                     what="backoff once a poll got no answer")
                    await eventually(lambda: in_state("connected"), timeout=15, what="connected after the stall")
                    await eventually(lambda: all_stored(hub, sent), timeout=15, what="messages sent during the stall")
                    watch.phase("end")
                    await asyncio.sleep(0.3)

            assert_exactly_once(await stored_ids(hub, account_id), sent)
            timeline = watch.timeline(account_id)
            # /healthz told the truth: the hub was healthy while the platform misbehaved
            assert all(s.health_status == 200 for s in watch.samples), timeline
            # through the 500s the listener restarted again and again, and never said connected
            window = [s for s in watch.during("500") if s.at < watch.started["500"] + 2.5]
            said = [s.states[account_id][0] for s in window if s.states]
            first_out = next(i for i, st in enumerate(said) if st != "connected")
            assert "connected" not in said[first_out:] and "backoff" in said, timeline
            # a silent Bot API stopped being "connected" within one poll and PTB's read timeout
            went = next(s.at for s in watch.during("stall", whole=False) if s.states and s.states[account_id][0] != "connected")
            assert went - watch.started["stall"] <= POLL_TIMEOUT + 5 + 2, timeline


async def _dead_letters(hub, n: int) -> bool:
    return await dlq.size(hub.hub.redis) >= n
