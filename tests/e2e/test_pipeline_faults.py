"""The pipeline's promises under faults: one listener per account across workers, revoked
credentials, token refresh, repeated connection drops, and the dead-letter list."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from connectors.slack.connector import SlackConnector
from store.ids import now_ms
from store.schema import accounts
from tests.e2e.harness import ROOT, e2e_env, fresh_database, running_hub
from tests.waiting import eventually
from tests.e2e.test_slack_e2e import CLIENT_ID, CLIENT_SECRET, _env as slack_env
from tests.e2e.test_telegram_e2e import ALICE, TOKEN, _connect
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram
from workers import keys
from workers.process import HubWorker
from workers.refresh import refresh_due
from workers.stream import append
from connectors.base import Envelope


async def test_one_listener_per_account_across_workers(backend: str, tmp_path: Path) -> None:
    async with FakeTelegram() as fake, fresh_database(backend, tmp_path) as db:
        fake.add_bot(TOKEN, 123456, "loomi_bot")
        env = e2e_env(backend, tmp_path, db, LOOMI_TELEGRAM_BASE_URL=fake.base_url)
        async with running_hub(env) as hub:
            extra = [HubWorker(hub.hub, name=f"extra-{i}") for i in range(2)]
            for worker in extra:
                await worker.start()
            try:
                headers = await hub.login()
                account_id = await _connect(hub, headers)
                await eventually(lambda: hub.in_state(headers, "connected"), what="connected")
                await asyncio.sleep(1.5)  # several scans and heartbeats of every worker
                holders = [w.name for w in [hub.worker, *extra] if account_id in w.supervisor.running]
                assert len(holders) == 1
                sent = [fake.post_message(TOKEN, 42, ALICE, f"m{i}") for i in range(30)]
                got = await eventually(lambda: hub.at_least(headers, 30), what="30 messages")
                assert sorted(int(m["nativeId"]) for m in got) == sorted(sent)
                assert "conflict" not in " ".join(str(v) for v in fake.calls).lower()
            finally:
                for worker in extra:
                    await worker.stop()


async def test_rejected_credentials_end_in_needs_reauth(backend: str, tmp_path: Path) -> None:
    async with FakeTelegram() as fake, fresh_database(backend, tmp_path) as db:
        fake.add_bot(TOKEN, 123456, "loomi_bot")
        env = e2e_env(backend, tmp_path, db, LOOMI_TELEGRAM_BASE_URL=fake.base_url)
        async with running_hub(env) as hub:
            headers = await hub.login()
            account_id = await _connect(hub, headers)
            await eventually(lambda: hub.in_state(headers, "connected"), what="connected")
            fake.fail_next("getUpdates", status=401, times=50, description="Unauthorized")
            fake.drop_connections()
            await eventually(lambda: hub.in_state(headers, "needs_reauth"), what="needs_reauth")
            await eventually(lambda: _released(hub, account_id), what="listener released")
            await asyncio.sleep(0.6)  # scans go on: nobody restarts an account that needs the person
            assert account_id not in hub.worker.supervisor.running
            detail = (await hub.client.get("/api/integrations/accounts", headers=headers)).json()["accounts"][0]["stateDetail"]
            assert TOKEN not in (detail or "")


async def _released(hub, account_id):
    return account_id not in hub.worker.supervisor.running


async def test_oauth_tokens_refresh_before_expiry_and_failure_needs_reauth(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SlackConnector, "ping_interval", 0.2)
    async with FakeSlack() as fake, fresh_database(backend, tmp_path) as db:
        fake.add_channel("C1", "general")
        async with running_hub(slack_env(backend, tmp_path, db, fake)) as hub:
            headers = await hub.login()
            r = await hub.client.get("/api/integrations/slack/oauth/start", headers={**headers, "Accept": "application/json"})
            params = {k: v[0] for k, v in parse_qs(urlparse(r.json()["url"]).query).items()}
            fake.add_oauth_code("c", CLIENT_ID, CLIENT_SECRET, params["redirect_uri"], fake.team_id, fake.team_name, fake.bot_token, fake.bot_user_id, refresh_token="xoxe-1-first", expires_in=60, bot_id=fake.bot_id)
            done = await hub.client.get("/api/slack/callback", params={"code": "c", "state": params["state"]})
            account_id = done.json()["account"]["id"]
            async with hub.hub.engine.connect() as conn:
                before = (await conn.execute(accounts.select().where(accounts.c.id == account_id))).mappings().one()
            assert before["credentials_expire_at"] < now_ms() + 61_000
            assert "xoxe-1-first" not in str(dict(before)) and fake.bot_token not in str(dict(before))
            # two refreshers at once: exactly one refresh happens (refresh tokens are single-use)
            results = await asyncio.gather(refresh_due(hub.hub, "a"), refresh_due(hub.hub, "b"))
            assert sorted(results) == [0, 1]
            async with hub.hub.engine.connect() as conn:
                after = (await conn.execute(accounts.select().where(accounts.c.id == account_id))).mappings().one()
            assert after["credentials_expire_at"] > before["credentials_expire_at"] - 1000
            assert after["credentials"] != before["credentials"]
            # the listener restarts on the new token and keeps working
            fake.post_message("C1", "UALICE", "after refresh")
            await eventually(lambda: hub.with_text(headers, "after refresh"), what="message after refresh")
            # a refresh the platform refuses leaves the account needing the person
            fake._refresh.clear()
            assert await refresh_due(hub.hub, "c") == 0
            await eventually(lambda: hub.in_state(headers, "needs_reauth"), what="needs_reauth after failed refresh")


async def test_connection_dropped_every_second_loses_nothing(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(SlackConnector, "ping_interval", 0.2)
    async with FakeSlack() as fake, fresh_database(backend, tmp_path) as db:
        fake.add_channel("C1", "general")
        from tests.e2e.test_slack_e2e import _install

        async with running_hub(slack_env(backend, tmp_path, db, fake)) as hub:
            headers = await hub.login()
            await _install(hub, fake, headers)
            await eventually(lambda: hub.in_state(headers, "connected"), what="connected")
            expected = []
            deadline = time.monotonic() + 6
            i = 0
            next_drop = time.monotonic() + 1
            while time.monotonic() < deadline:
                expected.append(fake.post_message("C1", "UALICE", f"live {i}"))
                if i % 7 == 3:
                    expected.append(fake.add_history_only("C1", "UALICE", f"missed {i}"))
                if time.monotonic() > next_drop:
                    fake.drop_connections()
                    next_drop = time.monotonic() + 1
                i += 1
                await asyncio.sleep(0.05)
            fake.drop_connections()  # every missed message is followed by a drop, as in real gaps
            await asyncio.sleep(0.5)
            expected.append(fake.post_message("C1", "UALICE", "last"))
            try:
                got = await eventually(lambda: hub.at_least(headers, len(expected)), timeout=30, what="every message")
            except AssertionError:
                stored = {m["nativeId"] for m in await hub.messages(headers)}
                texts = {m["ts"]: m["text"] for m in fake.history("C1")}
                missing = [texts.get(ts) for ts in expected if ts not in stored]
                raise AssertionError(f"missing {missing}; gave up on {fake.given_up_event_ids}") from None
            assert sorted(m["nativeId"] for m in got) == sorted(expected)


async def test_dead_letters_are_listed_and_replayed(backend: str, tmp_path: Path) -> None:
    async with fresh_database(backend, tmp_path) as db:
        env = e2e_env(backend, tmp_path, db)
        async with running_hub(env) as hub:
            headers = await hub.login()
            me = (await hub.client.get("/api/remote-auth/user", headers=headers)).json()
            update = {"update_id": 7, "message": {"message_id": 1, "date": 1700000000, "chat": {"id": 42, "type": "private"}, "from": {"id": 9, "first_name": "Al", "is_bot": False}, "text": "ünïcode and [] {}", "entities": []}}
            # one unreadable payload, one for an account that does not exist yet
            await append(hub.hub.redis, [Envelope("telegram", "acct_later", "1", now_ms(), {"update_id": "garbage", "message": 5})])
            await append(hub.hub.redis, [Envelope("telegram", "acct_later", "2", now_ms(), update)])
            await eventually(lambda: _dlq_size(hub, 2), what="two dead letters")
            listing = _cli(env, "dlq", "list")
            assert "2 dead-lettered" in listing and "does not exist" in listing
            async with hub.hub.engine.begin() as conn:
                await conn.execute(accounts.insert().values(
                    id="acct_later", user_id=me["id"], platform="telegram", external_id="9", name="bot",
                    credentials=None, settings={}, resume={}, enabled=False, state="stopped", created_at=now_ms(), updated_at=now_ms(),
                ))
            out = _cli(env, "dlq", "replay")
            assert "replayed 2" in out
            got = await eventually(lambda: hub.at_least(headers, 1), what="replayed message stored")
            assert got[0]["text"] == "ünïcode and [] {}"
            await eventually(lambda: _dlq_size(hub, 1), what="the garbage one back in the list")


async def _dlq_size(hub, n):
    return await hub.hub.redis.llen(keys.DEAD_LETTERS) == n


def _cli(env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "loomi.cli", *args], cwd=ROOT, env={**env, "PATH": os.environ["PATH"]}, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout
