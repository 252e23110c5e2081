"""Usage into the ledger: every AI call is a "usage" row with tokens and cost, per user."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai

from ai.gateway import gateway_of
from ai.providers import Price
from store.ids import now_ms
from store.ledger import add_entry
from tests.conftest import register
from tests.fakes.openai_upstream import FakeUpstream, gateway_with, provider_for

HELLO = [{"role": "user", "content": "hi there"}]
PRICED = {"fake-chat": Price(input=2.0, output=4.0)}  # USD per million tokens


def sdk(server: Any, who: dict[str, Any]) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=who["token"], base_url=server.url + "/api/ai/v1", max_retries=0)


async def usage_items(client: httpx.AsyncClient, who: dict[str, Any], at_least: int) -> list[dict[str, Any]]:
    """The ledger's usage items, once `at_least` are there (writes happen after the response)."""
    for _ in range(100):
        r = await client.get("/api/billing/ledger", headers=who["headers"], params={"source": "usage"})
        assert r.status_code == 200, r.text
        if r.json()["total"] >= at_least:
            return r.json()["items"]
        await asyncio.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} usage items: {r.json()}")


async def test_chat_usage_is_recorded_with_tokens_and_cost(hub: Any, server: Any, client: httpx.AsyncClient) -> None:
    me = await register(client)
    async with FakeUpstream().serve() as fake, gateway_with(hub, [provider_for(fake, pricing=PRICED)]):
        await sdk(server, me).chat.completions.create(model="fake-chat", messages=HELLO)
        stream = await sdk(server, me).chat.completions.create(model="fake-chat", messages=HELLO, stream=True)
        async for _ in stream:
            pass
    items = await usage_items(client, me, 2)
    assert len(items) == 2
    for item in items:
        assert item["source"] == "usage" and item["model"] == "fake-chat"
        assert (item["inputTokens"], item["outputTokens"]) == (3, 3)  # the upstream's report
        assert abs(item["delta"] - -(3 * 2.0 + 3 * 4.0) / 1e6) < 1e-9
        assert "fake" in item["description"] and isinstance(item["createdAt"], int)
        assert set(item) >= {"id", "createdAt", "source", "description"}
    assert items[0]["createdAt"] >= items[1]["createdAt"]  # newest first


async def test_offline_embeddings_and_cut_streams_are_recorded_too(hub: Any, server: Any, client: httpx.AsyncClient) -> None:
    me = await register(client)
    await sdk(server, me).embeddings.create(model="all-minilm-l6-v2", input=["one", "two three"])
    [item] = await usage_items(client, me, 1)
    # [CLS] one [SEP] + [CLS] two three [SEP] word pieces; offline models cost nothing
    assert item["model"] == "all-minilm-l6-v2" and item["inputTokens"] == 7 and item["delta"] == 0

    reply = " ".join(f"w{i}" for i in range(100))
    async with FakeUpstream(reply=reply, chunk_delay=0.05).serve() as fake, gateway_with(hub, [provider_for(fake)]):
        async with httpx.AsyncClient(base_url=server.url) as http:
            async with http.stream("POST", "/api/ai/v1/chat/completions", headers=me["headers"],
                                   json={"model": "fake-chat", "messages": HELLO, "stream": True}) as r:
                seen = 0
                async for line in r.aiter_lines():
                    seen += line.startswith("data: ")
                    if seen == 4:
                        break
        items = await usage_items(client, me, 2)
    cut = items[0]
    assert cut["model"] == "fake-chat" and 1 <= cut["outputTokens"] < 100 * 2  # what was produced before the hang-up
    assert cut["inputTokens"] > 0


async def test_ledger_is_per_user_paged_and_filtered(hub: Any, client: httpx.AsyncClient) -> None:
    me, them = await register(client), await register(client)
    t0 = now_ms()
    async with hub.engine.begin() as conn:
        for i in range(5):
            await add_entry(conn, me["user"]["id"], source="usage", description=f"call {i}", delta=-0.5, input_tokens=i, created_at=t0 + i)
        await add_entry(conn, me["user"]["id"], source="purchase", description="credits", delta=10, balance_after=10, created_at=t0 + 9)
        await add_entry(conn, them["user"]["id"], source="usage", description="theirs", delta=-1)
    r = await client.get("/api/billing/ledger", headers=me["headers"], params={"limit": 2})
    body = r.json()
    assert r.status_code == 200 and body["total"] == 6 and body["limit"] == 2 and body["offset"] == 0 and len(body["items"]) == 2
    assert body["items"][0]["description"] == "credits" and body["items"][0]["balanceAfter"] == 10.0
    assert "balanceAfter" not in body["items"][1]
    page = (await client.get("/api/billing/ledger", headers=me["headers"], params={"limit": 2, "offset": 4})).json()
    assert [i["description"] for i in page["items"]] == ["call 1", "call 0"]
    usage = (await client.get("/api/billing/ledger", headers=me["headers"], params={"source": "usage"})).json()
    assert usage["total"] == 5 and all(i["source"] == "usage" for i in usage["items"])
    assert all(i["description"] != "theirs" for i in usage["items"])
    theirs = (await client.get("/api/billing/ledger", headers=them["headers"])).json()
    assert [i["description"] for i in theirs["items"]] == ["theirs"] and theirs["items"][0]["delta"] == -1.0
    bad = await client.get("/api/billing/ledger", headers=me["headers"], params={"source": "gift"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_input"
    assert (await client.get("/api/billing/ledger", headers=me["headers"], params={"limit": 0})).status_code == 400
    assert (await client.get("/api/billing/ledger")).status_code == 401


async def test_failed_calls_cost_nothing(hub: Any, server: Any, client: httpx.AsyncClient) -> None:
    me = await register(client)
    async with FakeUpstream(fail_next=10, fail_status=500).serve() as fake, gateway_with(hub, [provider_for(fake, pricing=PRICED)]) as gw:
        try:
            await sdk(server, me).chat.completions.create(model="fake-chat", messages=HELLO)
        except openai.InternalServerError:
            pass
        await gw.usage.drain()
    r = await client.get("/api/billing/ledger", headers=me["headers"])
    assert r.json()["total"] == 0
    assert gateway_of(hub) is not gw  # the test's gateway was swapped back out
