"""Grounding: background embeddings, hybrid search with scope, and /api/ai/chat sources.

Messages are inserted straight into the store (the ingest pipeline is tested elsewhere).
The most important property: a user's search never sees another user's messages.
"""

from __future__ import annotations

import itertools
import json
import secrets
from typing import Any

import httpx
import numpy as np
import sqlalchemy as sa

from ai.indexer import index_pending
from ai.search import Scope, hybrid_search, keyword_search, rrf, terms
from ai.vectors import unpack
from store.ids import new_id, now_ms
from store.schema import accounts, message_embeddings, messages
from tests.conftest import register
from tests.fakes.openai_upstream import FakeUpstream, gateway_with, provider_for

_seq = itertools.count(1)
DAY = 86_400_000


async def add_account(hub: Any, user_id: str, platform: str = "slack") -> str:
    account_id = new_id("acc")
    now = now_ms()
    async with hub.engine.begin() as conn:
        await conn.execute(accounts.insert().values(
            id=account_id, user_id=user_id, platform=platform, external_id=secrets.token_hex(4), name=platform,
            settings={}, resume={}, created_at=now, updated_at=now,
        ))
    return account_id


async def add_message(hub: Any, user_id: str, account_id: str, text: str, *, platform: str = "slack",
                      chat_id: str = "C1", sender: str = "Alice", sent_at: int | None = None) -> str:
    message_id = new_id("msg")
    now = now_ms()
    async with hub.engine.begin() as conn:
        await conn.execute(messages.insert().values(
            id=message_id, user_id=user_id, account_id=account_id, platform=platform, chat_id=chat_id,
            chat_name=f"#{chat_id}", chat_type="channel", native_id=secrets.token_hex(6), sender_name=sender,
            direction="inbound", text=text, attachments=[], mentions=[], reactions={}, sent_at=sent_at or now,
            seq=next(_seq), created_at=now, updated_at=now,
        ))
    return message_id


async def index_all(hub: Any) -> int:
    total = 0
    while (done := await index_pending(hub, limit=200)) > 0:
        total += done
    return total


async def person(client: httpx.AsyncClient, hub: Any) -> dict[str, Any]:
    who = await register(client)
    who["account"] = await add_account(hub, who["user"]["id"])
    return who


async def test_index_pending_embeds_each_message_once_and_again_after_an_edit(hub: Any, client: httpx.AsyncClient) -> None:
    me = await person(client, hub)
    uid = me["user"]["id"]
    first = await add_message(hub, uid, me["account"], "The quarterly budget review moved to Thursday")
    second = await add_message(hub, uid, me["account"], "Lunch at noon?")
    await add_message(hub, uid, me["account"], "")  # nothing to embed
    assert await index_all(hub) >= 2
    assert await index_pending(hub) == 0  # nothing left: a second pass does no work
    async with hub.engine.connect() as conn:
        rows = {r.message_id: r for r in await conn.execute(sa.select(message_embeddings).where(message_embeddings.c.user_id == uid))}
    assert set(rows) == {first, second} and rows[first].dims == 384 and rows[first].model == "all-minilm-l6-v2"
    vector = unpack(rows[first].vector, 384)
    assert abs(float(np.linalg.norm(vector)) - 1.0) < 1e-4

    async with hub.engine.begin() as conn:  # an edit after the embedding makes it stale
        await conn.execute(messages.update().where(messages.c.id == second).values(text="Dinner at eight?", edited_at=now_ms() + 5))
    assert await index_pending(hub) == 1
    async with hub.engine.connect() as conn:
        again = (await conn.execute(sa.select(message_embeddings.c.vector).where(message_embeddings.c.message_id == second))).scalar_one()
    assert again != rows[second].vector

    async with hub.engine.begin() as conn:  # deleting the message deletes its vector
        await conn.execute(messages.delete().where(messages.c.id == first))
    async with hub.engine.connect() as conn:
        gone = (await conn.execute(sa.select(sa.func.count()).select_from(message_embeddings).where(message_embeddings.c.message_id == first))).scalar_one()
    assert gone == 0


