"""The principal cache (api/auth.py): a token's principal is remembered for a few seconds, and a
logout, password or profile change is still seen at once, by this process and by another
`loomi serve` process sharing the database and Redis. Both databases."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, AsyncIterator

import httpx
import pytest

from api.auth import principal_from_token
from loomi.hub import Hub
from tests.conftest import register

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def other_process(hub: Hub, tmp_path: Path) -> AsyncIterator[str]:
    """A second `loomi serve` on the same database and Redis (no worker): its URL."""
    settings = hub.settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOMI_")}
    env.update({
        "PYTHONPATH": str(ROOT), "LOOMI_HOME": str(tmp_path), "LOOMI_DATABASE_URL": settings.database,
        "LOOMI_REDIS_URL": hub.redis_url, "LOOMI_SECRET_KEY": settings.secret_key.get_secret_value() if settings.secret_key else "",
        "LOOMI_IN_PROCESS_WORKER": "false", "LOOMI_AI_DISCOVER": "false", "LOOMI_LOG_LEVEL": "warning",
    })
    process = subprocess.Popen([sys.executable, "-m", "loomi.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        url = ""
        for _ in range(20):
            line = await asyncio.to_thread(process.stdout.readline)
            if "listening on " in line:
                url = line.split("listening on ", 1)[1].strip()
                break
        assert url, "the second process did not start"
        yield url
    finally:
        process.terminate()
        await asyncio.to_thread(process.wait, 30)


async def wait_live(hub: Hub, seconds: float = 10.0) -> Any:
    cache = hub.extras["auth.principals"]
    for _ in range(int(seconds / 0.02)):
        if cache.live:
            return cache
        await asyncio.sleep(0.02)
    raise AssertionError("the principal cache never subscribed to invalidations")


async def test_cached_principal_is_used_and_a_lost_subscription_bypasses_it(hub: Hub, client: httpx.AsyncClient, monkeypatch: Any) -> None:
    import api.auth

    me = await register(client)
    assert (await client.get("/api/remote-auth/user", headers=me["headers"])).status_code == 200
    cache = await wait_live(hub)
    assert (await client.get("/api/remote-auth/user", headers=me["headers"])).status_code == 200
    assert me["token"] in cache.entries

    calls = 0
    real = api.auth.load_principal

    async def counting(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        return await real(*args)

    monkeypatch.setattr(api.auth, "load_principal", counting)
    assert (await principal_from_token(hub, me["token"])) is not None
    assert calls == 0  # a hit: no database round trip, no Redis round trip

    # the subscription dies (Redis restarted, network cut): nothing cached is trusted any more
    await hub.redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    for _ in range(200):
        if not cache.live:
            break
        await asyncio.sleep(0.01)
    assert not cache.live and cache.entries == {}
    assert (await principal_from_token(hub, me["token"])) is not None and calls == 1  # the database decides
    await wait_live(hub)  # and it comes back by itself


async def test_revocations_are_immediate_in_this_process(hub: Hub, client: httpx.AsyncClient) -> None:
    me = await register(client)
    for _ in range(2):
        assert (await client.get("/api/remote-auth/user", headers=me["headers"])).status_code == 200
    r = await client.put("/api/remote-auth/user", headers=me["headers"], json={"name": "Renamed"})
    assert r.status_code == 200
    assert (await client.get("/api/remote-auth/user", headers=me["headers"])).json()["name"] == "Renamed"
    r = await client.put("/api/user/password", headers=me["headers"],
                         json={"currentPassword": me["password"], "newPassword": "another long password"})
    assert r.status_code == 200, r.text
    assert (await client.get("/api/remote-auth/user", headers=me["headers"])).status_code == 401  # older token: gone now
    fresh = {"Authorization": f"Bearer {r.json()['token']}"}
    assert (await client.get("/api/remote-auth/user", headers=fresh)).status_code == 200


async def test_logout_and_password_change_reach_another_process_at_once(
    hub: Hub, client: httpx.AsyncClient, other_process: str
) -> None:
    async with httpx.AsyncClient(base_url=other_process, timeout=30) as other:
        me, them = await register(client), await register(client)
        # both processes have cached both principals (the first request also starts the subscription)
        for _ in range(2):
            for http in (client, other):
                for who in (me, them):
                    assert (await http.get("/api/remote-auth/user", headers=who["headers"])).status_code == 200
            await asyncio.sleep(0.3)
        assert me["token"] in hub.extras["auth.principals"].entries

        # logout in this process -> the other refuses the token on its very next request
        r = await client.post("/api/auth/clear-auth-cookie", cookies={"loomi_session": me["token"]},
                              headers={"content-type": "application/json"}, content=b"{}")
        assert r.status_code == 200
        assert (await other.get("/api/remote-auth/user", headers=me["headers"])).status_code == 401
        assert (await client.get("/api/remote-auth/user", headers=me["headers"])).status_code == 401
        assert (await other.get("/api/remote-auth/user", headers=them["headers"])).status_code == 200  # others unaffected

        # password change in the other process -> refused here at once
        r = await other.put("/api/user/password", headers=them["headers"],
                            json={"currentPassword": them["password"], "newPassword": "a brand new password"})
        assert r.status_code == 200, r.text
        assert (await client.get("/api/remote-auth/user", headers=them["headers"])).status_code == 401
        # profile change there is seen here at once
        new = {"Authorization": f"Bearer {r.json()['token']}"}
        assert (await client.get("/api/remote-auth/user", headers=new)).status_code == 200
        assert (await other.put("/api/remote-auth/user", headers=new, json={"name": "Elsewhere"})).status_code == 200
        assert (await client.get("/api/remote-auth/user", headers=new)).json()["name"] == "Elsewhere"
