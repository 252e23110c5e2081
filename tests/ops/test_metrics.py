"""`/metrics` (issue 12 item 5): the numbers move with real ingest on both backends, they are
aggregates only, cluster facts are cached, and only who may read them can.

Real parts: the app on a socket, Redis (embedded 6.2 / system), SQLite and PostgreSQL, the
Telegram connector's normalize behind the real stream and Ingestor, prometheus_client's own
parser for the exposition text.
"""

from __future__ import annotations

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
from tests.ops.helpers import add_account, ingest_all, queue_updates, scrape, value


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
        assert value(cached, "loomi_stream_depth", shard="0") == value(before, "loomi_stream_depth", shard="0")
        facts.invalidate()
        queued, _ = await scrape(client)
        assert value(queued, "loomi_stream_depth", shard="0") == value(before, "loomi_stream_depth", shard="0") + 6
        assert value(queued, "loomi_stream_oldest_age_seconds", shard="0") >= 0
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
