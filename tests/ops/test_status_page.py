"""`/status` (issue 12 item 5): the signed-in person's accounts only, their listener state and
ingest counts; a single-use link for a browser without the cookie. Both backends, real app."""

from __future__ import annotations

from typing import Any

import httpx
from bs4 import BeautifulSoup

from loomi.hub import Hub
from tests.conftest import register
from tests.ops.helpers import add_account, ingest_all, queue_updates
from workers import keys, metrics


def accounts_on(page: str) -> dict[str, dict[str, str]]:
    soup = BeautifulSoup(page, "html.parser")
    return {
        row["data-account-id"]: {"state": row["data-state"], "text": row.get_text(" ", strip=True),
                                 "last_hour": row.select_one("[data-last-hour]")["data-last-hour"]}
        for row in soup.select("tr.account")
    }


async def test_each_person_sees_only_their_accounts(hub: Hub, client: httpx.AsyncClient) -> None:
    alice, bob = await register(client), await register(client)
    mine = await add_account(hub, alice["user"]["id"], "Alice <Team>")
    theirs = await add_account(hub, bob["user"]["id"], "Bob Private Workspace")
    await queue_updates(hub, mine, 4)
    await queue_updates(hub, theirs, 2)
    await ingest_all(hub)
    await hub.redis.hset(keys.status(mine), mapping={"state": "connected", "worker": "host-a:1", "lag_ms": 1500})

    page = await client.get("/status", headers=alice["headers"])
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    shown = accounts_on(page.text)
    assert list(shown) == [mine]
    assert shown[mine]["state"] == "connected" and shown[mine]["last_hour"] == "4"
    assert "host-a:1" in shown[mine]["text"] and "1.5 s" in shown[mine]["text"]
    assert "never" not in shown[mine]["text"]  # ingest stamped it
    assert "Alice &lt;Team&gt;" in page.text and "<Team>" not in page.text  # escaped, never markup
    assert theirs not in page.text and "Bob Private Workspace" not in page.text
    soup = BeautifulSoup(page.text, "html.parser")
    assert soup.select_one("#messages-last-hour").text == "4"
    bars = soup.select("#ingest-chart rect.bar")
    assert len(bars) == 60 and sum(int(b["data-count"]) for b in bars) == 4
    buckets = [key async for key in hub.redis.scan_iter(match=metrics.MINUTE_PREFIX + "*")]
    ttls = [await hub.redis.ttl(key) for key in buckets]
    assert ttls and all(0 < ttl <= metrics.MINUTE_KEEP_SECONDS for ttl in ttls)  # the buckets go away by themselves
    assert not soup.select("script") and not soup.select("link[rel=stylesheet]")

    other = await client.get("/status", headers=bob["headers"])
    assert list(accounts_on(other.text)) == [theirs] and mine not in other.text

    refused = await client.get("/status")
    assert refused.status_code == 401 and refused.json()["code"] == "unauthorized"


async def test_session_cookie_and_single_use_link(hub: Hub, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    account = await add_account(hub, user["user"]["id"], "Cookie Team")
    login = await client.post("/api/remote-auth/login", json={"email": user["email"], "password": user["password"]})
    assert login.status_code == 200 and client.cookies.get("loomi_session")
    by_cookie = await client.get("/status")
    assert by_cookie.status_code == 200 and list(accounts_on(by_cookie.text)) == [account]
    client.cookies.clear()

    assert (await client.post("/api/status/link")).status_code == 401
    link = (await client.post("/api/status/link", headers=user["headers"])).json()
    assert link["url"].startswith("/status?code=") and link["expiresIn"] == 60
    first = await client.get(link["url"])
    assert first.status_code == 200 and list(accounts_on(first.text)) == [account]
    assert 'http-equiv="refresh"' not in first.text  # a refresh would spend a used code
    again = await client.get(link["url"])
    assert again.status_code == 401 and "used already" in again.json()["cause"]
    assert (await client.get("/status?code=made-up")).status_code == 401
