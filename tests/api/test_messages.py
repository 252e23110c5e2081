"""Messages API over HTTP on both databases: filters, paging, sync, check, raw, isolation."""

from __future__ import annotations

import httpx
import pytest

from connectors.base import AccountSpec, Change, ChangeKind, ChatType, Message
from store.accounts import upsert_account
from store.messages import Owned, apply_changes


async def _seed(hub, user: dict, n: int = 30, platform: str = "slack") -> str:
    async with hub.engine.begin() as conn:
        account = await upsert_account(
            conn, hub.vault, user["user"]["id"], platform, AccountSpec(external_id=f"X-{user['user']['id']}", name="acct", credentials={"t": "secret"})
        )
        changes = [
            Owned(
                user["user"]["id"],
                account["id"],
                platform,
                Change(
                    ChangeKind.UPSERT,
                    f"C{i % 3}",
                    f"{i}",
                    Message(
                        chat_id=f"C{i % 3}",
                        native_id=f"{i}",
                        sent_at=1_700_000_000_000 + i * 1000,
                        text=f"message number {i}" + (" about pizza" if i % 5 == 0 else ""),
                        sender_id=f"U{i % 2}",
                        sender_name="Alice" if i % 2 else "Bob",
                        chat_type=ChatType.CHANNEL,
                    ),
                ),
                {"n": i},
            )
            for i in range(n)
        ]
        await apply_changes(conn, changes)
    return account["id"]


async def test_list_pages_filters_and_search(client: httpx.AsyncClient, hub, user: dict) -> None:
    account_id = await _seed(hub, user)
    seen, cursor = [], None
    while True:
        params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/messages", params=params, headers=user["headers"])).json()
        seen += page["messages"]
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert len(seen) == 30 and len({m["id"] for m in seen}) == 30
    times = [m["timestamp"] for m in seen]
    assert times == sorted(times, reverse=True)

    r = await client.get("/api/messages", params={"chatId": "C1", "senderId": "U1", "accountId": account_id}, headers=user["headers"])
    assert r.status_code == 200 and r.json()["messages"]
    assert all(m["chatId"] == "C1" and m["senderId"] == "U1" for m in r.json()["messages"])
    r = await client.get("/api/messages", params={"q": "pizza", "platform": "slack"}, headers=user["headers"])
    assert sorted(int(m["nativeId"]) for m in r.json()["messages"]) == [0, 5, 10, 15, 20, 25]
    r = await client.get(
        "/api/messages",
        params={"since": "2023-11-14T22:13:30Z", "until": 1_700_000_000_000 + 25_000},
        headers=user["headers"],
    )
    assert sorted(int(m["nativeId"]) for m in r.json()["messages"]) == list(range(10, 25))
    # openloomi's names for the same filters
    r = await client.get("/api/messages", params={"botId": account_id, "channel": "C2", "keywords": "number"}, headers=user["headers"])
    assert r.json()["messages"] and all(m["chatId"] == "C2" for m in r.json()["messages"])


@pytest.mark.parametrize(
    "params,code",
    [({"limit": 0}, "invalid_input"), ({"limit": 501}, "invalid_input"), ({"since": "yesterday"}, "invalid_input"), ({"cursor": "!!!"}, "invalid_cursor")],
)
async def test_list_bad_input(client: httpx.AsyncClient, user: dict, params: dict, code: str) -> None:
    r = await client.get("/api/messages", params=params, headers=user["headers"])
    assert r.status_code == 400 and r.json()["code"] == code


async def test_users_never_see_each_others_messages(client: httpx.AsyncClient, hub, user: dict) -> None:
    from tests.conftest import register

    other = await register(client)
    await _seed(hub, other, 5)
    mine = (await client.get("/api/messages", headers=user["headers"])).json()["messages"]
    assert mine == []
    theirs = (await client.get("/api/messages", headers=other["headers"])).json()["messages"]
    assert len(theirs) == 5
    r = await client.get("/api/messages/raw", params={"id": theirs[0]["id"]}, headers=user["headers"])
    assert r.status_code == 404
    r = await client.get("/api/messages/check", params={"id": theirs[0]["id"]}, headers=user["headers"])
    assert r.status_code == 404
    sync = (await client.get("/api/messages/sync", headers=user["headers"])).json()
    assert sync["messages"] == []
    # sending through someone else's account is refused and stores nothing
    r = await client.post("/api/messages", headers=user["headers"], json={"accountId": theirs[0]["accountId"], "chatId": "C1", "text": "hi"})
    assert r.status_code == 404 and r.json()["code"] == "account_not_found"


async def test_sync_get_and_post(client: httpx.AsyncClient, hub, user: dict) -> None:
    await _seed(hub, user, 12)
    first = (await client.get("/api/messages/sync", params={"limit": 5}, headers=user["headers"])).json()
    assert len(first["messages"]) == 5 and first["hasMore"] is True
    rest = (await client.post("/api/messages/sync", json={"cursor": first["cursor"], "limit": 100}, headers=user["headers"])).json()
    assert len(rest["messages"]) == 7 and rest["hasMore"] is False
    again = (await client.get("/api/messages/sync", params={"cursor": rest["cursor"]}, headers=user["headers"])).json()
    assert again["messages"] == [] and again["cursor"] == rest["cursor"]
    r = await client.post("/api/messages/sync", content=b"[1]", headers=user["headers"])
    assert r.status_code == 400


async def test_check_stats_and_raw(client: httpx.AsyncClient, hub, user: dict, backend: str) -> None:
    await _seed(hub, user, 4, platform="telegram")
    stats = (await client.get("/api/messages/check", headers=user["headers"])).json()
    assert stats["success"] and stats["storage"] == backend
    assert stats["stats"]["totalMessages"] == 4 and stats["stats"]["messagesByPlatform"] == {"telegram": 4}
    msg = (await client.get("/api/messages", headers=user["headers"])).json()["messages"][0]
    raw = (await client.get("/api/messages/raw", params={"id": msg["id"]}, headers=user["headers"])).json()
    assert raw["raw"] == {"n": int(msg["nativeId"])}
    status = (await client.get("/api/messages/check", params={"id": msg["id"]}, headers=user["headers"])).json()
    assert status["status"] == "received"


@pytest.mark.parametrize(
    "body",
    [{}, {"accountId": "a", "chatId": "c"}, {"accountId": "a", "text": "t"}, {"chatId": "c", "text": "t"}, {"accountId": "a", "chatId": "c", "text": "   "}, {"botId": "a", "recipients": [], "message": "m"}],
)
async def test_send_bad_input(client: httpx.AsyncClient, user: dict, body: dict) -> None:
    r = await client.post("/api/messages", json=body, headers=user["headers"])
    assert r.status_code == 400 and r.json()["code"] == "invalid_input"
