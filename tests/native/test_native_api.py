"""/api/native through the real app on SQLite and PostgreSQL: the agent provider, the enabled
skills with the operations their SKILL.md declares, running an operation and the agent, both
against the loopback OpenAI-compatible upstream reached by the hub's real gateway.

Skills are made through /api/workspace/skills (the module that owns them), so these tests read
exactly what a person created. Another person's skills are never listed or runnable (404).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.api.test_bad_input import assert_seed_400
from tests.conftest import register
from tests.fakes.openai_upstream import FakeUpstream, gateway_with, provider_for

TRANSLATOR = """---
name: translator
description: Translate text between languages
version: 1.2.0
operations:
  - name: to-french
    description: Translate into French
    prompt: Translate the user's text into French. Answer with the translation only.
  - name: detect
    description: Name the language of the text
  - name: "bad name with spaces"
  - just a string
---
# Translator

Keep names and numbers as they are.
"""

NOTES = """---
name: notes
description: Turn a chat into meeting notes
---
Write notes with decisions and owners.
"""


async def make_skill(client: httpx.AsyncClient, who: dict[str, Any], content: str, enabled: bool = True) -> dict[str, Any]:
    r = await client.post("/api/workspace/skills", headers=who["headers"], json={"content": content, "enabled": enabled})
    assert r.status_code == 201, r.text
    return r.json()["skill"]


async def test_providers_say_whether_the_agent_can_answer(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    r = await client.get("/api/native/providers", headers=user["headers"])
    assert r.status_code == 200 and r.json()["defaultAgent"] == "loomi"
    assert r.json()["agents"][0]["type"] == "loomi" and r.json()["agents"][0]["available"] is False
    async with FakeUpstream().serve() as fake, gateway_with(hub, [provider_for(fake, default_model="fake-chat")]):
        on = (await client.get("/api/native/providers", headers=user["headers"])).json()["agents"][0]
    assert on["available"] is True and on["model"] == "fake-chat"
    assert (await client.get("/api/native/providers")).status_code == 401


async def test_lists_enabled_skills_with_their_operations(client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    h = user["headers"]
    assert (await client.get("/api/native/skills", headers=h)).json() == {"skills": [], "total": 0}
    translator = await make_skill(client, user, TRANSLATOR)
    notes = await make_skill(client, user, NOTES)
    await make_skill(client, user, NOTES.replace("name: notes", "name: idle-notes"), enabled=False)
    listed = (await client.get("/api/native/skills", headers=h)).json()
    assert listed["total"] == 2
    by_name = {s["name"]: s for s in listed["skills"]}
    assert set(by_name) == {"translator", "notes"} and by_name["translator"]["id"] == translator["id"]
    assert by_name["translator"]["version"] == "1.2.0"
    # malformed declarations are left out; a skill that declares none has `run`
    assert by_name["translator"]["operations"] == [
        {"name": "to-french", "description": "Translate into French"}, {"name": "detect", "description": "Name the language of the text"}]
    assert by_name["notes"]["operations"] == [{"name": "run", "description": "Turn a chat into meeting notes"}]
    # toggling a skill off takes it out of the list
    off = await client.post("/api/workspace/skills/toggle", headers=h, json={"skillId": notes["id"], "enabled": False})
    assert off.status_code == 200
    assert [s["name"] for s in (await client.get("/api/native/skills", headers=h)).json()["skills"]] == ["translator"]


async def test_run_an_operation_through_the_model(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    h = user["headers"]
    translator = await make_skill(client, user, TRANSLATOR)
    await make_skill(client, user, NOTES)
    async with FakeUpstream().serve() as fake, gateway_with(hub, [provider_for(fake, default_model="fake-chat")]):
        r = await client.post("/api/native/skills/run", headers=h,
                              json={"skillId": translator["id"], "operation": "to-french", "input": "Good morning"})
        sent = fake.requests[-1]["body"]["messages"]
        by_name = await client.post("/api/native/skills/run", headers=h, json={"skill": "notes", "input": {"chat": ["a: hi", "b: ok"]}})
        sent_notes = fake.requests[-1]["body"]["messages"]
        empty = await client.post("/api/native/skills/run", headers=h, json={"skill": "notes"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["operation"] == "to-french" and body["output"] == "echo: Good morning"
    assert body["skill"]["name"] == "translator" and body["usage"]["total_tokens"] > 0 and body["model"] == "fake-chat"
    # the SKILL.md first, then the operation's prompt, then the input
    assert sent[0]["role"] == "system" and "Keep names and numbers as they are." in sent[0]["content"]
    assert sent[1] == {"role": "system", "content": "Operation `to-french`: Translate the user's text into French. Answer with the translation only."}
    assert sent[2] == {"role": "user", "content": "Good morning"}
    assert by_name.status_code == 200 and by_name.json()["operation"] == "run"
    assert json.loads(sent_notes[-1]["content"]) == {"chat": ["a: hi", "b: ok"]} and len(sent_notes) == 2
    assert empty.status_code == 200 and empty.json()["output"] == "echo: Run the `run` operation."


async def test_run_refusals(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    h = user["headers"]
    translator = await make_skill(client, user, TRANSLATOR)
    off = await make_skill(client, user, NOTES, enabled=False)
    async with FakeUpstream().serve() as fake, gateway_with(hub, [provider_for(fake, default_model="fake-chat")]):
        unknown_op = await client.post("/api/native/skills/run", headers=h, json={"skillId": translator["id"], "operation": "to-klingon"})
        disabled = await client.post("/api/native/skills/run", headers=h, json={"skillId": off["id"]})
        missing = await client.post("/api/native/skills/run", headers=h, json={"skill": "nope"})
        for body in ({}, {"operation": "run"}, {"skillId": "x" * 41}, {"skillId": translator["id"], "input": "x" * 100_001},
                     {"skillId": translator["id"], "operation": ""}, {"skillId": translator["id"], "input": 5}):
            assert_seed_400(await client.post("/api/native/skills/run", headers=h, json=body))
        asked = len(fake.requests)
    assert asked == 0  # nothing bad reached the model
    assert_seed_400(unknown_op)
    assert unknown_op.json()["code"] == "unknown_operation" and "to-french" in unknown_op.json()["cause"]
    assert disabled.status_code == 409 and disabled.json()["code"] == "skill_disabled"
    assert missing.status_code == 404 and missing.json()["code"] == "skill_not_found"
    no_provider = await client.post("/api/native/skills/run", headers=h, json={"skillId": translator["id"], "operation": "detect", "input": "hola"})
    assert no_provider.status_code == 503 and no_provider.json()["code"] == "ai_provider_not_configured"


async def test_the_agent_streams_with_the_enabled_skills(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    h = user["headers"]
    translator = await make_skill(client, user, TRANSLATOR)
    await make_skill(client, user, NOTES)
    await make_skill(client, user, NOTES.replace("name: notes", "name: hidden").replace("Write notes", "Never seen"), enabled=False)
    async with FakeUpstream(reply="Bonjour tout le monde").serve() as fake, gateway_with(hub, [provider_for(fake, default_model="fake-chat")]):
        async with client.stream("POST", "/api/native/agent", headers=h, json={
                "prompt": "Translate: hello everyone", "conversation": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}) as s:
            assert s.status_code == 200 and s.headers["content-type"].startswith("text/event-stream")
            events = [line[6:] async for line in s.aiter_lines() if line.startswith("data: ")]
        sent = fake.requests[-1]["body"]["messages"]
        only = await client.post("/api/native/agent", headers=h, json={"prompt": "go", "stream": False, "skillIds": [translator["id"]]})
        sent_only = fake.requests[-1]["body"]["messages"]
    assert events[-1] == "[DONE]"
    data = [json.loads(e) for e in events[:-1]]
    assert data[0]["type"] == "init" and sorted(data[0]["skills"]) == ["notes", "translator"]
    assert "".join(d["content"] for d in data if d["type"] == "text") == "Bonjour tout le monde"
    assert data[-1]["type"] == "result" and data[-1]["content"] == "Bonjour tout le monde" and data[-1]["usage"]["total_tokens"] > 0
    system = sent[0]["content"]
    assert "## Skill: translator" in system and "## Skill: notes" in system and "Never seen" not in system
    assert sent[1:] == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                        {"role": "user", "content": "Translate: hello everyone"}]
    assert only.status_code == 200 and only.json()["content"] == "Bonjour tout le monde" and only.json()["skills"] == ["translator"]
    assert "## Skill: notes" not in sent_only[0]["content"]


async def test_agent_refusals(client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    h = user["headers"]
    for body in ({}, {"prompt": ""}, {"prompt": "   "}, {"prompt": "x", "conversation": [{"role": "tool", "content": "x"}]},
                 {"prompt": "x" * 100_001}):
        assert_seed_400(await client.post("/api/native/agent", headers=h, json=body))
    r = await client.post("/api/native/agent", headers=h, json={"prompt": "hello"})
    assert r.status_code == 503 and r.json()["code"] == "ai_provider_not_configured"


async def test_other_peoples_skills_are_never_visible(hub: Any, client: httpx.AsyncClient) -> None:
    me, them = await register(client), await register(client)
    theirs = await make_skill(client, them, TRANSLATOR)
    assert (await client.get("/api/native/skills", headers=me["headers"])).json()["total"] == 0
    async with FakeUpstream().serve() as fake, gateway_with(hub, [provider_for(fake, default_model="fake-chat")]):
        by_id = await client.post("/api/native/skills/run", headers=me["headers"], json={"skillId": theirs["id"], "operation": "detect"})
        by_name = await client.post("/api/native/skills/run", headers=me["headers"], json={"skill": "translator", "operation": "detect"})
        agent = await client.post("/api/native/agent", headers=me["headers"], json={"prompt": "x", "stream": False, "skillIds": [theirs["id"]]})
        plain = await client.post("/api/native/agent", headers=me["headers"], json={"prompt": "x", "stream": False})
        sent = fake.requests[-1]["body"]["messages"]
    for r in (by_id, by_name, agent):
        assert r.status_code == 404 and r.json()["code"] == "skill_not_found"
    assert plain.status_code == 200 and plain.json()["skills"] == [] and "Translator" not in sent[0]["content"]


async def test_the_agent_is_grounded_in_the_persons_own_messages(hub: Any, client: httpx.AsyncClient) -> None:
    from tests.ai.test_grounding import add_account, add_message, index_all

    me, them = await register(client), await register(client)
    mine = await add_message(hub, me["user"]["id"], await add_account(hub, me["user"]["id"]), "The Falcon launch review is on Thursday at 10")
    theirs = await add_message(hub, them["user"]["id"], await add_account(hub, them["user"]["id"]), "Falcon launch codes are 4-4-2")
    await index_all(hub)
    async with FakeUpstream().serve() as fake, gateway_with(hub, [provider_for(fake, default_model="fake-chat")]):
        r = await client.post("/api/native/agent", headers=me["headers"], json={"prompt": "When is the Falcon launch review?", "stream": False})
        sent = fake.requests[-1]["body"]["messages"]
        off = await client.post("/api/native/agent", headers=me["headers"], json={"prompt": "When is the Falcon launch review?", "stream": False, "grounded": False})
        sent_off = fake.requests[-1]["body"]["messages"]
    assert r.status_code == 200, r.text
    ids = [s["id"] for s in r.json()["sources"]]
    assert mine in ids and theirs not in ids
    assert sent[1]["role"] == "system" and "[1]" in sent[1]["content"] and "Thursday at 10" in sent[1]["content"]
    assert "4-4-2" not in json.dumps(sent)
    assert off.json()["sources"] == [] and [m["role"] for m in sent_off] == ["system", "user"]
