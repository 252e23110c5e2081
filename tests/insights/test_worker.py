"""The worker side of insights: follows each owner's seq, debounced per chat, on both databases."""

from __future__ import annotations

import httpx

from ai.insights.worker import CURSOR, run_once
from tests.insights.conftest import load, msg
from tests.waiting import eventually
from workers.process import HubWorker


async def _mine(client: httpx.AsyncClient, user: dict) -> list[dict]:
    return (await client.get("/api/insights", headers=user["headers"])).json()["insights"]


async def test_new_messages_are_picked_up_after_the_chat_is_quiet(hub, client: httpx.AsyncClient, user: dict) -> None:
    await load(client, user, [msg(1, "can you review my PR?"), msg(2, "hello", chat="D-ann", sender=("U-ann", "Ann"))])
    # inside the debounce window nothing is made and the cursor stays before these changes
    assert await run_once(hub, debounce_ms=3_600_000) == 0
    assert await _mine(client, user) == []
    listed = (await client.get("/api/messages", headers=user["headers"])).json()["messages"]
    assert int(await hub.redis.hget(CURSOR, user["user"]["id"]) or 0) < min(m["seq"] for m in listed)
    made = await run_once(hub, debounce_ms=0)
    assert made >= 2
    insights = {i["chatId"]: i for i in await _mine(client, user)}
    assert set(insights) == {"D-bob", "D-ann"} and insights["D-bob"]["myTasks"]
    # nothing new: nothing recomputed
    assert await run_once(hub, debounce_ms=0) == 0
    await load(client, user, [msg(3, "Done, reviewed and approved.", me=True)])
    assert await run_once(hub, debounce_ms=0) == 1
    after = {i["chatId"]: i for i in await _mine(client, user)}
    assert after["D-bob"]["myTasks"] == [] and after["D-bob"]["id"] == insights["D-bob"]["id"]
    assert after["D-ann"]["updatedAt"] == insights["D-ann"]["updatedAt"]  # untouched chat


async def test_a_chat_generated_by_the_api_is_not_redone(hub, client: httpx.AsyncClient, user: dict) -> None:
    await load(client, user, [msg(1, "are you around?", chat="D-zed", sender=("U-zed", "Zed"))])
    await run_once(hub, debounce_ms=0)  # other tests' chats are folded in first
    await load(client, user, [msg(2, "ping", chat="D-zed", sender=("U-zed", "Zed"))])
    made = (await client.post("/api/insights/generate", json={"chatId": "D-zed"}, headers=user["headers"])).json()["insights"][0]
    assert await run_once(hub, debounce_ms=0) == 0
    assert (await _mine(client, user))[0]["updatedAt"] == made["updatedAt"]


async def test_a_running_worker_makes_insights(hub, client: httpx.AsyncClient, user: dict, monkeypatch) -> None:
    """The whole worker (supervisor, ingest, ARQ, indexer, insights) on the test hub."""
    import ai.insights.worker as insights_worker

    monkeypatch.setattr(insights_worker, "DEBOUNCE_MS", 0)
    worker = HubWorker(hub, name="insights-test")
    await worker.start()
    try:
        await load(client, user, [msg(1, "could you send the invoice by Friday?", chat="D-wk", sender=("U-wk", "Wu"))])

        async def made() -> list[dict]:
            found = [i for i in await _mine(client, user) if i["chatId"] == "D-wk"]
            return found if found and found[0]["myTasks"] else []

        (insight,) = await eventually(made, timeout=60, what="the worker's insight")
        assert insight["myTasks"][0]["due"] == "2026-03-06T23:59:59.999Z"
    finally:
        await worker.stop()
