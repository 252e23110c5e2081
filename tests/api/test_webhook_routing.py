"""Webhook routes answer from a per-process account cache (api/webhook_accounts.py): an event
reaches only the accounts it names, a cached account follows disconnects and refreshed
credentials (from this process at once, from another through `keys.ACCOUNTS_VERSION`), and
forged deliveries are refused however warm the cache is.

The hub runs without a worker, so what a delivery queued stays in the inbound stream(s) and is
read back from Redis: which account each envelope is for is what ingest stores it under.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from api.webhook_accounts import WebhookAccounts, webhook_accounts
from store import accounts as account_store
from store.model import AccountSpec
from tests.e2e.harness import RunningHub, e2e_env, fresh_database, running_hub
from tests.waiting import eventually
from workers.stream import decode
from workers.supervisor import accounts_changed

SIGNING_SECRET = "routing-signing-secret"


async def _user(hub: RunningHub) -> tuple[str, dict[str, str]]:
    r = await hub.client.post("/api/remote-auth/register",
                              json={"email": f"r{secrets.token_hex(4)}@example.com", "password": "routing password 1"})
    assert r.status_code == 201, r.text
    hub.client.cookies.clear()
    headers = {"Authorization": f"Bearer {r.json()['token']}"}
    me = (await hub.client.get("/api/remote-auth/user", headers=headers)).json()
    return (me.get("user") or me)["id"], headers


async def _account(hub: RunningHub, user_id: str, platform: str, external_id: str, credentials: dict[str, Any],
                   settings: dict[str, Any] | None = None) -> str:
    async with hub.hub.engine.begin() as conn:
        row = await account_store.upsert_account(conn, hub.hub.vault, user_id, platform,
                                                 AccountSpec(external_id, f"{platform} {external_id}", credentials, settings or {}))
    await accounts_changed(hub.hub)
    return row["id"]


async def _queued(hub: RunningHub) -> list[tuple[str, str]]:
    """(account id, delivery id) of every envelope in the inbound stream(s), however sharded."""
    redis = hub.hub.redis
    out: list[tuple[str, str]] = []
    async for key in redis.scan_iter(match="loomi:*", _type="stream"):
        for _, fields in await redis.xrange(key):
            envelope = decode(fields[b"e"])
            out.append((envelope.account_id, envelope.delivery_id))
    return sorted(out)


def _slack(team_id: str, event_id: str, secret: str = SIGNING_SECRET) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"type": "event_callback", "team_id": team_id, "event_id": event_id,
                       "event": {"type": "message", "channel": "C1", "user": "U1", "text": "hi", "ts": f"{time.time():.6f}"}}).encode()
    stamp = str(int(time.time()))
    sig = "v0=" + hmac.new(secret.encode(), f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return body, {"content-type": "application/json", "x-slack-request-timestamp": stamp, "x-slack-signature": sig}


async def _telegram(hub: RunningHub, account_id: str, secret: str, update_id: int) -> int:
    update = {"update_id": update_id, "message": {"message_id": update_id, "date": int(time.time()), "text": "hi",
                                                  "chat": {"id": 42, "type": "private", "first_name": "Ann"}}}
    r = await hub.client.post(f"/api/telegram/webhook/{account_id}", json=update,
                              headers={"X-Telegram-Bot-Api-Secret-Token": secret})
    return r.status_code


def _bot(secret: str) -> dict[str, Any]:
    return {"bot_token": f"{secrets.randbelow(10**9)}:AA{secrets.token_urlsafe(24)}", "webhook_secret": secret, "bot_id": 1}


@pytest.fixture
async def hub(backend: str, tmp_path: Path):
    async with fresh_database(backend, tmp_path) as db:
        # the Telegram Bot API of a disconnect (deleteWebhook) is refused at once, never looked up
        env = e2e_env(backend, tmp_path, db, LOOMI_SLACK_SIGNING_SECRET=SIGNING_SECRET, LOOMI_TELEGRAM_BASE_URL="http://127.0.0.1:9")
        async with running_hub(env, worker=False) as running:
            yield running


async def test_a_slack_event_reaches_only_the_accounts_of_its_team(hub: RunningHub) -> None:
    alice, _ = await _user(hub)
    bob, _ = await _user(hub)
    carol, _ = await _user(hub)
    a = await _account(hub, alice, "slack", "TEAMA", {"access_token": "xoxb-a"})
    b = await _account(hub, bob, "slack", "TEAMB", {"access_token": "xoxb-b"})
    shared = await _account(hub, carol, "slack", "TEAMA", {"access_token": "xoxb-c"})  # Carol installed in team A too
    gone = await _account(hub, bob, "slack", "TEAMA", {"access_token": "xoxb-gone"})
    async with hub.hub.engine.begin() as conn:
        await account_store.disconnect(conn, gone)
    await accounts_changed(hub.hub)
    # same external id on another platform: never routed a Slack event
    await _account(hub, alice, "telegram", "TEAMA", _bot("not-slack"))

    for team, event in (("TEAMA", "EvA"), ("TEAMB", "EvB"), ("TEAMZ", "EvZ")):
        body, headers = _slack(team, event)
        r = await hub.client.post("/api/slack/events", content=body, headers=headers)
        assert r.status_code == 200, r.text
    assert await _queued(hub) == sorted([(a, "EvA"), (shared, "EvA"), (b, "EvB")])


async def test_routing_reads_the_platform_external_id_index(hub: RunningHub) -> None:
    """ids_by_external_id is served by ix_accounts_platform_external, not a walk of every account."""
    from sqlalchemy.dialects import postgresql, sqlite

    from store.schema import accounts

    query = sa.select(accounts.c.id, accounts.c.external_id).where(
        accounts.c.platform == "slack", accounts.c.external_id.in_(["TEAMA"]), accounts.c.enabled.is_(True),
        accounts.c.credentials.is_not(None))
    engine = hub.hub.engine
    async with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            sql = str(query.compile(dialect=sqlite.dialect(), compile_kwargs={"literal_binds": True}))
            plan = " ".join(str(row) for row in (await conn.execute(sa.text("EXPLAIN QUERY PLAN " + sql))).all())
        else:
            sql = str(query.compile(dialect=postgresql.dialect(), compile_kwargs={"literal_binds": True}))
            await conn.execute(sa.text("SET LOCAL enable_seqscan = off"))  # a tiny table: ask whether the index can serve it
            plan = " ".join(row[0] for row in (await conn.execute(sa.text("EXPLAIN " + sql))).all())
    assert "ix_accounts_platform_external" in plan, plan
    # and the function answers that query: ids only, enabled accounts with credentials
    user_id, _ = await _user(hub)
    kept = await _account(hub, user_id, "slack", "TEAMA", {"access_token": "xoxb-kept"})
    async with engine.connect() as conn:
        assert await account_store.ids_by_external_id(conn, "slack", ["TEAMA", "TEAMQ"]) == [(kept, "TEAMA")]
        assert await account_store.ids_by_external_id(conn, "telegram", ["TEAMA"]) == []


async def test_a_disconnected_account_is_refused_at_once_though_it_was_cached(hub: RunningHub) -> None:
    user_id, headers = await _user(hub)
    account = await _account(hub, user_id, "telegram", "1001", _bot("secret-one"), {"mode": "webhook"})
    assert await _telegram(hub, account, "secret-one", 1) == 200  # cached now
    assert (await hub.client.delete(f"/api/integrations/accounts/{account}", headers=headers)).status_code == 200
    assert await _telegram(hub, account, "secret-one", 2) == 404
    assert await _queued(hub) == [(account, "1")]


async def test_a_change_made_by_another_process_reaches_the_cache(hub: RunningHub) -> None:
    """Credentials refreshed and an account disconnected elsewhere (workers/refresh.py, another API
    process): only `keys.ACCOUNTS_VERSION` moves here, and the cache follows within its check."""
    user_id, _ = await _user(hub)
    account = await _account(hub, user_id, "telegram", "1002", _bot("old-secret"), {"mode": "webhook"})
    assert await _telegram(hub, account, "old-secret", 1) == 200
    async with hub.hub.engine.begin() as conn:  # as refresh_due does: new credentials, then the bump
        await account_store.save_credentials(conn, hub.hub.vault, account, _bot("new-secret"), None)
    await accounts_changed(hub.hub)
    started = time.monotonic()
    await eventually(lambda: _accepts(hub, account, "new-secret"), timeout=10, what="the refreshed secret")
    assert time.monotonic() - started < WebhookAccounts.CHECK_SECONDS + 2
    assert await _telegram(hub, account, "old-secret", 3) == 401

    async with hub.hub.engine.begin() as conn:
        await account_store.disconnect(conn, account)
    await accounts_changed(hub.hub)
    await eventually(lambda: _refused(hub, account, "new-secret", 404), timeout=10, what="the disconnect")


async def _accepts(hub: RunningHub, account: str, secret: str) -> bool:
    return await _telegram(hub, account, secret, secrets.randbelow(10**6) + 10) == 200


async def _refused(hub: RunningHub, account: str, secret: str, status: int) -> bool:
    return await _telegram(hub, account, secret, secrets.randbelow(10**6) + 10) == status


async def test_an_absent_account_is_found_once_it_is_connected_again(hub: RunningHub) -> None:
    """A disconnected (or bogus) id is remembered as absent, so a stream of deliveries to it makes
    no query each, but only until an account changes somewhere."""
    assert await _telegram(hub, "acct_doesnotexist", "x", 1) == 404
    user_id, _ = await _user(hub)
    account = await _account(hub, user_id, "telegram", "1003", _bot("first"), {"mode": "webhook"})
    async with hub.hub.engine.begin() as conn:
        await account_store.disconnect(conn, account)
    await accounts_changed(hub.hub)
    await eventually(lambda: _refused(hub, account, "first", 404), timeout=10, what="absence cached")
    again = await _account(hub, user_id, "telegram", "1003", _bot("second"), {"mode": "webhook"})  # reconnect: same row
    assert again == account
    await eventually(lambda: _accepts(hub, account, "second"), timeout=10, what="the reconnected account")
    # an account id of another platform is not this platform's account
    r = await hub.client.post(f"/api/whatsapp/webhook/{account}", content=b"{}", headers={"content-type": "application/json"})
    assert r.status_code == 404


async def test_a_team_that_had_no_account_is_routed_once_one_connects(hub: RunningHub) -> None:
    body, headers = _slack("TEAMNEW", "EvBefore")
    assert (await hub.client.post("/api/slack/events", content=body, headers=headers)).status_code == 200
    user_id, _ = await _user(hub)
    account = await _account(hub, user_id, "slack", "TEAMNEW", {"access_token": "xoxb-new"})

    async def routed() -> bool:
        body, headers = _slack("TEAMNEW", "Ev" + secrets.token_hex(4))
        assert (await hub.client.post("/api/slack/events", content=body, headers=headers)).status_code == 200
        return bool(await _queued(hub))

    await eventually(routed, timeout=10, what="events for the new team queued")
    assert {a for a, _ in await _queued(hub)} == {account}


async def test_forged_deliveries_are_refused_with_a_warm_cache(hub: RunningHub) -> None:
    user_id, _ = await _user(hub)
    tg = await _account(hub, user_id, "telegram", "1004", _bot("right"), {"mode": "webhook"})
    slack = await _account(hub, user_id, "slack", "TEAMF", {"access_token": "xoxb-f"})
    assert await _telegram(hub, tg, "right", 1) == 200
    body, headers = _slack("TEAMF", "EvGood")
    assert (await hub.client.post("/api/slack/events", content=body, headers=headers)).status_code == 200
    assert await _telegram(hub, tg, "wrong", 2) == 401
    assert await _telegram(hub, tg, "", 3) == 401
    body, headers = _slack("TEAMF", "EvForged", secret="not-the-secret")
    r = await hub.client.post("/api/slack/events", content=body, headers=headers)
    assert r.status_code == 401 and r.json()["code"] == "webhook_rejected"
    assert await _queued(hub) == sorted([(tg, "1"), (slack, "EvGood")])


async def test_a_burst_for_a_cold_account_reads_it_once(hub: RunningHub, monkeypatch: pytest.MonkeyPatch) -> None:
    user_id, _ = await _user(hub)
    account = await _account(hub, user_id, "telegram", "1005", _bot("burst"), {"mode": "webhook"})
    webhook_accounts(hub.hub).forget()
    reads: list[str] = []
    real = account_store.get_row

    async def counted(conn: Any, account_id: str) -> Any:
        reads.append(account_id)
        return await real(conn, account_id)

    monkeypatch.setattr(account_store, "get_row", counted)
    codes = await asyncio.gather(*(_telegram(hub, account, "burst", i) for i in range(1, 41)))
    assert codes == [200] * 40
    assert reads == [account]
    assert len(await _queued(hub)) == 40
