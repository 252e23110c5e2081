"""The hub on the Redis people actually get: the embedded 6.2 of `loomi serve`.

The `sqlite` backend of every hub-level test runs on the embedded Redis (tests/conftest.py),
so any command newer than 6.2 fails there; these tests pin that pairing and the start-up check.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import httpx
from redis.asyncio import Redis

from api import ratelimit
from config.settings import load_settings
from loomi.embedded_redis import EmbeddedRedis
from loomi.hub import Hub
from tests.conftest import free_port, hub_env, redis_url_for, register
from workers import keys

ROOT = Path(__file__).resolve().parents[1]


def _version(info: dict) -> tuple[int, ...]:
    return tuple(int(p) for p in str(info["redis_version"]).split(".")[:2])


async def test_embedded_redis_is_6_2(tmp_path: Path) -> None:
    """What `loomi serve` starts is 6.2: the floor every command the hub sends must respect."""
    server = EmbeddedRedis(tmp_path)
    server.start()
    try:
        client = Redis.from_url(server.url)
        try:
            assert _version(await client.info("server")) == (6, 2)
        finally:
            await client.aclose()
    finally:
        server.stop()


async def test_sqlite_backend_runs_on_the_embedded_redis(hub: Hub, backend: str) -> None:
    info = await hub.redis.info("server")
    if backend == "sqlite":
        assert _version(info) == (6, 2)
        assert "path" in hub.redis.connection_pool.connection_kwargs  # the unix socket of embedded_redis.py
    else:
        assert _version(info) >= (6, 2)


async def test_wrong_password_is_401_and_starts_one_window(client: httpx.AsyncClient, hub: Hub) -> None:
    """Was a 500 on 6.2 (EXPIRE … NX discarded the whole MULTI) and the limit never counted."""
    created = await register(client)
    for attempt in range(2):
        r = await client.post("/api/remote-auth/login", json={"email": created["email"], "password": "not the password"})
        assert r.status_code == 401, r.text
        assert r.json()["code"] == "invalid_credentials"
        key = ratelimit.PREFIX + f"email:{created['email']}"
        assert int(await hub.redis.get(key)) == attempt + 1
        ttl = await hub.redis.ttl(key)
        assert 0 < ttl <= hub.settings.login_window_seconds
        if attempt == 0:
            await hub.redis.expire(key, 100)  # a second failure must not restart the window
        else:
            assert ttl <= 100


async def test_ingest_lag_without_xinfo_lag_field(backend: str, database_url: str, tmp_path: Path) -> None:
    """/healthz `lag`: XINFO GROUPS has no `lag` before Redis 7; it must still count waiting entries."""
    from workers.health import ingest_health

    env = hub_env(tmp_path, backend, database_url, LOOMI_REDIS_URL=redis_url_for(backend, 8))  # its own db: it flushes
    hub = await Hub.open(load_settings(env))
    try:
        await hub.redis.flushdb()
        stream = keys.inbound_stream(1)
        await hub.redis.xgroup_create(stream, keys.INGEST_GROUP, id="0", mkstream=True)
        for i in range(3):
            await hub.redis.xadd(stream, {"e": str(i)})
        await hub.redis.xreadgroup(keys.INGEST_GROUP, "c1", {stream: ">"}, count=1)
        health = await ingest_health(hub)
        assert health["pending"] == 1 and health["lag"] == 2
    finally:
        await hub.redis.flushdb()
        await hub.close()


class OldRedis:
    """A loopback server speaking RESP that reports itself as Redis 6.0.9.

    Mocked because no Redis older than 6.2 exists on this machine; it answers INFO with the
    version and +OK to everything else, which is all the hub sends before checking.
    """

    def __init__(self) -> None:
        self.port = free_port()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readline()
                if not head:
                    return
                args = []
                for _ in range(int(head[1:])):
                    size = int((await reader.readline())[1:])
                    args.append((await reader.readexactly(size + 2))[:-2].decode().upper())
                if args and args[0] == "INFO":
                    body = b"# Server\r\nredis_version:6.0.9\r\nredis_mode:standalone\r\n"
                    writer.write(b"$%d\r\n%s\r\n" % (len(body), body))
                elif args and args[0] == "PING":
                    writer.write(b"+PONG\r\n")
                else:
                    writer.write(b"+OK\r\n")
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            return

    async def __aenter__(self) -> "OldRedis":
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()


async def test_serve_refuses_redis_older_than_6_2(tmp_path: Path) -> None:
    async with OldRedis() as old:
        env = {
            "PATH": os.environ["PATH"],
            "LOOMI_HOME": str(tmp_path / "home"),
            "LOOMI_PORT": str(free_port()),
            "LOOMI_REDIS_URL": f"redis://127.0.0.1:{old.port}/0",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loomi.cli", "serve", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode != 0
    assert b"listening on" not in out
    lines = err.decode().strip().splitlines()
    assert lines == ["loomi: Redis 6.0.9 is too old: the hub needs Redis 6.2 or newer (LOOMI_REDIS_URL)"], err.decode()