async def test_hybrid_search_finds_keywords_and_paraphrases_within_scope(hub: Any, client: httpx.AsyncClient) -> None:
    me = await person(client, hub)
    uid, acc = me["user"]["id"], me["account"]
    other_acc = await add_account(hub, uid, "telegram")
    old = now_ms() - 30 * DAY
    invoice = await add_message(hub, uid, acc, "Invoice INV-4471 from Contoso is overdue, please pay it this week")
    paraphrase = await add_message(hub, uid, acc, "The electricity bill still has not been paid", chat_id="C2")
    await add_message(hub, uid, acc, "Who wants to play football on Saturday?")
    tg = await add_message(hub, uid, other_acc, "Contoso invoice copy attached", platform="telegram", chat_id="T1")
    ancient = await add_message(hub, uid, acc, "Contoso invoice from last year", sent_at=old)
    await index_all(hub)

    async with hub.engine.connect() as conn:
        found = await hybrid_search(conn, uid, "What about invoice INV-4471?", Scope())
        assert found[0]["id"] == invoice
        by_meaning = await hybrid_search(conn, uid, "unpaid utility payment", Scope())
        assert paraphrase in [r["id"] for r in by_meaning[:2]]  # no shared keyword: found by vector
        assert await keyword_search(conn, uid, "unpaid utility payment", Scope()) == []
        ids = lambda rows: {r["id"] for r in rows}  # noqa: E731
        assert ids(await hybrid_search(conn, uid, "Contoso invoice", Scope(platform="telegram"))) == {tg}
        assert ids(await hybrid_search(conn, uid, "Contoso invoice", Scope(account_id=other_acc))) == {tg}
        assert tg not in ids(await hybrid_search(conn, uid, "Contoso invoice", Scope(chat_id="C1")))
        assert ancient in ids(await hybrid_search(conn, uid, "Contoso invoice", Scope()))
        assert ancient not in ids(await hybrid_search(conn, uid, "Contoso invoice", Scope(since=now_ms() - DAY)))
        # FTS syntax in a question is just text
        assert await hybrid_search(conn, uid, 'invoice" OR NEAR(* -) AND :', Scope()) is not None


async def test_never_another_users_messages(hub: Any, client: httpx.AsyncClient) -> None:
    me, them = await person(client, hub), await person(client, hub)
    secret = "Launch codes for project Nightingale are 7-7-9-1"
    theirs = await add_message(hub, them["user"]["id"], them["account"], secret, chat_id="SHARED")
    mine = await add_message(hub, me["user"]["id"], me["account"], "Project Nightingale kickoff is on Monday", chat_id="SHARED")
    await index_all(hub)
    async with hub.engine.connect() as conn:
        for scope in (Scope(), Scope(chat_id="SHARED"), Scope(account_id=them["account"]), Scope(platform="slack")):
            found = [r["id"] for r in await hybrid_search(conn, me["user"]["id"], "Nightingale launch codes", scope)]
            assert theirs not in found
        assert [r["id"] for r in await hybrid_search(conn, them["user"]["id"], "Nightingale launch codes", Scope())][0] == theirs

    async with FakeUpstream().serve() as fake, gateway_with(hub, [provider_for(fake, default_model="fake-chat")]):
        r = await client.post("/api/ai/chat", headers=me["headers"], json={
            "messages": [{"role": "user", "content": "What are the Nightingale launch codes?"}], "chatId": "SHARED"})
        assert r.status_code == 200, r.text
        r2 = await client.post("/api/ai/chat", headers=me["headers"], json={
            "messages": [{"role": "user", "content": "Nightingale launch codes?"}], "accountId": them["account"]})
    assert [s["id"] for s in r.json()["sources"]] == [mine]
    assert r2.json()["sources"] == []
    sent = json.dumps(fake.requests)
    assert secret not in sent and "kickoff is on Monday" in sent


async def test_ai_chat_answers_with_sources_streamed_and_not(hub: Any, client: httpx.AsyncClient) -> None:
    me = await person(client, hub)
    uid = me["user"]["id"]
    target = await add_message(hub, uid, me["account"], "The offsite is booked at the Lakeside Hotel in Annecy", sender="Bob")
    await add_message(hub, uid, me["account"], "Remember to water the plants")
    await index_all(hub)
    question = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Where is the offsite?"}]
    async with FakeUpstream().serve() as fake, gateway_with(hub, [provider_for(fake, default_model="fake-chat")]):
        r = await client.post("/api/ai/chat", headers=me["headers"], json={"messages": question, "sourcesLimit": 1})
        assert r.status_code == 200, r.text
        body = r.json()
        sent = fake.requests[-1]["body"]["messages"]
        async with client.stream("POST", "/api/ai/chat", headers=me["headers"],
                                 json={"messages": question, "stream": True, "since": "2000-01-01T00:00:00Z"}) as s:
            events = [line[6:] async for line in s.aiter_lines() if line.startswith("data: ")]
        bad = await client.post("/api/ai/chat", headers=me["headers"], json={"messages": question, "since": "last tuesday"})
    assert body["choices"][0]["message"]["content"] == "echo: Where is the offsite?"
    assert [s["id"] for s in body["sources"]] == [target]
    source = body["sources"][0]
    assert source["n"] == 1 and source["senderName"] == "Bob" and source["platform"] == "slack" and "Lakeside" in source["text"]
    # the caller's system prompt first, then the numbered sources, then the question
    assert sent[0] == question[0] and sent[1]["role"] == "system" and "[1]" in sent[1]["content"] and "Lakeside Hotel" in sent[1]["content"]
    assert sent[2] == question[1]
    assert events[-1] == "[DONE]" and target in [s["id"] for s in json.loads(events[0])["sources"]]
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_input"


def test_reciprocal_rank_fusion_and_query_terms() -> None:
    fused = rrf([["a", "b", "c"], ["c", "a", "d"]])
    assert [item for item, _ in fused] == ["a", "c", "b", "d"]
    assert abs(dict(fused)["a"] - (1 / 61 + 1 / 62)) < 1e-12
    assert terms("What is the BUDGET for Q3, and the budget?") == ["budget", "q3"]
