"""`/metrics` (issue 12 item 5): the numbers move with real ingest on both backends, they are
aggregates only, cluster facts are cached, and only who may read them can.

Real parts: the app on a socket, Redis (embedded 6.2 / system), SQLite and PostgreSQL, the
Telegram connector's normalize behind the real stream and Ingestor, prometheus_client's own
parser for the exposition text.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.requests import Request

from api.errors import ApiError
from api.routes.metrics import check_access
from loomi.hub import Hub
from store.ledger import add_entries, entry
from workers import keys, metrics
from workers.metrics import cluster_facts
from connectors.base import AccountSpec
from store import accounts as account_store
from store import messages as message_store
from tests.e2e.harness import e2e_env, fresh_database, running_hub
from tests.ops.helpers import add_account, ingest_all, queue_updates, scrape, value
from tests.waiting import eventually
from workers.outbound import deliver
from workers.supervisor import Supervisor


def depth(scraped: dict) -> float:
    return sum(value(scraped, "loomi_stream_depth", shard=str(i)) for i in range(keys.shard_count()))


async def test_counters_move_after_ingest(hub: Hub, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    user_id = user["user"]["id"]
    account_id = await add_account(hub, user_id, "Ops Secret Team")
    facts = cluster_facts(hub)
    facts.invalidate()
    before, _ = await scrape(client)

    assert await queue_updates(hub, account_id, 5) == 5
    await metrics.count(hub.redis, "dead_letter", "not-a-platform")  # an untrusted label becomes "unknown"
    # a delivery for an account that does not exist: dead-lettered by ingest, counted by platform
    await queue_updates(hub, "acct_ops_missing", 1)
    await hub.redis.hset(keys.status(account_id), mapping={"state": "backoff", "worker": "w-ops"})
    async with hub.engine.begin() as conn:
        await add_entries(conn, [
            entry(user_id, source="usage", description="chat · ops-model via ops-provider · 10+5 tokens",
                  model="ops-model", input_tokens=10, output_tokens=5, delta=-0.25)
            for _ in range(2)
        ])

    facts.cache_seconds = 3600
    try:
        cached, _ = await scrape(client)  # within the cache time: nothing read again
        assert depth(cached) == depth(before)
        facts.invalidate()
        queued, _ = await scrape(client)
        assert depth(queued) == depth(before) + 6  # summed over every shard (one series per shard)
        shard = str(keys.shard_of(account_id))
        assert value(queued, "loomi_stream_depth", shard=shard) >= 5
        assert value(queued, "loomi_stream_oldest_age_seconds", shard=shard) >= 0
        assert value(queued, "loomi_listeners", platform="telegram", state="backoff") == (
            value(before, "loomi_listeners", platform="telegram", state="backoff") + 1
        )

        assert await ingest_all(hub) >= 6
        facts.invalidate()
        after, text = await scrape(client)
    finally:
        facts.cache_seconds = hub.settings.metrics_cache_seconds
        facts.invalidate()

    assert value(after, "loomi_ingested_messages_total", platform="telegram") == (
        value(before, "loomi_ingested_messages_total", platform="telegram") + 5
    )
    assert value(after, "loomi_dead_lettered_events_total", platform="telegram") == (
        value(before, "loomi_dead_lettered_events_total", platform="telegram") + 1
    )
    assert value(after, "loomi_dead_lettered_events_total", platform="unknown") == (
        value(before, "loomi_dead_lettered_events_total", platform="unknown") + 1
    )
    assert value(after, "loomi_dead_letters") == value(before, "loomi_dead_letters") + 1
    assert value(after, "loomi_stream_depth", shard="0") == 0
    assert value(after, "loomi_ingest_lag_seconds", platform="telegram") >= 0
    assert ("loomi_ingest_lag_seconds", frozenset({("platform", "telegram")})) in after
    ai = {"provider": "ops-provider", "model": "ops-model"}
    assert value(after, "loomi_ai_requests_total", **ai) == value(before, "loomi_ai_requests_total", **ai) + 2
    assert value(after, "loomi_ai_tokens_total", direction="input", **ai) == value(before, "loomi_ai_tokens_total", direction="input", **ai) + 20
    assert value(after, "loomi_ai_tokens_total", direction="output", **ai) == value(before, "loomi_ai_tokens_total", direction="output", **ai) + 10
    assert value(after, "loomi_ai_cost_usd_total", **ai) == pytest.approx(value(before, "loomi_ai_cost_usd_total", **ai) + 0.5)
    assert value(after, "process_resident_memory_bytes") > 0  # this process's own, from the library
    assert ("loomi_workers_alive", frozenset()) in after
    # aggregates only: nobody's account, name, person or text
    for private in (account_id, "Ops Secret Team", user_id, user["email"], "ops message"):
        assert private not in text


async def test_open_on_loopback_only_when_no_token(hub: Hub, client: httpx.AsyncClient) -> None:
    assert hub.settings.metrics_token is None
    assert (await client.get("/metrics")).status_code == 200
    proxied = await client.get("/metrics", headers={"X-Forwarded-For": "203.0.113.9"})
    assert proxied.status_code == 403
    body = proxied.json()
    assert body["code"] == "forbidden" and "LOOMI_METRICS_TOKEN" in body["cause"]
    # a client on another machine (a real Request over a scope; no socket can come from elsewhere here)
    remote = Request({"type": "http", "method": "GET", "path": "/metrics", "headers": [], "client": ("203.0.113.5", 40000), "app": None})
    with pytest.raises(ApiError) as refused:
        check_access(remote, hub)
    assert refused.value.status == 403
    local = Request({"type": "http", "method": "GET", "path": "/metrics", "headers": [], "client": ("::1", 40000), "app": None})
    check_access(local, hub)  # IPv6 loopback is loopback too


async def test_bearer_token_when_configured(hub: Hub, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    hub.settings.metrics_token = SecretStr("scrape-me-7f3a")
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}, user["headers"]):  # a person's token is not the scraper's
            refused = await client.get("/metrics", headers=headers)
            assert refused.status_code == 401, headers
            assert refused.json()["code"] == "unauthorized"
            assert "scrape-me" not in refused.text
        samples, _ = await scrape(client, Authorization="Bearer scrape-me-7f3a")
        assert ("loomi_dead_letters", frozenset()) in samples
        # with a token even a proxied scrape is fine: the token is the proof
        samples, _ = await scrape(client, Authorization="Bearer scrape-me-7f3a", **{"X-Forwarded-For": "203.0.113.9"})
        assert samples
    finally:
        hub.settings.metrics_token = None


async def test_listener_and_send_failures_are_counted(backend: str, tmp_path: Path) -> None:
    """A listener that fails (a real Supervisor running the Telegram connector, which refuses a
    mode it does not know before any network call) and a send that fails for good (the real
    outbound path, to an account without credentials) both show up by platform."""
    async with fresh_database(backend, tmp_path) as db:
        async with running_hub(e2e_env(backend, tmp_path, db), worker=False) as running:
            hub = running.hub
            me = (await running.client.get("/api/remote-auth/user", headers=await running.login())).json()
            spec = AccountSpec(external_id="4242", name="pigeon bot", credentials={"bot_token": "4242:fake"}, settings={"mode": "carrier-pigeon"})
            async with hub.engine.begin() as conn:
                failing = (await account_store.upsert_account(conn, hub.vault, me["id"], "telegram", spec))["id"]
            stop = asyncio.Event()
            supervisor = Supervisor(hub, "w-metrics", scan_interval=0.1, lease_ms=2000, heartbeat=0.5)
            task = asyncio.create_task(supervisor.run(stop))
            try:
                async def failed() -> bool:
                    counted = (await metrics.totals(hub.redis))["listener_failure"].get("telegram", 0)
                    state = await hub.redis.hget(keys.status(failing), "state")
                    return counted >= 1 and state == b"backoff"

                assert await eventually(failed, timeout=20)
                during, _ = await scrape(running.client)
            finally:
                stop.set()
                await task
            assert value(during, "loomi_listener_failures_total", platform="telegram") >= 1
            assert value(during, "loomi_listeners", platform="telegram", state="backoff") == 1
            assert value(during, "loomi_workers_alive") == 1

            orphan = await add_account(hub, me["id"], "no credentials")
            async with hub.engine.begin() as conn:
                row = await message_store.insert_outbound(
                    conn, user_id=me["id"], account_id=orphan, platform="telegram", chat_id="-100", text="hello",
                    reply_to_id=None, thread_id=None, idempotency_key=None,
                )
            assert (await deliver(hub, row["id"]))["status"] == "failed"
            cluster_facts(hub).invalidate()
            after, _ = await scrape(running.client)
            assert value(after, "loomi_send_failures_total", platform="telegram") == 1
