"""/api/chat through the real app on SQLite and PostgreSQL: chats, their messages and characters.

The assistant answers from the loopback OpenAI-compatible upstream (tests/fakes/openai_upstream),
reached over HTTP by the hub's real gateway; grounding runs on messages stored for the person
and indexed by the real indexer. Bad input is a 400 in the seed's shape and stores nothing;
another person's chat or character is a 404, exactly like one that does not exist.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from store.schema import assistant_chats, assistant_messages, characters
from tests.ai.test_grounding import add_account, add_message, index_all
from tests.api.test_bad_input import assert_seed_400
from tests.conftest import register
from tests.fakes.openai_upstream import FakeUpstream, gateway_with, provider_for


async def counts(hub: Any, user_id: str) -> tuple[int, int, int]:
    async with hub.engine.connect() as conn:
        out = []
        for table in (assistant_chats, assistant_messages, characters):
            out.append((await conn.execute(sa.select(sa.func.count()).select_from(table).where(table.c.user_id == user_id))).scalar_one())
    return out[0], out[1], out[2]


async def new_chat(client: httpx.AsyncClient, who: dict[str, Any], **body: Any) -> dict[str, Any]:
    r = await client.post("/api/chat", headers=who["headers"], json=body)
    assert r.status_code == 201, r.text
    return r.json()["chat"]


async def test_chat_crud(client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    h = user["headers"]
    first = await new_chat(client, user)
    assert first["title"] == "New Chat" and first["messageCount"] == 0 and first["characterId"] is None
    second = await new_chat(client, user, title="  Trip planning ", model="fake-chat", characterId="builtin-concise")
    assert second["title"] == "Trip planning" and second["model"] == "fake-chat" and second["characterId"] == "builtin-concise"

    listed = (await client.get("/api/chat", headers=h)).json()
    assert [c["id"] for c in listed["chats"]] == [second["id"], first["id"]] and listed["total"] == 2 and not listed["hasMore"]
    page = (await client.get("/api/chat?limit=1&offset=1", headers=h)).json()
    assert [c["id"] for c in page["chats"]] == [first["id"]] and page["total"] == 2

    got = await client.get(f"/api/chat/{first['id']}", headers=h)
    assert got.status_code == 200 and got.json()["chat"] == first

    renamed = await client.patch(f"/api/chat/{first['id']}", headers=h, json={"title": "Budget"})
    assert renamed.status_code == 200 and renamed.json()["chat"]["title"] == "Budget"
    put = await client.put(f"/api/chat/{second['id']}", headers=h, json={"characterId": None, "model": None})
    assert put.status_code == 200 and put.json()["chat"]["characterId"] is None and put.json()["chat"]["model"] is None
    # the most recently changed chat comes first now
    assert (await client.get("/api/chat", headers=h)).json()["chats"][0]["id"] == second["id"]

    gone = await client.delete(f"/api/chat/{first['id']}", headers=h)
    assert gone.status_code == 200 and gone.json() == {"id": first["id"], "success": True}
    assert (await client.get(f"/api/chat/{first['id']}", headers=h)).status_code == 404
    again = await client.delete(f"/api/chat/{first['id']}", headers=h)
    assert again.status_code == 404 and again.json()["code"] == "chat_not_found"
    assert (await client.get("/api/chat", headers=h)).json()["total"] == 1
    assert (await client.get("/api/chat")).status_code == 401


async def test_messages_append_and_page(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    h = user["headers"]
    chat = await new_chat(client, user)
    r = await client.post(f"/api/chat/{chat['id']}/messages", headers=h, json={"content": "Plan   the offsite\nfor   March please"})
    assert r.status_code == 201, r.text
    first = r.json()["message"]
    assert first["role"] == "user" and first["seq"] == 1 and first["parts"] == [{"type": "text", "text": first["content"]}]
    # the first message names an untitled chat
    assert r.json()["chat"]["title"] == "Plan the offsite for March please" and r.json()["chat"]["messageCount"] == 1
    # openloomi's shapes: text parts, and `message: {role, parts}`
    parts = await client.post(f"/api/chat/{chat['id']}/messages", headers=h,
                              json={"role": "assistant", "parts": [{"type": "text", "text": "Sure."}, {"type": "text", "text": "When?"}]})
    assert parts.status_code == 201 and parts.json()["message"]["content"] == "Sure.\nWhen?" and parts.json()["message"]["role"] == "assistant"
    for i in range(3, 8):
        m = await client.post(f"/api/chat/{chat['id']}/messages", headers=h, json={"message": {"role": "user", "parts": [{"type": "text", "text": f"m{i}"}]}})
        assert m.status_code == 201 and m.json()["message"]["seq"] == i
    assert m.json()["chat"]["title"] == "Plan the offsite for March please"  # only the first names it

    newest = (await client.get(f"/api/chat/{chat['id']}/messages?limit=3", headers=h)).json()
    assert [x["content"] for x in newest["messages"]] == ["m5", "m6", "m7"] and newest["hasMore"]
    older = (await client.get(f"/api/chat/{chat['id']}/messages", headers=h, params={"limit": 3, "before": newest["nextBefore"]})).json()
    assert [x["seq"] for x in older["messages"]] == [2, 3, 4] and older["hasMore"]
    oldest = (await client.get(f"/api/chat/{chat['id']}/messages", headers=h, params={"limit": 3, "before": older["nextBefore"]})).json()
    assert [x["seq"] for x in oldest["messages"]] == [1] and not oldest["hasMore"] and oldest["nextBefore"] is None
    everything = (await client.get(f"/api/chat/{chat['id']}/messages", headers=h)).json()
    assert [x["seq"] for x in everything["messages"]] == list(range(1, 8))
    assert (await client.get(f"/api/chat/{chat['id']}", headers=h)).json()["chat"]["messageCount"] == 7

    # deleting the chat deletes its messages
    assert (await client.delete(f"/api/chat/{chat['id']}", headers=h)).status_code == 200
    assert (await counts(hub, user["user"]["id"]))[1] == 0


async def test_characters_builtin_and_own(client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    h = user["headers"]
    listed = (await client.get("/api/chat/characters", headers=h)).json()
    builtins = [c for c in listed["characters"] if c["builtIn"]]
    assert listed["defaultCharacterId"] in {c["id"] for c in builtins} and len(builtins) == len(listed["characters"]) >= 2
    assert all(c["systemPrompt"] and c["name"] for c in builtins)

    r = await client.post("/api/chat/characters", headers=h, json={
        "name": " Pirate ", "systemPrompt": "Talk like a pirate.", "avatar": "🏴‍☠️", "model": "fake-chat", "description": "Arr"})
    assert r.status_code == 201, r.text
    mine = r.json()["character"]
    assert mine["name"] == "Pirate" and mine["builtIn"] is False and mine["avatar"] == "🏴‍☠️" and mine["model"] == "fake-chat"
    assert (await client.get(f"/api/chat/characters/{mine['id']}", headers=h)).json()["character"] == mine
    assert (await client.get(f"/api/chat/characters/{builtins[0]['id']}", headers=h)).json()["character"]["builtIn"] is True
    ids = [c["id"] for c in (await client.get("/api/chat/characters", headers=h)).json()["characters"]]
    assert ids[-1] == mine["id"] and ids[: len(builtins)] == [c["id"] for c in builtins]

    for avatar in ("https://example.com/a.png", "data:image/png;base64,iVBORw0KGgo=", "JD"):
        ok = await client.patch(f"/api/chat/characters/{mine['id']}", headers=h, json={"avatar": avatar})
        assert ok.status_code == 200 and ok.json()["character"]["avatar"] == avatar
    up = await client.put(f"/api/chat/characters/{mine['id']}", headers=h, json={"systemPrompt": "Talk like a polite pirate.", "model": None})
    assert up.status_code == 200 and up.json()["character"]["systemPrompt"] == "Talk like a polite pirate." and up.json()["character"]["model"] is None
    assert up.json()["character"]["name"] == "Pirate"

    # built-ins are read-only
    for call in (client.put(f"/api/chat/characters/{builtins[0]['id']}", headers=h, json={"name": "Mine now"}),
                 client.delete(f"/api/chat/characters/{builtins[0]['id']}", headers=h)):
        resp = await call
        assert resp.status_code == 403 and resp.json()["code"] == "character_read_only"

    # a chat using a deleted character goes back to the default
    chat = await new_chat(client, user, characterId=mine["id"])
    gone = await client.delete(f"/api/chat/characters/{mine['id']}", headers=h)
    assert gone.status_code == 200 and gone.json() == {"id": mine["id"], "success": True}
    assert (await client.get(f"/api/chat/characters/{mine['id']}", headers=h)).status_code == 404
    assert (await client.get(f"/api/chat/{chat['id']}", headers=h)).json()["chat"]["characterId"] is None


BAD_CHAT_BODIES = [
    {"title": ""}, {"title": "x" * 201}, {"title": "a\x00b"}, {"characterId": "x" * 41}, {"model": ""}, {"title": 5},
]


@pytest.mark.parametrize("body", BAD_CHAT_BODIES)
async def test_bad_chat_bodies_store_nothing(hub: Any, client: httpx.AsyncClient, user: dict[str, Any], body: dict[str, Any]) -> None:
    assert_seed_400(await client.post("/api/chat", headers=user["headers"], json=body))
    assert await counts(hub, user["user"]["id"]) == (0, 0, 0)


async def test_bad_input_is_a_seed_400_and_changes_nothing(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    h = user["headers"]
    uid = user["user"]["id"]
    chat = await new_chat(client, user, title="Keep")
    before = await counts(hub, uid)
    bad_messages = [{}, {"content": ""}, {"content": "   "}, {"content": "x" * 100_001}, {"parts": [{"type": "image", "text": "x"}]},
                    {"content": "hi", "role": "tool"}, {"parts": []}, {"message": {"role": "assistant", "content": "x"}}, [1, 2]]
    for body in bad_messages:
        assert_seed_400(await client.post(f"/api/chat/{chat['id']}/messages", headers=h, json=body))
    assert_seed_400(await client.post(f"/api/chat/{chat['id']}/messages", headers=h, content=b"{not json"))
    for params in ({"limit": 0}, {"limit": 201}, {"limit": "ten"}, {"before": "amsg_not_in_this_chat"}):
        assert_seed_400(await client.get(f"/api/chat/{chat['id']}/messages", headers=h, params=params))
    for params in ({"limit": 0}, {"offset": -1}):
        assert_seed_400(await client.get("/api/chat", headers=h, params=params))
    for body in ({}, {"title": None}, {"title": ""}):
        assert_seed_400(await client.patch(f"/api/chat/{chat['id']}", headers=h, json=body))
    bad_characters = [{}, {"name": "x"}, {"systemPrompt": "x"}, {"name": "", "systemPrompt": "x"}, {"name": "a", "systemPrompt": "   "},
                      {"name": "a" * 101, "systemPrompt": "x"}, {"name": "a", "systemPrompt": "x", "avatar": "x" * 2049},
                      {"name": "a", "systemPrompt": "x" * 20_001}, {"name": "a\x00", "systemPrompt": "x"},
                      {"name": "a", "systemPrompt": "x", "avatar": "javascript:alert(1)"},
                      {"name": "a", "systemPrompt": "x", "avatar": "data:text/html;base64,PHNjcmlwdD4="},
                      {"name": "a", "systemPrompt": "x", "avatar": "a long text that is not an avatar"}]
    for body in bad_characters:
        assert_seed_400(await client.post("/api/chat/characters", headers=h, json=body))
    assert_seed_400(await client.post(f"/api/chat/{chat['id']}/send", headers=h, json={"content": ""}))
    assert_seed_400(await client.post(f"/api/chat/{chat['id']}/send", headers=h, json={"content": "hi", "temperature": 9}))
    # a chat naming a character that does not exist is refused, not stored
    missing = await client.post("/api/chat", headers=h, json={"characterId": "char_nope"})
    assert missing.status_code == 404 and missing.json()["code"] == "character_not_found"
    assert await counts(hub, uid) == before
    assert (await client.get(f"/api/chat/{chat['id']}", headers=h)).json()["chat"]["title"] == "Keep"


async def test_other_peoples_chats_and_characters_are_404(hub: Any, client: httpx.AsyncClient) -> None:
    me, them = await register(client), await register(client)
    chat = await new_chat(client, them, title="Private")
    appended = await client.post(f"/api/chat/{chat['id']}/messages", headers=them["headers"], json={"content": "secret plans"})
    msg_id = appended.json()["message"]["id"]
    char = (await client.post("/api/chat/characters", headers=them["headers"], json={"name": "Theirs", "systemPrompt": "x"})).json()["character"]
    h = me["headers"]
    calls = [
        client.get(f"/api/chat/{chat['id']}", headers=h),
        client.patch(f"/api/chat/{chat['id']}", headers=h, json={"title": "mine"}),
        client.delete(f"/api/chat/{chat['id']}", headers=h),
        client.get(f"/api/chat/{chat['id']}/messages", headers=h),
        client.post(f"/api/chat/{chat['id']}/messages", headers=h, json={"content": "hi"}),
        client.post(f"/api/chat/{chat['id']}/send", headers=h, json={"content": "hi"}),
        client.get(f"/api/chat/characters/{char['id']}", headers=h),
        client.put(f"/api/chat/characters/{char['id']}", headers=h, json={"name": "mine"}),
        client.delete(f"/api/chat/characters/{char['id']}", headers=h),
        client.post("/api/chat", headers=h, json={"characterId": char["id"]}),
    ]
    for call in calls:
        resp = await call
        assert resp.status_code == 404, resp.text
        assert resp.json()["code"] in {"chat_not_found", "character_not_found"}
    assert (await client.get("/api/chat", headers=h)).json()["chats"] == []
    assert char["id"] not in [c["id"] for c in (await client.get("/api/chat/characters", headers=h)).json()["characters"]]
    # their cursor is not a cursor in my chat either
    mine = await new_chat(client, me)
    assert_seed_400(await client.get(f"/api/chat/{mine['id']}/messages", headers=h, params={"before": msg_id}))
    # nothing of theirs changed
    theirs = (await client.get(f"/api/chat/{chat['id']}/messages", headers=them["headers"])).json()["messages"]
    assert [m["content"] for m in theirs] == ["secret plans"]
    assert (await client.get(f"/api/chat/characters/{char['id']}", headers=them["headers"])).json()["character"]["name"] == "Theirs"


async def test_send_without_a_provider_is_503_and_stores_nothing(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    chat = await new_chat(client, user)
    for stream in (False, True):
        r = await client.post(f"/api/chat/{chat['id']}/send", headers=user["headers"], json={"content": "Hello?", "stream": stream})
        assert r.status_code == 503 and r.json()["code"] == "ai_provider_not_configured" and "error" in r.json()
    assert (await counts(hub, user["user"]["id"]))[1] == 0
    assert (await client.get(f"/api/chat/{chat['id']}", headers=user["headers"])).json()["chat"]["messageCount"] == 0


async def test_send_asks_the_assistant_with_history_character_and_sources(hub: Any, client: httpx.AsyncClient) -> None:
    me = await register(client)
    uid, h = me["user"]["id"], me["headers"]
    account = await add_account(hub, uid)
    target = await add_message(hub, uid, account, "The offsite is booked at the Lakeside Hotel in Annecy", sender="Bob")
    await add_message(hub, uid, account, "Remember to water the plants")
    await index_all(hub)
    pirate = (await client.post("/api/chat/characters", headers=h, json={"name": "Pirate", "systemPrompt": "Talk like a pirate."})).json()["character"]
    chat = await new_chat(client, me, characterId=pirate["id"])
    await client.post(f"/api/chat/{chat['id']}/messages", headers=h, json={"content": "Earlier question"})
    await client.post(f"/api/chat/{chat['id']}/messages", headers=h, json={"role": "assistant", "content": "Earlier answer"})

    async with FakeUpstream().serve() as fake, gateway_with(hub, [provider_for(fake, default_model="fake-chat")]):
        r = await client.post(f"/api/chat/{chat['id']}/send", headers=h,
                              json={"content": "Where is the offsite?", "sourcesLimit": 1, "temperature": 0.2})
        assert r.status_code == 200, r.text
        sent = fake.requests[-1]["body"]
        ungrounded = await client.post(f"/api/chat/{chat['id']}/send", headers=h, json={"content": "And the plants?", "grounded": False})
        plain = fake.requests[-1]["body"]["messages"]
    body = r.json()
    assert body["reply"]["role"] == "assistant" and body["reply"]["content"] == "echo: Where is the offsite?"
    assert body["message"]["content"] == "Where is the offsite?" and body["message"]["seq"] == 3 and body["reply"]["seq"] == 4
    assert [s["id"] for s in body["sources"]] == [target] and body["reply"]["metadata"]["sources"][0]["id"] == target
    assert body["reply"]["metadata"]["model"] == "fake-chat" and body["reply"]["metadata"]["usage"]["total_tokens"] > 0
    assert body["chat"]["messageCount"] == 4
    # the character's prompt first, then the numbered sources, then the history, then the question
    msgs = sent["messages"]
    assert msgs[0] == {"role": "system", "content": "Talk like a pirate."}
    assert msgs[1]["role"] == "system" and "[1]" in msgs[1]["content"] and "Lakeside Hotel" in msgs[1]["content"]
    assert msgs[2:] == [{"role": "user", "content": "Earlier question"}, {"role": "assistant", "content": "Earlier answer"},
                        {"role": "user", "content": "Where is the offsite?"}]
    assert sent["temperature"] == 0.2 and sent["model"] == "fake-chat"
    # the next ask sees the stored turn; without grounding no sources go in
    assert ungrounded.status_code == 200 and ungrounded.json()["sources"] == []
    assert [m["role"] for m in plain] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert plain[-2] == {"role": "assistant", "content": "echo: Where is the offsite?"}
    stored = (await client.get(f"/api/chat/{chat['id']}/messages", headers=h)).json()["messages"]
    assert [m["content"] for m in stored][-2:] == ["And the plants?", "echo: And the plants?"]


async def test_send_streams_and_stores_the_turn(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    h = user["headers"]
    chat = await new_chat(client, user)
    async with FakeUpstream(reply="Three short words here").serve() as fake, gateway_with(hub, [provider_for(fake, default_model="fake-chat")]):
        async with client.stream("POST", f"/api/chat/{chat['id']}/send", headers=h, json={"content": "Say something", "stream": True}) as s:
            assert s.status_code == 200 and s.headers["content-type"].startswith("text/event-stream")
            events = [line[6:] async for line in s.aiter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    data = [json.loads(e) for e in events[:-1]]
    chunks = [d for d in data if d.get("object") == "chat.completion.chunk"]
    assert len(chunks) >= 2 and chunks[0]["chatId"] == chat["id"] and chunks[0]["sources"] == []
    text = "".join((c["choices"][0]["delta"].get("content") or "") for c in chunks if c["choices"])
    assert text == "Three short words here"
    turn = data[-1]
    assert turn["object"] == "chat.turn" and turn["reply"]["content"] == text and turn["message"]["content"] == "Say something"
    assert turn["chat"]["title"] == "Say something" and turn["chat"]["messageCount"] == 2
    stored = (await client.get(f"/api/chat/{chat['id']}/messages", headers=h)).json()["messages"]
    assert [(m["role"], m["content"]) for m in stored] == [("user", "Say something"), ("assistant", text)]


async def test_upstream_failure_stores_nothing(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    h = user["headers"]
    chat = await new_chat(client, user)
    async with FakeUpstream(fail_next=5, fail_status=500).serve() as fake, gateway_with(hub, [provider_for(fake, default_model="fake-chat")]):
        r = await client.post(f"/api/chat/{chat['id']}/send", headers=h, json={"content": "Hello"})
    assert r.status_code >= 500 and set(r.json()) <= {"error", "code", "cause"}
    async with FakeUpstream(fail_mid_stream=True, reply="one two three").serve() as fake, gateway_with(hub, [provider_for(fake, default_model="fake-chat")]):
        async with client.stream("POST", f"/api/chat/{chat['id']}/send", headers=h, json={"content": "Hello", "stream": True}) as s:
            events = [line[6:] async for line in s.aiter_lines() if line.startswith("data: ")]
    assert "error" in json.loads(events[-1]) and "[DONE]" not in events
    assert (await counts(hub, user["user"]["id"]))[1] == 0
    # an unknown model for this chat is the gateway's clear error, and nothing is stored
    async with FakeUpstream().serve() as fake, gateway_with(hub, [provider_for(fake, models=("fake-chat",), default_model="fake-chat")]):
        r = await client.post(f"/api/chat/{chat['id']}/send", headers=h, json={"content": "Hello", "model": "no-such-model"})
    assert r.status_code == 404 and r.json()["code"] == "model_not_found"
    assert (await counts(hub, user["user"]["id"]))[1] == 0


async def test_save_messages_like_the_openloomi_app(hub: Any, client: httpx.AsyncClient) -> None:
    me, them = await register(client), await register(client)
    h = me["headers"]
    transcript = [
        {"id": "m-1", "role": "user", "parts": [{"type": "text", "text": "Book a table for two"}]},
        {"id": "m-2", "role": "assistant", "parts": [{"type": "text", "text": "Which"}, {"type": "tool-call", "name": "x"}]},
    ]
    r = await client.post("/api/chat/save-messages", headers=h, json={"chatId": "chat-app-1", "messages": transcript})
    assert r.status_code == 200, r.text
    assert r.json()["success"] is True and r.json()["saved"] == 2 and r.json()["updated"] == 0
    assert r.json()["chat"]["id"] == "chat-app-1" and r.json()["chat"]["title"] == "Book a table for two"
    # the reply grew while streaming, and the same transcript is saved again: nothing doubles
    transcript[1]["parts"][0]["text"] = "Which evening?"
    transcript.append({"id": "m-3", "role": "user", "content": "Friday"})
    again = await client.post("/api/chat/save-messages", headers=h, json={"chatId": "chat-app-1", "messages": transcript})
    assert again.json()["saved"] == 1 and again.json()["updated"] == 1 and again.json()["chat"]["messageCount"] == 3
    same = await client.post("/api/chat/save-messages", headers=h, json={"chatId": "chat-app-1", "messages": transcript})
    assert same.json()["saved"] == 0 and same.json()["updated"] == 0
    stored = (await client.get("/api/chat/chat-app-1/messages", headers=h)).json()["messages"]
    assert [(m["id"], m["role"], m["content"]) for m in stored] == [
        ("m-1", "user", "Book a table for two"), ("m-2", "assistant", "Which evening?"), ("m-3", "user", "Friday")]
    # the app's ids are cursors too, and reading back then saving our ids again changes nothing
    page = (await client.get("/api/chat/chat-app-1/messages", headers=h, params={"before": "m-3"})).json()["messages"]
    assert [m["id"] for m in page] == ["m-1", "m-2"]
    sent = await client.post("/api/chat/chat-app-1/messages", headers=h, json={"content": "ours"})
    ours = sent.json()["message"]
    back = await client.post("/api/chat/save-messages", headers=h, json={"chatId": "chat-app-1", "messages": [
        {"id": ours["id"], "role": "user", "content": "ours"}]})
    assert back.json()["saved"] == 0 and back.json()["updated"] == 0

    # someone else's chat id is a 404 and nothing of theirs changes
    theirs = await client.post("/api/chat/save-messages", headers=them["headers"], json={"chatId": "chat-app-1", "messages": transcript})
    assert theirs.status_code == 404 and theirs.json()["code"] == "chat_not_found"
    assert (await counts(hub, them["user"]["id"])) == (0, 0, 0)
    before = await counts(hub, me["user"]["id"])
    for body in ({"messages": []}, {"chatId": "", "messages": []}, {"chatId": "a/b", "messages": []}, {"chatId": "x" * 41, "messages": []},
                 {"chatId": "c2"}, {"chatId": "c2", "messages": [{"id": "m", "role": "tool", "content": "x"}]},
                 {"chatId": "c2", "messages": [{"role": "user", "content": "x"}]},
                 {"chatId": "c2", "messages": [{"id": "a b", "role": "user", "content": "x"}]},
                 {"chatId": "c2", "messages": [{"id": "m", "role": "user", "content": "x"}] * 501}):
        assert_seed_400(await client.post("/api/chat/save-messages", headers=h, json=body))
    assert await counts(hub, me["user"]["id"]) == before


async def test_concurrent_appends_number_every_message_once(client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    import asyncio

    h = user["headers"]
    chat = await new_chat(client, user)
    results = await asyncio.gather(*(client.post(f"/api/chat/{chat['id']}/messages", headers=h, json={"content": f"c{i}"}) for i in range(20)))
    assert all(r.status_code == 201 for r in results), [r.text for r in results if r.status_code != 201]
    assert sorted(r.json()["message"]["seq"] for r in results) == list(range(1, 21))
    stored = (await client.get(f"/api/chat/{chat['id']}/messages", headers=h)).json()["messages"]
    assert sorted(m["content"] for m in stored) == sorted(f"c{i}" for i in range(20)) and [m["seq"] for m in stored] == list(range(1, 21))
    assert (await client.get(f"/api/chat/{chat['id']}", headers=h)).json()["chat"]["messageCount"] == 20


async def test_a_chat_whose_character_vanished_speaks_as_the_default(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    chat = await new_chat(client, user)
    async with hub.engine.begin() as conn:  # a character deleted between the check and the insert
        await conn.execute(sa.update(assistant_chats).where(assistant_chats.c.id == chat["id"]).values(character_id="char_gone"))
    listed = (await client.get("/api/chat/characters", headers=user["headers"])).json()
    default = next(c for c in listed["characters"] if c["id"] == listed["defaultCharacterId"])
    async with FakeUpstream().serve() as fake, gateway_with(hub, [provider_for(fake, default_model="fake-chat")]):
        r = await client.post(f"/api/chat/{chat['id']}/send", headers=user["headers"], json={"content": "hello", "grounded": False})
        sent = fake.requests[-1]["body"]["messages"]
    assert r.status_code == 200, r.text
    assert sent[0] == {"role": "system", "content": default["systemPrompt"]}
