"""Shared fixtures: every hub-level test runs on SQLite and on PostgreSQL, with real Redis.

The two backends are the two ways people run the hub, so each pairs a database with a Redis:
`sqlite` runs against the embedded Redis 6.2 that `loomi serve` starts (loomi/embedded_redis.py,
one per test session), `postgresql` against the system Redis (`LOOMI_TEST_REDIS_URL`).
`LOOMI_TEST_BACKENDS` (default `sqlite,postgresql`) picks the backends;
`LOOMI_TEST_POSTGRES_URL` and `LOOMI_TEST_REDIS_URL` say where the services are.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import secrets
import shutil
import socket
import tempfile
from pathlib import Path
from typing import Any, AsyncIterator

import asyncpg
import httpx
import pytest
import uvicorn
from sqlalchemy.engine import make_url

from api.app import create_app
from config.settings import load_settings
from loomi.embedded_redis import EmbeddedRedis
from loomi.hub import Hub
from store.db import migrate

POSTGRES_URL = os.environ.get("LOOMI_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("LOOMI_TEST_REDIS_URL", "redis://127.0.0.1:6379")
BACKENDS = [b.strip() for b in os.environ.get("LOOMI_TEST_BACKENDS", "sqlite,postgresql").split(",") if b.strip()]
REDIS_DB = {"sqlite": 11, "postgresql": 12}


def _asyncpg_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def scratch_postgres(prefix: str) -> AsyncIterator[str]:
    """A fresh PostgreSQL database, dropped afterwards; yields its SQLAlchemy URL."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    admin = await asyncpg.connect(_asyncpg_dsn(POSTGRES_URL))
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="session")
async def postgres_database() -> AsyncIterator[str]:
    async with scratch_postgres("loomi_test") as url:
        yield url


def free_port() -> int:
    """A port nobody listens on right now, on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_embedded: EmbeddedRedis | None = None


def embedded_redis() -> EmbeddedRedis:
    """This session's embedded Redis (what `loomi serve` runs), started on first use.

    Its own short temp dir (a unix socket path must stay under 108 bytes); stopped at exit.
    """
    global _embedded
    if _embedded is None:
        home = Path(tempfile.mkdtemp(prefix="loomi-redis-"))
        server = EmbeddedRedis(home)
        server.start(die_with_parent=True)  # a killed test run leaves no server behind

        def stop() -> None:
            server.stop()
            shutil.rmtree(home, ignore_errors=True)

        atexit.register(stop)
        _embedded = server
    return _embedded


def redis_url_for(backend: str, db: int) -> str:
    """Database `db` of the Redis paired with `backend`: embedded 6.2 for sqlite, system for postgresql."""
    if backend == "sqlite":
        return f"{embedded_redis().url}?db={db}"
    return f"{REDIS_URL}/{db}"


def hub_env(tmp: Path, backend: str, database_url: str, **extra: str) -> dict[str, str]:
    env = {
        "LOOMI_HOME": str(tmp),
        "LOOMI_DATABASE_URL": database_url,
        "LOOMI_REDIS_URL": redis_url_for(backend, REDIS_DB[backend]),
        "LOOMI_SECRET_KEY": "test-secret-" + backend,
        "LOOMI_LOG_LEVEL": "warning",
        "LOOMI_AI_DISCOVER": "false",  # never pick up a model server someone runs on this machine
    }
    env.update(extra)
    return env


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="session")
def database_url(backend: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('sqlite') / 'hub.db'}"
    return request.getfixturevalue("postgres_database")


@pytest.fixture(scope="session")
async def hub(backend: str, database_url: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Hub]:
    settings = load_settings(hub_env(tmp_path_factory.mktemp("home"), backend, database_url))
    await migrate(settings.database)
    hub = await Hub.open(settings)
    await hub.redis.flushdb()
    try:
        yield hub
    finally:
        await hub.close()


class RunningServer:
    def __init__(self, app: Any) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY, see loomi.runtime.bind
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan="on", access_log=False))
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "RunningServer":
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]))
        while not self.server.started:
            if self.task.done():
                self.task.result()
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        assert self.task is not None
        await self.task


@pytest.fixture(scope="session")
async def server(hub: Hub) -> AsyncIterator[RunningServer]:
    """The real app on a real socket: what curl and the official SDKs talk to."""
    async with RunningServer(create_app(hub)) as running:
        yield running


@pytest.fixture
async def client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield http


async def register(client: httpx.AsyncClient, password: str = "correct horse battery") -> dict[str, Any]:
    """A new user; returns the login response plus the password used."""
    email = f"u{secrets.token_hex(5)}@example.com"
    response = await client.post("/api/remote-auth/register", json={"email": email, "password": password, "name": "Test"})
    assert response.status_code == 201, response.text
    data = response.json()
    client.cookies.clear()
    return {**data, "password": password, "email": email, "headers": {"Authorization": f"Bearer {data['token']}"}}


@pytest.fixture
async def user(client: httpx.AsyncClient) -> dict[str, Any]:
    return await register(client)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "only_backend(name): a test of one database's own code path; not collected for the other")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect, rather than skip, the other backend's copy of an `only_backend` test: a skip
    would read as something that could not run."""
    keep, drop = [], []
    for item in items:
        marker = item.get_closest_marker("only_backend")
        callspec = getattr(item, "callspec", None)
        backend = callspec.params.get("backend") if callspec else None
        (drop if marker and backend and backend != marker.args[0] else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
