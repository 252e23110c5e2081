"""The LLM method against the loopback OpenAI-compatible fake (tests/fakes/openai_upstream.py):
a valid answer, an invalid one then a valid one, two invalid ones, the upstream down; what the
fake received is checked for secrets (redaction on the wire), and usage lands in the ledger."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import httpx

from ai.gateway import gateway_of
from tests.fakes.openai_upstream import FakeUpstream, gateway_with, provider_for
from tests.insights.conftest import load, msg

KEY = "sk-live-4f9aK2mQ8vX1zR7tY3pL0wE6"
CARD = "4242 4242 4242 4242"


@dataclass
class ScriptedUpstream(FakeUpstream):
    """The fake, answering from a script (one reply per request, the last one repeats)."""

    script: list[str] = field(default_factory=list)

    def _reply(self, body: dict[str, Any]) -> str:
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]


def answer(**over: Any) -> str:
    base = {
        "title": "Rotate the staging key",
        "description": "Raj shared a key and asked to rotate it after the demo.",
        "importance": "high", "urgency": "medium", "categories": ["R&D"], "people": ["Raj"],
        "myTasks": [{"text": "Rotate [SECRET_1] after the demo", "sources": [1, 2], "due": "2026-03-03"}],
        "waitingForMe": [], "waitingForOthers": [], "nextActions": ["Rotate [SECRET_1]"],
        "isUnreplied": True, "dueDate": "2026-03-03",
    }
    base.update(over)
    return json.dumps(base)


def chat() -> list[dict]:
    who = ("U-raj", "Raj")
    return [
        msg(1, f"here's the staging key: {KEY} (test card {CARD})", sender=who, chat="D-raj"),
        msg(2, "rotate it tomorrow pls", sender=who, chat="D-raj"),
    ]


def wire(fake: FakeUpstream) -> str:
    return json.dumps([r["body"] for r in fake.requests if r["path"].endswith("/chat/completions")])


async def _generate(client: httpx.AsyncClient, user: dict, chat_id: str = "D-raj") -> dict:
    r = await client.post("/api/insights/generate", json={"chatId": chat_id, "method": "llm"}, headers=user["headers"])
    assert r.status_code == 200, r.text
    return r.json()["insights"][0]


async def test_valid_answer_is_used_secrets_never_leave_and_usage_is_billed(hub, client: httpx.AsyncClient, user: dict) -> None:
    ids = await load(client, user, chat())
    async with ScriptedUpstream(script=[answer()]).serve() as fake, gateway_with(hub, [provider_for(fake)], default_model="fake-chat"):
        insight = await _generate(client, user)
        await gateway_of(hub).usage.drain()
    assert insight["method"] == "llm" and insight["model"] == "fake-chat"
    assert insight["myTasks"][0]["text"] == f"Rotate {KEY} after the demo"  # restored where quoted
    assert insight["myTasks"][0]["sourceMessageIds"] == [ids["D-raj-1"], ids["D-raj-2"]]
    assert insight["myTasks"][0]["due"] == "2026-03-03T23:59:59.999Z" and insight["importance"] == "high"
    sent = wire(fake)
    assert len(fake.requests) == 1 and KEY not in sent and "4242 4242" not in sent
    assert "[SECRET_1]" in sent and "[SECRET_2]" in sent and "rotate it tomorrow pls" in sent
    body = fake.requests[0]["body"]
    assert body["model"] == "fake-chat" and body["temperature"] == 0
    ledger = (await client.get("/api/billing/ledger", headers=user["headers"])).json()["items"]
    assert any(item["source"] == "usage" and item["description"].startswith("insights") for item in ledger)


async def test_invalid_then_valid_is_retried_with_the_error(hub, client: httpx.AsyncClient, user: dict) -> None:
    await load(client, user, chat())
    bad = answer(urgency="extreme", myTasks=[{"text": "x", "sources": [9]}])
    async with ScriptedUpstream(script=[bad, answer()]).serve() as fake, gateway_with(hub, [provider_for(fake)], default_model="fake-chat"):
        insight = await _generate(client, user)
    assert insight["method"] == "llm" and len(fake.requests) == 2
    retry = fake.requests[1]["body"]["messages"]
    assert retry[-1]["role"] == "user" and "invalid" in retry[-1]["content"] and "urgency" in retry[-1]["content"]
    assert KEY not in wire(fake)  # the echoed bad answer and the error are redacted too


async def test_invalid_twice_keeps_the_offline_insight(hub, client: httpx.AsyncClient, user: dict) -> None:
    ids = await load(client, user, chat())
    async with ScriptedUpstream(script=["Sure! Here is the insight you asked for."]).serve() as fake, \
            gateway_with(hub, [provider_for(fake)], default_model="fake-chat"):
        insight = await _generate(client, user)
    assert len(fake.requests) == 2 and insight["method"] == "offline" and insight["model"] is None
    assert [t["sourceMessageIds"] for t in insight["myTasks"]] == [[ids["D-raj-2"]]]


async def test_upstream_down_keeps_the_offline_insight(hub, client: httpx.AsyncClient, user: dict) -> None:
    await load(client, user, chat())
    async with ScriptedUpstream(script=[answer()], fail_next=10, fail_status=503).serve() as fake, \
            gateway_with(hub, [provider_for(fake)], default_model="fake-chat"):
        insight = await _generate(client, user)
    assert fake.requests and insight["method"] == "offline"


async def test_only_new_messages_are_sent_with_the_previous_insight(hub, client: httpx.AsyncClient, user: dict) -> None:
    await load(client, user, chat())
    async with ScriptedUpstream(script=[answer()]).serve() as fake, gateway_with(hub, [provider_for(fake)], default_model="fake-chat"):
        await _generate(client, user)
        await load(client, user, [msg(3, "Done, rotated it.", me=True, chat="D-raj")])
        fake.script = [answer(myTasks=[], isUnreplied=False, title="Key rotated")]
        insight = await _generate(client, user)
    assert insight["title"] == "Key rotated" and insight["myTasks"] == []
    second = fake.requests[-1]["body"]["messages"][-1]["content"]
    assert "Done, rotated it." in second and "rotate it tomorrow pls" not in second and "PREVIOUS:" in second
    assert KEY not in second


async def test_auto_without_a_provider_is_offline(client: httpx.AsyncClient, user: dict) -> None:
    await load(client, user, chat())
    r = await client.post("/api/insights/generate", json={"chatId": "D-raj"}, headers=user["headers"])
    assert r.json()["insights"][0]["method"] == "offline"
