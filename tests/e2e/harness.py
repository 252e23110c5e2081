"""A whole hub for end-to-end tests: its own database and Redis db, API on a real socket,
and a worker either in-process or as `loomi worker` subprocesses (for kill -9)."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import httpx

from api.app import create_app
from config.settings import load_settings
from loomi.hub import Hub
from store.db import migrate
from tests.conftest import RunningServer, redis_url_for, scratch_postgres
from workers.process import HubWorker

ROOT = Path(__file__).resolve().parents[2]
E2E_REDIS_DB = {"sqlite": 14, "postgresql": 15}  # of the Redis paired with the backend (conftest.redis_url_for)


@contextlib.asynccontextmanager
async def fresh_database(backend: str, tmp: Path) -> AsyncIterator[str]:
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp / 'e2e.db'}"
        return
    async with scratch_postgres("loomi_e2e") as url:
        yield url


def e2e_env(backend: str, tmp: Path, database_url: str, redis_url: str | None = None, **extra: str) -> dict[str, str]:
    env = {
        "LOOMI_HOME": str(tmp / "home"),
        "LOOMI_DATABASE_URL": database_url,
        "LOOMI_REDIS_URL": redis_url or redis_url_for(backend, E2E_REDIS_DB[backend]),
        "LOOMI_SECRET_KEY": "e2e-secret",
        "LOOMI_LOG_LEVEL": "warning",
        "LOOMI_SCAN_SECONDS": "0.2",
        "LOOMI_HEARTBEAT_SECONDS": "0.5",
        "LOOMI_LEASE_MS": "3000",
        "LOOMI_INGEST_CLAIM_IDLE_MS": "2000",
    }
    env.update(extra)
    return env


@dataclass
class RunningHub:
    hub: Hub
    url: str
    client: httpx.AsyncClient
    worker: HubWorker | None

    async def login(self) -> dict[str, str]:
        email = f"e2e{secrets.token_hex(4)}@example.com"
        r = await self.client.post("/api/remote-auth/register", json={"email": email, "password": "e2e password 1"})
        assert r.status_code == 201, r.text
        self.client.cookies.clear()
        return {"Authorization": f"Bearer {r.json()['token']}"}

    async def messages(self, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = {"limit": 500, **params, **({"cursor": cursor} if cursor else {})}
            page = (await self.client.get("/api/messages", params=query, headers=headers)).json()
            out += page["messages"]
            cursor = page.get("nextCursor")
            if not cursor:
                return out

    async def at_least(self, headers: dict[str, str], n: int, **params: Any) -> list[dict[str, Any]] | None:
        """The messages once there are `n` of them (for `eventually`), else None."""
        got = await self.messages(headers, **params)
        return got if len(got) >= n else None

    async def with_text(self, headers: dict[str, str], text: str) -> dict[str, Any] | None:
        return next((m for m in await self.messages(headers) if m["text"] == text), None)

    async def first_account(self, headers: dict[str, str]) -> dict[str, Any] | None:
        accounts = (await self.client.get("/api/integrations/accounts", headers=headers)).json()["accounts"]
        return accounts[0] if accounts else None

    async def in_state(self, headers: dict[str, str], state: str) -> bool:
        account = await self.first_account(headers)
        return bool(account and account["state"] == state)


@contextlib.asynccontextmanager
async def running_hub(env: dict[str, str], *, worker: bool = True, flush: bool = True) -> AsyncIterator[RunningHub]:
    settings = load_settings(env)
    await migrate(settings.database)
    hub = await Hub.open(settings)
    if flush:
        await hub.redis.flushdb()
    hub_worker = HubWorker(hub) if worker else None
    try:
        if hub_worker:
            await hub_worker.start()
        async with RunningServer(create_app(hub)) as server:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                yield RunningHub(hub, server.url, client, hub_worker)
    finally:
        if hub_worker:
            await hub_worker.stop()
        await hub.close()


class WorkerProcess:
    """`loomi worker` in a subprocess, so a test can kill -9 it."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = {**env, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> "WorkerProcess":
        self._fh = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "loomi.cli", "worker"], cwd=ROOT, env=self.env, stdout=self._fh, stderr=self._fh
        )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._fh.close()
