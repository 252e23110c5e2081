"""A flaky Slack: the history backfill meets a cut-off page, a garbage page and 500s; Socket
Mode loses its socket while apps.connections.open answers 500, then 429 with Retry-After; the
whole platform goes silent; garbage frames arrive. Every message (history, live, missed and
gap-recovered) is stored exactly once; the account says backoff with Slack's error while
Slack refuses, is not "connected" while Slack is silent, and is connected again after;
`/healthz` stays ok (the hub itself is fine)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from connectors.slack.connector import SlackConnector
from tests.chaos.watch import Watch, all_stored, assert_exactly_once, stored_ids
from tests.e2e.harness import fresh_database, running_hub
from tests.e2e.test_slack_e2e import _env as slack_env, _install
from tests.fakes.slack import FakeSlack
from tests.waiting import eventually
from workers import dlq, keys, supervisor

PING = 0.2  # slack_sdk's ping interval: how soon it notices a dead or silent socket


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SlackConnector, "ping_interval", PING)
    monkeypatch.setattr(supervisor, "backoff_delay", lambda attempt: min(0.2 * attempt, 1.0))


async def test_slack_faults_store_once_and_states_tell_the_truth(backend: str, tmp_path: Path) -> None:
    async with FakeSlack() as fake, fresh_database(backend, tmp_path) as db:
        fake.add_user("UALICE", "alice")
        fake.add_channel("C1", "general")
        fake.add_channel("C2", "random")
        sent = [(ch, fake.add_history_only(ch, "UALICE", f"old {ch} {i}")) for ch in ("C1", "C2") for i in range(250)]
        # the history backfill: a page cut off halfway, then one that is not JSON, then 500s
        fake.drop_next("conversations.history")
        fake.garbage_next("conversations.history")
        async with running_hub(slack_env(backend, tmp_path, db, fake)) as hub:
            headers = await hub.login()
            account_id = await _install(hub, fake, headers)

            def post(label: str, n: int = 5, *, missed: int = 0) -> None:
                for i in range(n):
                    ch = "C1" if i % 2 else "C2"
                    sent.append((ch, fake.post_message(ch, "UALICE", f"{label} {i}")))
                for i in range(missed):  # never pushed: only gap recovery finds these
                    sent.append(("C1", fake.add_history_only("C1", "UALICE", f"{label} missed {i}")))

            async def in_state(name: str, *, detail: str = "") -> bool:
                s = await watch.latest(account_id)
                return bool(s) and s[0] == name and detail.lower() in s[1].lower()

            async with Watch(hub, headers) as watch:
                with watch.explained(account_id):
                    await eventually(lambda: in_state("connected"), what="connected")
                    post("live")
                    await eventually(lambda: all_stored(hub, sent), timeout=30, what="history through a cut-off and a garbage page, and live")
                    assert fake.faults.count("drop", "conversations.history") == 1
                    assert fake.faults.count("garbage", "conversations.history") == 1
                    await eventually(lambda: _backfilled(hub, account_id), what="the history job finished")

                    # the socket dies and Slack refuses a new one (500) for a while
                    watch.phase("500")
                    fake.fail_for("apps.connections.open", 2.0, status=500)
                    fake.drop_connections()
                    post("during 500", missed=3)
                    await eventually(lambda: in_state("backoff", detail="internal_error"), timeout=5, what="backoff naming Slack's error")
                    await eventually(lambda: in_state("connected"), timeout=10, what="connected after the 500s")
                    await eventually(lambda: all_stored(hub, sent), timeout=20, what="live and gap-recovered messages after the 500s")

                    # rate limited: Retry-After is waited out before each new attempt
                    watch.phase("429")
                    fake.fail_for("apps.connections.open", 1.5, status=429, retry_after=1)
                    fake.drop_connections()
                    post("during 429")
                    await eventually(lambda: in_state("backoff", detail="ratelimited"), timeout=5, what="backoff while rate limited")
                    await eventually(lambda: in_state("connected"), timeout=10, what="connected after the 429s")
                    await eventually(lambda: all_stored(hub, sent), timeout=20, what="messages sent during the 429s")
                    opens = [t for t, m in fake.call_log if m == "apps.connections.open" and t >= watch.started["429"]]
                    limited = [i.at for i in fake.faults.injected if i.method == "apps.connections.open" and i.status == 429]
                    assert limited and all(later - at >= 1.0 for at, later in zip(limited, opens[1:])), (limited, opens)

                    # Slack goes silent: sockets, Web API, handshakes; and the gap backfill meets a 500
                    watch.phase("stall")
                    fake.stall_sockets(3.0)
                    fake.stall_for("*", 3.0)
                    fake.fail_for("conversations.history", 4.0, status=500)
                    post("during silence", missed=2)
                    await eventually(lambda: _not_connected(watch, account_id), timeout=3, what="not connected while Slack is silent")
                    await eventually(lambda: in_state("connected"), timeout=15, what="connected after the silence")
                    await eventually(lambda: all_stored(hub, sent), timeout=30, what="messages of the silence")

                    # garbage on the socket: not JSON, and an envelope that carries no event
                    watch.phase("garbage")
                    dead_before = await dlq.size(hub.hub.redis)
                    await fake.send_garbage()
                    post("after garbage")
                    await eventually(lambda: all_stored(hub, sent), timeout=15, what="messages after the garbage frames")
                    await eventually(lambda: _dead_letters(hub, dead_before + 1), what="the empty envelope dead-lettered")
                    assert await in_state("connected")
                    watch.phase("end")
                    await asyncio.sleep(0.3)

            assert_exactly_once(await stored_ids(hub, account_id), sent)
            timeline = watch.timeline(account_id)
            assert all(s.health_status == 200 for s in watch.samples), timeline
            # through the refused reconnects: never connected until Slack gave a socket again
            for phase, seconds in (("500", 2.0), ("429", 1.5)):
                window = [s for s in watch.during(phase) if s.at < watch.started[phase] + seconds]
                said = [s.states[account_id][0] for s in window if s.states]
                first_out = next(i for i, st in enumerate(said) if st != "connected")
                assert "connected" not in said[first_out:] and "backoff" in said, (phase, timeline)
            # the garbage did not cost the connection
            assert {st for st, _, _ in watch.states_of(account_id, watch.during("garbage", whole=False))} == {"connected"}, timeline


async def _backfilled(hub, account_id: str) -> bool:
    return bool(await hub.hub.redis.hget(keys.status(account_id), "history_backfill_at"))


async def _not_connected(watch: Watch, account_id: str) -> bool:
    s = await watch.latest(account_id)
    return bool(s) and s[0] != "connected"


async def _dead_letters(hub, n: int) -> bool:
    return await dlq.size(hub.hub.redis) >= n
