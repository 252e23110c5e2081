"""Local model servers found by themselves: loopback fakes of Ollama, llama.cpp's server and
LM Studio on ports the test configures; their models listed under /v1/models, chat (and the
insights LLM method) served through them, `GET /api/ai/chat` naming the provider in use;
probing in the background, never holding a request. Hub-level tests on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import openai
import pytest

from ai.discovery import parse_ports, probe
from ai.gateway import Gateway, gateway_of
from ai.upstreams.http import Http
from config.settings import load_settings
from loomi.hub import Hub
from tests.fakes.local_model_servers import LocalModelServer, discovering_gateway, free_port, installed, silent_port


def sdk(server: Any, who: dict[str, Any]) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=who["token"], base_url=server.url + "/api/ai/v1", max_retries=0)


async def wait_for(condition: Any, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_each_server_is_recognised_by_its_api() -> None:
    http = Http()
    try:
        async with LocalModelServer(flavor="ollama").serve() as ollama, LocalModelServer(flavor="llamacpp").serve() as llama, \
                LocalModelServer(flavor="lmstudio").serve() as lms:
            found = {s.server: s for s in await asyncio.gather(*(probe(http, "127.0.0.1", f.port) for f in (ollama, llama, lms)))}
            assert found["ollama"].models == ("llama3.2:latest", "qwen2.5:0.5b") and "/api/tags" in ollama.probes
            assert found["ollama"].name == f"ollama-{ollama.port}" and found["ollama"].base_url == ollama.base_url
            assert found["llama.cpp"].models == ("smollm2-135m-instruct-q4_k_m.gguf",) and "/health" in llama.probes
            assert found["lm-studio"].models == ("qwen2.5-7b-instruct",)  # its embedding model cannot chat
            assert found["lm-studio"].name == f"lmstudio-{lms.port}"
        assert await probe(http, "127.0.0.1", free_port()) is None  # nothing listening
        async with silent_port() as port:  # a hung server: given up on after the probe timeout
            started = time.monotonic()
            assert await probe(http, "127.0.0.1", port) is None
            assert time.monotonic() - started < 2.0
    finally:
        await http.aclose()


def test_settings_ports_and_switch() -> None:
    assert parse_ports("11434, 8080,1234") == [11434, 8080, 1234]
    with pytest.raises(ValueError, match="not a port"):
        parse_ports("11434,http")
    settings = load_settings({})
    assert settings.ai_discover is True and parse_ports(settings.ai_discover_ports) == [11434, 8080, 1234]
    assert load_settings({"LOOMI_AI_DISCOVER": "false"}).ai_discover is False


async def test_discovery_only_when_nothing_is_configured_and_not_when_off(hub: Hub) -> None:
    base = {"LOOMI_HOME": str(hub.settings.home), "LOOMI_SECRET_KEY": "x"}
    for env, expected in (
        ({}, True),
        ({"LOOMI_AI_DISCOVER": "false"}, False),
        ({"LOOMI_AI_BASE_URL": "http://127.0.0.1:9/v1"}, False),  # an upstream is configured: it is used
    ):
        other = Hub(load_settings({**base, **env}), hub.engine, hub.redis, hub.vault, hub.tokens)
        gateway = Gateway.from_settings(other)
        try:
            assert (gateway.discovery is not None) is expected, env
        finally:
            await gateway.aclose()


async def test_found_servers_serve_models_and_chat(hub: Hub, server: Any, client: httpx.AsyncClient, user: dict) -> None:
    async with LocalModelServer(flavor="ollama").serve() as ollama, LocalModelServer(flavor="llamacpp").serve() as llama, \
            LocalModelServer(flavor="lmstudio").serve() as lms:
        closed = free_port()
        async with installed(hub, discovering_gateway(hub, [ollama.port, llama.port, lms.port, closed])):
            status = (await client.get("/api/ai/chat")).json()
            assert status["chat"] is True and status["status"] == "ok"
            assert status["provider"] == {"name": f"ollama-{ollama.port}", "kind": "openai", "model": "llama3.2:latest",
                                          "local": True, "server": "ollama"}
            assert {d["server"] for d in status["discovered"]} == {"ollama", "llama.cpp", "lm-studio"}
            assert status["defaultModel"] == "llama3.2:latest"

            listed = {m.id: m.owned_by async for m in sdk(server, user).models.list()}
            assert listed["llama3.2:latest"] == f"ollama-{ollama.port}" and listed["qwen2.5:0.5b"] == f"ollama-{ollama.port}"
            assert listed["smollm2-135m-instruct-q4_k_m.gguf"] == f"llamacpp-{llama.port}"
            assert listed["qwen2.5-7b-instruct"] == f"lmstudio-{lms.port}"
            assert "all-minilm-l6-v2" in listed  # the offline embeddings stay

            # a model routes to the server that has it; no key goes to a local server
            reply = await sdk(server, user).chat.completions.create(
                model="smollm2-135m-instruct-q4_k_m.gguf", messages=[{"role": "user", "content": "hi llama"}])
            assert reply.choices[0].message.content == "echo: hi llama" and len(llama.requests) == 1
            assert llama.requests[0]["authorization"] is None
            stream = await sdk(server, user).chat.completions.create(
                model="qwen2.5-7b-instruct", stream=True, stream_options={"include_usage": True},
                messages=[{"role": "user", "content": "hi studio"}])
            chunks = [c async for c in stream]
            assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "echo: hi studio"
            assert chunks[-1].usage is not None and len(lms.requests) == 1
            # the seed's route with no model: the default, on Ollama
            r = await client.post("/api/ai/chat", headers=user["headers"],
                                  json={"messages": [{"role": "user", "content": "hi default"}], "grounded": False})
            assert r.status_code == 200, r.text
            assert r.json()["choices"][0]["message"]["content"] == "echo: hi default"
            assert ollama.requests[-1]["body"]["model"] == "llama3.2:latest"
            await gateway_of(hub).usage.drain()
    ledger = (await client.get("/api/billing/ledger", headers=user["headers"], params={"source": "usage"})).json()["items"]
    assert any(f"via llamacpp-{llama.port}" in i["description"] for i in ledger)


async def test_servers_come_and_go_between_rounds(hub: Hub, client: httpx.AsyncClient, user: dict) -> None:
    port = free_port()
    async with installed(hub, discovering_gateway(hub, [port], every=0.1)) as gateway:
        first = (await client.get("/api/ai/chat")).json()
        assert first["chat"] is False and first["provider"] is None and first["discovered"] == []
        r = await client.post("/api/ai/chat", headers=user["headers"], json={"messages": [{"role": "user", "content": "x"}]})
        assert r.status_code == 503 and r.json()["code"] == "ai_provider_not_configured"
        async with LocalModelServer(flavor="llamacpp").serve(port=port):
            await wait_for(lambda: gateway.table.serves("chat"))
            status = (await client.get("/api/ai/chat")).json()
            assert status["provider"]["name"] == "llamacpp-%d" % port and status["provider"]["server"] == "llama.cpp"
        await wait_for(lambda: not gateway.table.serves("chat"))  # gone: chat is unavailable again
        assert (await client.get("/api/ai/chat")).json()["chat"] is False


async def test_probing_never_holds_a_request(hub: Hub, client: httpx.AsyncClient, user: dict) -> None:
    async with silent_port() as hung, LocalModelServer(flavor="ollama").serve() as ollama:
        async with installed(hub, discovering_gateway(hub, [hung, ollama.port], every=0.05)) as gateway:
            await gateway.ready()
            assert gateway.table.serves("chat")
            # rounds keep running (each waits on the hung port); requests do not wait for them
            for _ in range(10):
                started = time.monotonic()
                r = await client.get("/api/ai/chat")
                assert r.status_code == 200 and r.json()["chat"] is True
                assert time.monotonic() - started < 0.3, "a request waited for a probe"
                await asyncio.sleep(0.03)


async def test_insights_llm_method_uses_the_found_server(hub: Hub, client: httpx.AsyncClient, user: dict) -> None:
    from tests.insights.conftest import load, msg

    answer = {
        "title": "Lunch with Bob", "description": "Bob asked about lunch on Friday.", "importance": "low", "urgency": "low",
        "categories": ["Other"], "people": ["Bob"], "myTasks": [{"text": "Answer Bob about lunch", "sources": [1]}],
        "waitingForMe": [], "waitingForOthers": [], "nextActions": ["Reply to Bob"], "isUnreplied": True, "dueDate": None,
    }
    await load(client, user, [msg(1, "lunch on friday?", chat="D-bob")])
    async with LocalModelServer(flavor="ollama", reply=json.dumps(answer)).serve() as ollama:
        async with installed(hub, discovering_gateway(hub, [ollama.port])) as gateway:
            await gateway.ready()
            r = await client.post("/api/insights/generate", json={"chatId": "D-bob", "method": "llm"}, headers=user["headers"])
            assert r.status_code == 200, r.text
            insight = r.json()["insights"][0]
    assert insight["method"] == "llm" and insight["model"] == "llama3.2:latest" and insight["title"] == "Lunch with Bob"
    assert len(ollama.requests) >= 1 and ollama.requests[0]["body"]["model"] == "llama3.2:latest"


async def test_loomi_serve_looks_at_start_before_any_request(tmp_path: Any) -> None:
    """The real `loomi serve` process (SQLite, embedded Redis): it finds the server on its own."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    async with LocalModelServer(flavor="ollama").serve() as ollama:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOOMI_")}
        env.update({"PYTHONPATH": str(root), "LOOMI_HOME": str(tmp_path), "LOOMI_AI_DISCOVER_PORTS": str(ollama.port),
                    "LOOMI_IN_PROCESS_WORKER": "false", "LOOMI_LOG_LEVEL": "info"})
        log = tmp_path / "serve.log"
        with open(log, "wb") as err:
            process = subprocess.Popen([sys.executable, "-m", "loomi.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
                                       cwd=root, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            assert process.stdout is not None
            url = ""
            for _ in range(20):
                line = await asyncio.to_thread(process.stdout.readline)
                if "listening on " in line:
                    url = line.split("listening on ", 1)[1].strip()
                    break
            assert url
            await wait_for(lambda: "local model servers: ollama" in log.read_text(), 30)
            assert ollama.probes and "/api/tags" in ollama.probes  # asked before anyone asked the hub
            async with httpx.AsyncClient(base_url=url) as http:
                status = (await http.get("/api/ai/chat")).json()
            assert status["provider"]["name"] == f"ollama-{ollama.port}" and status["provider"]["local"] is True
        finally:
            process.terminate()
            await asyncio.to_thread(process.wait, 30)
