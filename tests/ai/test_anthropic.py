"""Anthropic-format upstreams (`kind = "anthropic"`): OpenAI-shaped requests, streams and tool
calls translated to the Messages API and back, with usage in the ledger.

The fake (tests/fakes/anthropic_upstream.py) is first checked with the official `anthropic`
client, so it speaks what that client accepts; then the official `openai` client talks to the
hub, which talks to the fake. Hub-level tests run on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import openai
import pytest

from ai.gateway import gateway_of
from ai.providers import Price, load_table
from config.settings import load_settings
from tests.conftest import register
from tests.fakes.anthropic_upstream import FakeAnthropic, provider_for
from tests.fakes.openai_upstream import gateway_with

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}, "required": ["city"]},
    },
}


def sdk(server: Any, who: dict[str, Any]) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=who["token"], base_url=server.url + "/api/ai/v1", max_retries=0)


# -- the fake speaks what the official anthropic client accepts --------------------------------------


async def test_fake_is_accepted_by_the_official_anthropic_client() -> None:
    async with FakeAnthropic().serve() as fake:
        client = anthropic.AsyncAnthropic(api_key=fake.api_key, base_url=fake.url, max_retries=0)
        message = await client.messages.create(model="claude-fake-1", max_tokens=100, system="Be brief.",
                                               messages=[{"role": "user", "content": "hello there"}])
        assert message.content[0].text == "echo: hello there" and message.stop_reason == "end_turn"
        assert message.usage.input_tokens > 0 and message.usage.output_tokens == 3
        async with client.messages.stream(model="claude-fake-1", max_tokens=100, messages=[{"role": "user", "content": "a b c"}]) as stream:
            text = "".join([t async for t in stream.text_stream])
            final = await stream.get_final_message()
        assert text == "echo: a b c" and final.stop_reason == "end_turn" and final.usage.output_tokens == 4
        tools = [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER_TOOL["function"]["parameters"]}]
        async with client.messages.stream(model="claude-fake-1", max_tokens=100, tools=tools,
                                          messages=[{"role": "user", "content": "weather?"}]) as stream:
            final = await stream.get_final_message()
        use = [b for b in final.content if b.type == "tool_use"][0]
        assert final.stop_reason == "tool_use" and use.name == "get_weather" and use.input == fake.tool_input
        assert [m.id for m in (await client.models.list()).data] == fake.models
        with pytest.raises(anthropic.AuthenticationError):
            await anthropic.AsyncAnthropic(api_key="wrong", base_url=fake.url, max_retries=0).messages.create(
                model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}])


# -- through the hub, with the official openai client --------------------------------------------------


async def test_chat_translates_system_max_tokens_and_usage(hub: Any, server: Any, client: httpx.AsyncClient) -> None:
    me = await register(client)
    priced = {"claude-fake-1": Price(input=3.0, output=15.0)}
    async with FakeAnthropic().serve() as fake, gateway_with(hub, [provider_for(fake, pricing=priced)]) as gw:
        reply = await sdk(server, me).chat.completions.create(
            model="claude-fake-1", temperature=0.2, stop="END",
            messages=[{"role": "system", "content": "You are terse."}, {"role": "user", "content": "how are you"}],
        )
        sent = fake.requests[-1]
        assert sent["headers"]["x-api-key"] == fake.api_key and sent["headers"]["anthropic-version"]
        assert "authorization" not in sent["headers"]  # the hub token never goes upstream
        body = sent["body"]
        assert body["system"] == "You are terse." and body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "how are you"}]}]
        assert body["max_tokens"] == 4096 and body["temperature"] == 0.2 and body["stop_sequences"] == ["END"]
        assert reply.choices[0].message.content == "echo: how are you" and reply.choices[0].finish_reason == "stop"
        assert reply.usage.completion_tokens == 4 and reply.usage.prompt_tokens == body_tokens(body)

        cut = await sdk(server, me).chat.completions.create(model="claude-fake-1", max_tokens=2,
                                                            messages=[{"role": "user", "content": "one two three"}])
        assert fake.requests[-1]["body"]["max_tokens"] == 2
        assert cut.choices[0].message.content == "echo: one" and cut.choices[0].finish_reason == "length"
        await gw.usage.drain()
    items = (await client.get("/api/billing/ledger", headers=me["headers"], params={"source": "usage"})).json()["items"]
    assert len(items) == 2
    first = items[-1]
    assert "claude-fake-1 via claude" in first["description"] and f"{reply.usage.prompt_tokens}+4 tokens" in first["description"]
    assert first["delta"] == pytest.approx(-(reply.usage.prompt_tokens * 3.0 + 4 * 15.0) / 1e6, abs=1e-6)


def body_tokens(body: dict[str, Any]) -> int:
    """What the fake counts as input tokens for `body` (words of system and messages, plus 3)."""
    def words(value: Any) -> int:
        return len(value.split()) if isinstance(value, str) else len(json.dumps(value, separators=(",", ":")).split())
    return words(body.get("system") or "") + sum(words(m["content"]) for m in body["messages"]) + 3


async def test_stream_comes_back_as_openai_chunks_with_usage(hub: Any, server: Any, client: httpx.AsyncClient) -> None:
    me = await register(client)
    async with FakeAnthropic().serve() as fake, gateway_with(hub, [provider_for(fake)]) as gw:
        stream = await sdk(server, me).chat.completions.create(
            model="claude-fake-2", stream=True, stream_options={"include_usage": True},
            messages=[{"role": "user", "content": "stream these words"}],
        )
        chunks = [c async for c in stream]
        await gw.usage.drain()
    assert fake.requests[-1]["body"]["stream"] is True
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: stream these words"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4 and chunks[-1].usage.prompt_tokens > 0
    assert all(c.id.startswith("msg_fake") and c.model == "claude-fake-2" for c in chunks)
    items = (await client.get("/api/billing/ledger", headers=me["headers"], params={"source": "usage"})).json()["items"]
    assert len(items) == 1 and f"{chunks[-1].usage.prompt_tokens}+4 tokens" in items[0]["description"]


async def test_tool_calls_round_trip(hub: Any, server: Any, client: httpx.AsyncClient) -> None:
    me = await register(client)
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    async with FakeAnthropic().serve() as fake, gateway_with(hub, [provider_for(fake)]):
        first = await sdk(server, me).chat.completions.create(model="claude-fake-1", messages=question,
                                                              tools=[WEATHER_TOOL], tool_choice="required", parallel_tool_calls=False)
        sent = fake.requests[-1]["body"]
        assert sent["tools"] == [{"name": "get_weather", "description": "Weather in a city", "input_schema": WEATHER_TOOL["function"]["parameters"]}]
        assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
        choice = first.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content == "Let me check."
        call = choice.message.tool_calls[0]
        assert call.type == "function" and call.function.name == "get_weather" and json.loads(call.function.arguments) == fake.tool_input

        # the same, streamed: tool call deltas the SDK can assemble
        stream = await sdk(server, me).chat.completions.create(model="claude-fake-1", messages=question, tools=[WEATHER_TOOL], stream=True)
        calls: dict[int, dict[str, str]] = {}
        finish = None
        async for chunk in stream:
            for c in chunk.choices:
                finish = c.finish_reason or finish
                for delta in c.delta.tool_calls or []:
                    slot = calls.setdefault(delta.index, {"id": "", "name": "", "arguments": ""})
                    slot["id"] += delta.id or ""
                    slot["name"] += (delta.function.name or "") if delta.function else ""
                    slot["arguments"] += (delta.function.arguments or "") if delta.function else ""
        assert finish == "tool_calls" and calls[0]["name"] == "get_weather" and calls[0]["id"].startswith("toolu_")
        assert json.loads(calls[0]["arguments"]) == fake.tool_input
        assert "tool_choice" not in fake.requests[-1]["body"]  # none asked: the upstream decides

        # the answer goes back: assistant tool_calls -> tool_use, tool message -> tool_result
        follow = question + [
            {"role": "assistant", "content": choice.message.content,
             "tool_calls": [{"id": call.id, "type": "function", "function": {"name": call.function.name, "arguments": call.function.arguments}}]},
            {"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"},
        ]
        final = await sdk(server, me).chat.completions.create(model="claude-fake-1", messages=follow, tools=[WEATHER_TOOL])
        turns = fake.requests[-1]["body"]["messages"]
        assert [t["role"] for t in turns] == ["user", "assistant", "user"]
        assert turns[1]["content"][1] == {"type": "tool_use", "id": call.id, "name": "get_weather", "input": fake.tool_input}
        assert turns[2]["content"] == [{"type": "tool_result", "tool_use_id": call.id, "content": [{"type": "text", "text": "18 degrees and sunny"}]}]
        assert final.choices[0].message.content == "tool said: 18 degrees and sunny" and final.choices[0].finish_reason == "stop"


async def test_upstream_errors_map_and_fall_back(hub: Any, server: Any, client: httpx.AsyncClient) -> None:
    me = await register(client)
    async with FakeAnthropic(fail_next=1).serve() as flaky, FakeAnthropic(name="backup").serve() as backup:
        async with gateway_with(hub, [provider_for(flaky), provider_for(backup)]):
            reply = await sdk(server, me).chat.completions.create(model="claude-fake-1", messages=[{"role": "user", "content": "hi"}])
            assert reply.choices[0].message.content == "echo: hi" and len(backup.requests) == 1  # 529 overloaded: the next provider
        bad_key = provider_for(backup, api_key="wrong-key-for-upstream")
        async with gateway_with(hub, [bad_key], offline=False):
            with pytest.raises(openai.APIStatusError) as caught:
                await sdk(server, me).chat.completions.create(model="claude-fake-1", messages=[{"role": "user", "content": "hi"}])
            assert caught.value.status_code == 502 and caught.value.code == "upstream_auth_failed"
            assert "wrong-key" not in str(caught.value)
            with pytest.raises(openai.APIStatusError) as caught:  # an Anthropic provider serves chat only
                await sdk(server, me).embeddings.create(model="claude-fake-1", input="x")
            assert caught.value.status_code == 503 and caught.value.code == "ai_provider_not_configured"


async def test_models_lists_what_the_anthropic_upstream_reports(hub: Any, server: Any, client: httpx.AsyncClient) -> None:
    me = await register(client)
    async with FakeAnthropic().serve() as fake, gateway_with(hub, [provider_for(fake)]):
        ids = {m.id: m.owned_by async for m in sdk(server, me).models.list()}
    assert ids["claude-fake-1"] == "claude" and ids["claude-fake-2"] == "claude"


def test_providers_file_kind_anthropic(tmp_path: Any) -> None:
    path = tmp_path / "providers.toml"
    path.write_text('[[providers]]\nname = "claude"\nkind = "anthropic"\nbase_url = "https://api.anthropic.com"\n'
                    'api_key = "sk-ant-x"\nmodels = ["claude-sonnet-4-5"]\n')
    table = load_table(load_settings({"LOOMI_AI_PROVIDERS_FILE": str(path)}))
    provider = table.by_name["claude"]
    assert provider.kind == "anthropic" and provider.capabilities == frozenset({"chat"})
    assert [t.provider.name for t in table.route("chat", "claude-sonnet-4-5")] == ["claude"]
    assert table.route("embeddings", "claude-sonnet-4-5") == []


async def test_gateway_status_names_the_anthropic_provider(hub: Any, client: httpx.AsyncClient) -> None:
    async with FakeAnthropic().serve() as fake, gateway_with(hub, [provider_for(fake, models=("claude-fake-1",))]):
        status = (await client.get("/api/ai/chat")).json()
        assert status["chat"] is True and "claude" in status["providers"]
    assert gateway_of(hub) is not None
