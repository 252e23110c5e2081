"""X through the whole hub (API + worker + ingest) on SQLite and PostgreSQL: connect with OAuth 2
+ PKCE via the public routes, DMs and mentions stored once, the 2-hour access token refreshed by
one refresher at a time (X rotates refresh tokens: a second refresh with the same token fails),
the listener restarted on the new token, and a refused refresh ending in needs_reauth."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from store.ids import now_ms
from store.schema import accounts
from tests.e2e.harness import e2e_env, fresh_database, running_hub
from tests.fakes.x import FakeX
from tests.waiting import eventually
from workers.refresh import refresh_due

ME, ALICE = "1800000000000000001", "1800000000000000002"


async def test_x_connect_receive_refresh_and_reauth(backend: str, tmp_path: Path) -> None:
    async with FakeX(token_ttl=120) as fake, fresh_database(backend, tmp_path) as db:
        fake.add_user(ME, "loomi_person")
        fake.add_user(ALICE, "alice")
        env = e2e_env(backend, tmp_path, db, LOOMI_X_BASE_URL=fake.base_url, LOOMI_X_CLIENT_ID=fake.client_id,
                      LOOMI_X_CLIENT_SECRET=fake.client_secret, LOOMI_X_POLL_SECONDS="0.2")
        async with running_hub(env) as hub:
            headers = await hub.login()
            r = await hub.client.get("/api/integrations/x/oauth/start", headers={**headers, "Accept": "application/json"})
            params = {k: v[0] for k, v in parse_qs(urlparse(r.json()["url"]).query).items()}
            assert params["code_challenge_method"] == "S256" and "dm.read" in params["scope"].split(" ")
            fake.add_code("code-1", ME, params["redirect_uri"], params["code_challenge"])
            bad = await hub.client.get("/api/x/callback", params={"code": "wrong", "state": params["state"]})
            assert bad.status_code == 400
            r = await hub.client.get("/api/integrations/x/oauth/start", headers={**headers, "Accept": "application/json"})
            params = {k: v[0] for k, v in parse_qs(urlparse(r.json()["url"]).query).items()}
            fake.add_code("code-2", ME, params["redirect_uri"], params["code_challenge"])
            done = await hub.client.get("/api/x/callback", params={"code": "code-2", "state": params["state"]})
            assert done.status_code == 200, done.text
            account = done.json()["account"]
            assert account["platform"] == "x" and account["name"] == "@loomi_person"
            await eventually(lambda: hub.in_state(headers, "connected"), what="connected")

            fake.dm(ALICE, ME, "dm one")
            fake.mention(ALICE, "mention one", mentioned=[ME])
            got = await eventually(lambda: hub.at_least(headers, 2), what="dm and mention stored")
            assert sorted(m["text"] for m in got) == ["@loomi_person mention one", "dm one"]

            async with hub.hub.engine.connect() as conn:
                before = (await conn.execute(accounts.select().where(accounts.c.id == account["id"]))).mappings().one()
            assert before["credentials_expire_at"] < now_ms() + 121_000  # within refresh_due's 5-minute horizon
            assert "xat-" not in str(dict(before)) and "xrt-" not in str(dict(before))  # sealed by the vault

            results = await asyncio.gather(refresh_due(hub.hub, "a"), refresh_due(hub.hub, "b"))
            assert sorted(results) == [0, 1] and fake.refreshes == 1  # one refresher; the other saw the lock
            async with hub.hub.engine.connect() as conn:
                after = (await conn.execute(accounts.select().where(accounts.c.id == account["id"]))).mappings().one()
            assert after["credentials"] != before["credentials"]

            fake.dm(ALICE, ME, "after refresh")
            await eventually(lambda: hub.with_text(headers, "after refresh"), what="message after refresh")
            assert len(fake.issued) == 2 and fake.bearers[-1] == fake.issued[-1]  # restarted on the new token

            stored = [m["text"] for m in await hub.messages(headers)]
            assert sorted(stored) == ["@loomi_person mention one", "after refresh", "dm one"]  # nothing twice

            fake._refresh.clear()  # X no longer honours the refresh token (revoked app access)
            assert await refresh_due(hub.hub, "c") == 0
            await eventually(lambda: hub.in_state(headers, "needs_reauth"), what="needs_reauth after a refused refresh")
