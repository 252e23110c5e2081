"""`loomi status` and `loomi backfill` (issue 12 item 5), as functions and as the real command
in a subprocess against a test hub, on both backends. The backfill runs the Slack connector
against FakeSlack (tests/fakes/slack.py) over HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import io
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from connectors.base import AccountSpec
from loomi.hub import Hub
from loomi.status import run_backfill, status_report
from store import accounts as account_store
from tests.e2e.harness import e2e_env, fresh_database, running_hub
from tests.fakes.slack import FakeSlack
from tests.ops.helpers import add_account, ingest_all, queue_updates
from workers import keys
from workers.stream import queued

ROOT = Path(__file__).resolve().parents[2]


async def loomi(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    """The real `loomi` entry point in its own process (non-blocking for the servers in this one)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loomi.cli", *args, cwd=ROOT, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, out.decode(), err.decode()


def hub_env(hub: Hub) -> dict[str, str]:
    settings = hub.settings
    assert settings.secret_key is not None and settings.database_url is not None
    return {
        "LOOMI_HOME": str(settings.home), "LOOMI_DATABASE_URL": settings.database_url, "LOOMI_REDIS_URL": hub.redis_url,
        "LOOMI_SECRET_KEY": settings.secret_key.get_secret_value(), "LOOMI_LOG_LEVEL": "warning",
    }


async def test_status_table(hub: Hub, user: dict[str, Any]) -> None:
    account = await add_account(hub, user["user"]["id"], "Table Team")
    await queue_updates(hub, account, 5)
    await ingest_all(hub)  # 5 stored now: 1.0/min over the last 5 minutes
    now = int(time.time() * 1000)
    await hub.redis.hset(keys.status(account), mapping={"state": "backoff", "worker": "w-ops-cli:1", "lag_ms": 2000, "last_event_at": now - 30_000})
    await hub.redis.zadd(keys.WORKERS, {"w-ops-cli:1": now + 60_000, "w-ops-gone:2": now - 1000})
    try:
        report = await status_report(hub)
        row = next(line for line in report.splitlines() if line.startswith(account))
        assert re.search(rf"{account}\s+telegram\s+Table Team\s+backoff\s+w-ops-cli:1\s+\S+ \S+ \(3\d s ago\)\s+2\.0 s\s+1\.0/min$", row), row
        header = report.splitlines()[0].split()
        assert header == ["account", "platform", "name", "state", "worker", "last", "event", "lag", "rate", "(5", "min)"]
        assert re.search(r"^0\s+\d+\s+\d+\s+\d+\.\d s$", report, re.M)  # shard 0: depth, pending, oldest
        assert re.search(r"^dead letters: \d+$", report, re.M)
        workers_line = next(line for line in report.splitlines() if line.startswith("workers alive:"))
        assert "w-ops-cli:1" in workers_line and "w-ops-gone:2" not in workers_line  # a lapsed registration is not alive

        code, out, err = await loomi(hub_env(hub), "status")
        assert code == 0, err
        assert any(line.startswith(account) and "backoff" in line for line in out.splitlines()), out
    finally:
        await hub.redis.zrem(keys.WORKERS, "w-ops-cli:1", "w-ops-gone:2")


def chat_lines(text: str) -> dict[str, tuple[int, int]]:
    """chat id -> (pages, messages queued) from the bars' final lines."""
    found = {}
    for match in re.finditer(r"chat \d+/\d+ (\S+)\s+\[#+\] (\d+) page\(s\), (\d+) message\(s\) queued done", text):
        found[match.group(1)] = (int(match.group(2)), int(match.group(3)))
    return found


async def test_backfill_with_progress(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("connectors.slack.history.PAGE_LIMIT", 2)
    async with FakeSlack() as fake:
        fake.add_user("U1", "alice")
        fake.add_channel("C1", "general")
        fake.add_channel("C2", "random")
        for i in range(5):
            fake.add_history_only("C1", "U1", f"general {i}")
        for i in range(3):
            fake.add_history_only("C2", "U1", f"random {i}")
        async with fresh_database(backend, tmp_path) as db:
            env = e2e_env(backend, tmp_path, db, LOOMI_SLACK_BASE_URL=fake.base_url)
            async with running_hub(env, worker=False) as running:
                hub = running.hub
                me = (await running.client.get("/api/remote-auth/user", headers=await running.login())).json()
                spec = AccountSpec(external_id=fake.team_id, name=fake.team_name,
                                   credentials={"access_token": fake.bot_token, "bot_user_id": fake.bot_user_id, "team_id": fake.team_id})
                async with hub.engine.begin() as conn:
                    account_id = (await account_store.upsert_account(conn, hub.vault, me["id"], "slack", spec))["id"]

                out = io.StringIO()
                assert await run_backfill(hub, account_id, "history", out=out) == 0
                assert chat_lines(out.getvalue()) == {"C1": (3, 5), "C2": (2, 3)}, out.getvalue()
                assert await queued(hub.redis) == 8
                again = io.StringIO()
                assert await run_backfill(hub, account_id, "history", out=again) == 0  # cursors say done
                assert chat_lines(again.getvalue()) == {"C1": (0, 0), "C2": (0, 0)}
                assert await run_backfill(hub, "acct_nobody", "history", out=io.StringIO()) == 1

                assert await ingest_all(hub) == 8
                fake.add_history_only("C1", "U1", "while away 1")
                fake.add_history_only("C1", "U1", "while away 2")
                code, stdout, stderr = await loomi({**env, "LOOMI_REDIS_URL": hub.redis_url}, "backfill", account_id, "--mode", "gaps")
                assert code == 0, stderr
                assert f"gaps backfill of {account_id}: 2 message(s) queued from 2 chat(s)" in stdout
                assert chat_lines(stderr)["C1"] == (1, 2), stderr
                assert await queued(hub.redis) == 2

                code, _, stderr = await loomi(env, "backfill", account_id, "--mode", "everything")
                assert code == 2 and "invalid choice" in stderr
