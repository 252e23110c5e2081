"""The OpenAI-compatible gateway, driven by the official `openai` and `anthropic` clients.

Against the offline defaults (no upstream configured) and against a fake OpenAI-compatible
upstream on 127.0.0.1 that can fail, stall and stream slowly, on both databases.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import anthropic
import httpx
import numpy as np
import openai
import pytest

from ai import audio
from ai.local.embeddings import get_embedder
from ai.local.tokens import count_message_tokens, count_tokens
from ai.providers import Price, ProviderConfigError, load_table
from ai.upstreams.local import local_provider
from config.settings import load_settings
from tests.fakes.openai_upstream import FakeUpstream, fake_vector, gateway_with, provider_for

HELLO = [{"role": "user", "content": "hi there"}]


def sdk(server: Any, user: dict[str, Any]) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=user["token"], base_url=server.url + "/api/ai/v1", max_retries=0)


# -- status and offline defaults ----------------------------------------------------------------


async def test_status_needs_no_auth_and_reports_offline_abilities(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/ai/chat")
    assert r.status_code == 200
    body = r.json()
    assert body["chat"] is False and body["status"] == "unavailable"
    assert body["offline"]["embeddings"] is True and body["providers"] == []


async def test_offline_chat_is_a_clear_503(server: Any, client: httpx.AsyncClient, user: dict) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk(server, user).chat.completions.create(model="gpt-4o-mini", messages=HELLO)
    assert caught.value.status_code == 503 and caught.value.code == "ai_provider_not_configured"
    # the seed's route keeps the seed's error shape
    r = await client.post("/api/ai/chat", headers=user["headers"], json={"messages": HELLO, "stream": True})
    assert r.status_code == 503 and r.json()["code"] == "ai_provider_not_configured" and "error" in r.json()


async def test_bad_key_raises_authentication_error(server: Any) -> None:
    bad = openai.AsyncOpenAI(api_key="not-a-hub-token", base_url=server.url + "/api/ai/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        await bad.models.list()
    assert caught.value.status_code == 401 and caught.value.code == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        await bad.chat.completions.create(model="x", messages=HELLO)
    with pytest.raises(openai.AuthenticationError):
        await bad.embeddings.create(model="all-minilm-l6-v2", input="x")


async def test_offline_embeddings_float_and_base64(server: Any, user: dict) -> None:
    client = sdk(server, user)
    texts = ["The invoice is due on Friday", "Payment for the bill is expected this Friday", "Penguins live in Antarctica"]
    as_base64 = await client.embeddings.create(model="all-minilm-l6-v2", input=texts)  # the SDK's default: base64
    as_float = await client.embeddings.create(model="all-minilm-l6-v2", input=texts, encoding_format="float")
    a = np.array([d.embedding for d in as_base64.data], dtype=np.float32)
    b = np.array([d.embedding for d in as_float.data], dtype=np.float32)
    assert a.shape == (3, 384) and np.allclose(a, b, atol=1e-6)
    assert np.allclose(a, get_embedder().embed(texts), atol=1e-5)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-4)
    assert a[0] @ a[1] > a[0] @ a[2] + 0.2  # paraphrase closer than unrelated
    assert as_float.model == "all-minilm-l6-v2" and as_float.usage.prompt_tokens > 10


async def test_raw_base64_is_little_endian_float32(client: httpx.AsyncClient, user: dict) -> None:
    import base64

    r = await client.post("/api/ai/v1/embeddings", headers=user["headers"],
                          json={"model": "all-minilm-l6-v2", "input": "hello", "encoding_format": "base64"})
    assert r.status_code == 200
    vector = np.frombuffer(base64.b64decode(r.json()["data"][0]["embedding"]), dtype="<f4")
    assert vector.shape == (384,) and np.allclose(vector, get_embedder().embed(["hello"])[0], atol=1e-6)


async def test_offline_embeddings_stand_in_for_any_model_name_and_refuse_bad_input(server: Any, user: dict) -> None:
    client = sdk(server, user)
    result = await client.embeddings.create(model="text-embedding-3-small", input="hello")
    assert result.model == "all-minilm-l6-v2" and len(result.data[0].embedding) == 384
    with pytest.raises(openai.BadRequestError):
        await client.embeddings.create(model="all-minilm-l6-v2", input="hello", dimensions=99)
    with pytest.raises(openai.BadRequestError):
        await client.embeddings.create(model="all-minilm-l6-v2", input=[[1, 2, 3]])


async def test_models_offline(server: Any, user: dict) -> None:
    ids = [m.id async for m in sdk(server, user).models.list()]
    assert "all-minilm-l6-v2" in ids
    assert (await sdk(server, user).models.retrieve("all-minilm-l6-v2")).id == "all-minilm-l6-v2"
    with pytest.raises(openai.NotFoundError):
        await sdk(server, user).models.retrieve("no-such-model")


async def test_anthropic_count_tokens(server: Any, user: dict) -> None:
    messages = [{"role": "user", "content": "How many tokens is this sentence, roughly?"}]
    for client in (
        anthropic.AsyncAnthropic(api_key=user["token"], base_url=server.url + "/api/ai", max_retries=0),  # x-api-key
        anthropic.AsyncAnthropic(auth_token=user["token"], base_url=server.url + "/api/ai", max_retries=0),  # Bearer
    ):
        counted = await client.messages.count_tokens(model="claude-sonnet-4-5", system="Be brief.", messages=messages)
        expected = count_message_tokens([{"role": "system", "content": "Be brief."}, *messages], "claude-sonnet-4-5")
        assert counted.input_tokens == expected and expected > 10
    bad = anthropic.AsyncAnthropic(api_key="wrong", base_url=server.url + "/api/ai", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        await bad.messages.count_tokens(model="claude-sonnet-4-5", messages=messages)


async def test_validation_errors_have_openai_shape(client: httpx.AsyncClient, server: Any, user: dict) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk(server, user).chat.completions.create(model="x", messages=[])
    assert caught.value.code == "invalid_input" and "messages" in caught.value.message
    r = await client.get("/api/ai/v1/no/such/path", headers=user["headers"])
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    r = await client.get("/api/ai/v1/no/such/path")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


async def test_without_the_audio_extra_images_speech_transcriptions_are_503(hub: Any, server: Any, user: dict) -> None:
    core_only = dataclasses.replace(local_provider(), capabilities=frozenset({"embeddings"}))  # as a core install
    async with gateway_with(hub, [core_only], offline=False):
        client = sdk(server, user)
        calls = [
            client.images.generate(prompt="a cat", model="dall-e-3"),
            client.audio.speech.create(model="tts-1", voice="alloy", input="hello"),
            client.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"RIFF0000WAVE", "audio/wav")),
        ]
        for call in calls:
            with pytest.raises(openai.APIStatusError) as caught:
                await call
            assert caught.value.status_code == 503 and caught.value.code == "ai_provider_not_configured"
            assert "LOOMI_AI_BASE_URL" in caught.value.message
        assert len((await client.embeddings.create(model="all-minilm-l6-v2", input="still here")).data) == 1


@pytest.mark.skipif(not (audio.speech_available() and audio.transcription_available()), reason="offline-audio extra not installed")
async def test_offline_speech_then_transcription_roundtrip(server: Any, user: dict) -> None:
    client = sdk(server, user)
    speech = await client.audio.speech.create(model="tts-1", voice="alloy", input="The budget meeting is on Thursday.")
    assert speech.response.headers["content-type"] == "audio/wav" and speech.content[:4] == b"RIFF" and len(speech.content) > 20_000
    text = await client.audio.transcriptions.create(model="whisper-1", file=("speech.wav", speech.content, "audio/wav"))
    assert "budget meeting" in text.text.lower() and "thursday" in text.text.lower()
    with pytest.raises(openai.BadRequestError):
        await client.audio.speech.create(model="tts-1", voice="alloy", input="hi", response_format="mp3")


async def test_upload_stores_the_file_for_its_owner(hub: Any, client: httpx.AsyncClient, user: dict) -> None:
    r = await client.post("/api/ai/v1/upload", headers=user["headers"],
                          files={"file": ("../../notes.txt", b"meeting notes\n", "text/plain")}, data={"purpose": "assistants"})
    assert r.status_code == 200, r.text
    item = r.json()
    assert item["object"] == "file" and item["bytes"] == 14 and item["filename"] == "notes.txt" and item["purpose"] == "assistants"
    stored = Path(hub.settings.home) / "ai-uploads" / user["user"]["id"] / item["id"]  # named by id, not by upload name
    assert stored.read_bytes() == b"meeting notes\n"
    r = await client.post("/api/ai/v1/upload", headers=user["headers"], json={"file": "x"})
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    r = await client.post("/api/ai/v1/upload", files={"file": ("a.txt", b"x", "text/plain")})
    assert r.status_code == 401


# -- through a fake upstream ---------------------------------------------------------------------


async def test_stream_with_usage_through_upstream(hub: Any, server: Any, user: dict) -> None:
    async with FakeUpstream().serve() as fake, gateway_with(hub, [provider_for(fake)]):
        stream = await sdk(server, user).chat.completions.create(
            model="fake-chat", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: hi there"
    assert len([c for c in chunks if c.choices]) >= 4  # passed through chunk by chunk, not buffered
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (3, 3)  # the upstream's own count
    assert all(c.usage is None for c in chunks[:-1])
    sent = fake.requests[-1]
    assert sent["authorization"] == f"Bearer {fake.api_key}" and user["token"] not in json.dumps(sent)
    assert sent["body"]["stream_options"]["include_usage"] is True and sent["body"]["model"] == "fake-chat"


async def test_upstream_connections_are_reused_across_streams(hub: Any, server: Any, user: dict) -> None:
    async with FakeUpstream().serve() as fake, gateway_with(hub, [provider_for(fake)]):
        for _ in range(3):
            stream = await sdk(server, user).chat.completions.create(model="fake-chat", messages=HELLO, stream=True)
            assert [c async for c in stream]
    assert len({r["client_port"] for r in fake.requests}) == 1  # one kept-alive connection, no handshake per stream


async def test_stream_without_usage_request_hides_it_but_upstream_is_still_asked(hub: Any, server: Any, user: dict) -> None:
    async with FakeUpstream().serve() as fake, gateway_with(hub, [provider_for(fake)]):
        stream = await sdk(server, user).chat.completions.create(model="fake-chat", messages=HELLO, stream=True)
        chunks = [chunk async for chunk in stream]
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)
    assert fake.requests[-1]["body"]["stream_options"]["include_usage"] is True  # the ledger needs it


async def test_usage_is_counted_when_the_upstream_sends_none(hub: Any, server: Any, user: dict) -> None:
    async with FakeUpstream(send_usage=False, reply="one two three four five").serve() as fake, gateway_with(hub, [provider_for(fake)]):
        stream = await sdk(server, user).chat.completions.create(
            model="fake-chat", messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
        whole = await sdk(server, user).chat.completions.create(model="fake-chat", messages=HELLO)
    usage = chunks[-1].usage
    assert usage.completion_tokens == count_tokens("one two three four five", "fake-chat")
    assert usage.prompt_tokens == count_message_tokens(HELLO, "fake-chat")
    assert whole.usage.completion_tokens == usage.completion_tokens


async def test_non_stream_through_upstream(hub: Any, server: Any, user: dict) -> None:
    async with FakeUpstream().serve() as fake, gateway_with(hub, [provider_for(fake)]):
        result = await sdk(server, user).chat.completions.create(model="fake-chat", messages=HELLO, temperature=0.2, seed=7)
    assert result.choices[0].message.content == "echo: hi there"
    assert result.usage.total_tokens == 6
    assert fake.requests[-1]["body"]["temperature"] == 0.2 and fake.requests[-1]["body"]["seed"] == 7  # passed through


async def test_seed_chat_route_streams_sse(hub: Any, client: httpx.AsyncClient, user: dict) -> None:
    async with FakeUpstream().serve() as fake, gateway_with(hub, [provider_for(fake, default_model="fake-chat")]):
        async with client.stream("POST", "/api/ai/chat", headers=user["headers"],
                                 json={"messages": [{"role": "user", "content": "Hello!"}], "stream": True}) as r:
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
            lines = [line async for line in r.aiter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert "".join(e["choices"][0]["delta"].get("content") or "" for e in events) == "echo: Hello!"
    assert events[0]["sources"] == [] and "sources" not in events[1]
    assert fake.requests[-1]["body"]["model"] == "fake-chat"  # the configured default model


async def test_no_model_anywhere_is_a_400_and_embeddings_fall_to_offline(hub: Any, client: httpx.AsyncClient, user: dict) -> None:
    async with FakeUpstream().serve() as fake, gateway_with(hub, [provider_for(fake)]):  # no default model
        r = await client.post("/api/ai/chat", headers=user["headers"], json={"messages": HELLO})
        assert r.status_code == 400 and r.json()["code"] == "model_required"
        r = await client.post("/api/ai/v1/embeddings", headers=user["headers"], json={"input": "no model named"})
        assert r.status_code == 200 and r.json()["model"] == "all-minilm-l6-v2"
    assert fake.requests == []


async def test_retry_then_fallback_to_next_provider(hub: Any, server: Any, user: dict) -> None:
    async with FakeUpstream(name="a", fail_next=5, fail_status=503).serve() as a, FakeUpstream(name="b").serve() as b:
        async with gateway_with(hub, [provider_for(a, retries=1), provider_for(b)]):
            result = await sdk(server, user).chat.completions.create(model="fake-chat", messages=HELLO)
            stream = await sdk(server, user).chat.completions.create(model="fake-chat", messages=HELLO, stream=True)
            streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert result.id.startswith("chatcmpl-b") and streamed == "echo: hi there"
    assert len(a.requests) == 4 and len(b.requests) == 2  # a: 1 try + 1 retry, twice; then b


async def test_fallback_on_timeout_and_alias_order(hub: Any, server: Any, user: dict) -> None:
    async with FakeUpstream(name="slow", first_byte_delay=3).serve() as slow, FakeUpstream(name="quick").serve() as quick:
        providers = [provider_for(slow, timeout=0.3, models=("big",)), provider_for(quick, models=("small",))]
        async with gateway_with(hub, providers, aliases={"smart": ["slow/big", "quick/small"]}):
            loop = asyncio.get_running_loop()
            started = loop.time()
            result = await sdk(server, user).chat.completions.create(model="smart", messages=HELLO)
            elapsed = loop.time() - started
            ids = [m.id async for m in sdk(server, user).models.list()]
    assert result.id.startswith("chatcmpl-quick") and quick.requests[-1]["body"]["model"] == "small"
    assert elapsed < 2.5  # the slow upstream was abandoned at its timeout, not waited for
    assert {"smart", "big", "small", "all-minilm-l6-v2"} <= set(ids)


async def test_all_providers_failing_is_an_upstream_error(hub: Any, server: Any, user: dict) -> None:
    async with FakeUpstream(fail_next=100, fail_status=500).serve() as fake, gateway_with(hub, [provider_for(fake)]):
        with pytest.raises(openai.InternalServerError) as caught:
            await sdk(server, user).chat.completions.create(model="fake-chat", messages=HELLO, stream=True)
    assert caught.value.status_code == 502 and caught.value.code == "upstream_unavailable"


async def test_unknown_model_with_only_listed_models_is_404(hub: Any, server: Any, user: dict) -> None:
    async with FakeUpstream().serve() as fake, gateway_with(hub, [provider_for(fake, models=("fake-chat",))]):
        with pytest.raises(openai.NotFoundError) as caught:
            await sdk(server, user).chat.completions.create(model="gpt-unknown", messages=HELLO)
    assert caught.value.code == "model_not_found"


async def test_mid_stream_upstream_error_reaches_the_sdk_as_api_error(hub: Any, server: Any, user: dict) -> None:
    async with FakeUpstream(fail_mid_stream=True).serve() as fake, gateway_with(hub, [provider_for(fake)]):
        stream = await sdk(server, user).chat.completions.create(model="fake-chat", messages=HELLO, stream=True)
        with pytest.raises(openai.APIError) as caught:
            async for _ in stream:
                pass
    assert "mid-stream" in caught.value.message


async def test_upstream_key_never_reaches_client_or_logs(hub: Any, server: Any, user: dict, caplog: pytest.LogCaptureFixture) -> None:
    secret = "sk-server-side-secret-9f8e7d6c5b4a"
    caplog.set_level(logging.DEBUG)
    async with FakeUpstream(api_key="sk-expected-by-upstream").serve() as fake:
        async with gateway_with(hub, [provider_for(fake, api_key=secret)]):
            with pytest.raises(openai.APIStatusError) as caught:
                await sdk(server, user).chat.completions.create(model="fake-chat", messages=HELLO)
            r = await httpx.AsyncClient(base_url=server.url).get("/api/ai/chat")
    assert fake.requests[-1]["authorization"] == f"Bearer {secret}"  # it was sent upstream…
    assert caught.value.status_code == 502 and caught.value.code == "upstream_auth_failed"  # not a 401: the caller's token is fine
    leaked = caught.value.response.text + r.text + caplog.text
    assert secret not in leaked and secret[:8] not in leaked and secret[-6:] not in leaked


async def test_client_disconnect_cancels_the_upstream_request(hub: Any, server: Any, user: dict) -> None:
    reply = " ".join(f"w{i}" for i in range(200))
    async with FakeUpstream(reply=reply, chunk_delay=0.05).serve() as fake, gateway_with(hub, [provider_for(fake)]):
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            async with http.stream("POST", "/api/ai/v1/chat/completions", headers=user["headers"],
                                   json={"model": "fake-chat", "messages": HELLO, "stream": True}) as r:
                lines = r.aiter_lines()
                while not (await lines.__anext__()).startswith("data: "):
                    pass
        for _ in range(100):
            if fake.cancelled:
                break
            await asyncio.sleep(0.05)
    assert fake.cancelled == 1 and fake.completed == 0  # 200 chunks at 50 ms would take 10 s


async def test_client_gone_before_the_first_byte_cancels_the_upstream_request(hub: Any, server: Any, user: dict) -> None:
    async with FakeUpstream(first_byte_delay=10).serve() as fake, gateway_with(hub, [provider_for(fake, timeout=30)]):
        for stream in (True, False):
            async with httpx.AsyncClient(base_url=server.url) as http:
                call = asyncio.create_task(http.post("/api/ai/v1/chat/completions", headers=user["headers"],
                                                     json={"model": "fake-chat", "messages": HELLO, "stream": stream}))
                while len(fake.requests) < (1 if stream else 2):
                    await asyncio.sleep(0.01)
                call.cancel()  # the caller hangs up while the model "thinks"
            for _ in range(200):
                if fake.aborted == (1 if stream else 2):
                    break
                await asyncio.sleep(0.01)
        assert fake.aborted == 2 and fake.completed == 0  # both noticed within ~2 s, not after 10


async def test_embeddings_models_audio_images_through_upstream(hub: Any, server: Any, user: dict) -> None:
    async with FakeUpstream().serve() as fake, gateway_with(hub, [provider_for(fake)]):
        client = sdk(server, user)
        result = await client.embeddings.create(model="fake-embed", input=["alpha", "beta"])
        assert np.allclose(result.data[1].embedding, fake_vector("beta"), atol=1e-6)
        assert fake.requests[-1]["body"]["encoding_format"] == "float"
        local = await client.embeddings.create(model="all-minilm-l6-v2", input="alpha")  # offline by name, even so
        assert len(local.data[0].embedding) == 384
        ids = [m.id async for m in client.models.list()]
        assert {"fake-chat", "whisper-1", "all-minilm-l6-v2"} <= set(ids)
        speech = await client.audio.speech.create(model="tts-1", voice="alloy", input="hello there")
        assert speech.content == b"FAKEAUDIO:hello there"
        text = await client.audio.transcriptions.create(model="whisper-1", file=("a.wav", b"0123456789", "audio/wav"))
        assert text.text == "fake transcript of 10 bytes (whisper-1)"
        image = await client.images.generate(prompt="a red fox", model="dall-e-3")
        assert image.data[0].url == "http://fake.invalid/a red fox.png"


# -- configuration ---------------------------------------------------------------------------------


def test_providers_file_json_and_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sk-from-env")
    toml = tmp_path / "providers.toml"
    toml.write_text(
        'default_model = "smart"\n'
        "[[providers]]\nname = \"one\"\nbase_url = \"http://127.0.0.1:9/v1/\"\napi_key_env = \"TEST_UPSTREAM_KEY\"\n"
        "models = [\"m1\"]\ntimeout = 5\nretries = 2\n"
        "[providers.pricing.m1]\ninput = 1.5\noutput = 3\n"
        "[[providers]]\nname = \"two\"\nbase_url = \"https://example.invalid/v1\"\ncapabilities = [\"embeddings\"]\n"
        "[aliases]\nsmart = [\"one/m1\", \"two/m2\"]\n"
    )
    table = load_table(load_settings({"LOOMI_HOME": str(tmp_path), "LOOMI_AI_PROVIDERS_FILE": str(toml),
                                      "LOOMI_AI_BASE_URL": "http://127.0.0.1:8/v1", "LOOMI_AI_API_KEY": "sk-x"}))
    one = table.by_name["one"]
    assert one.base_url == "http://127.0.0.1:9/v1" and one.api_key == "sk-from-env" and one.retries == 2
    assert one.price("m1") == Price(1.5, 3.0) and "sk-from-env" not in repr(table.providers)
    assert table.default_model == "smart"
    assert [t.label for t in table.route("chat", "smart")] == ["one/m1"]  # two does no chat
    assert [t.label for t in table.route("embeddings", "m9")] == ["two/m9", "default/m9"]
    assert [t.label for t in table.route("chat", None)] == ["one/m1"]

    as_json = tmp_path / "providers.json"
    as_json.write_text(json.dumps({"providers": [{"name": "j", "base_url": "http://127.0.0.1:7"}], "aliases": {"a": "j/x"}}))
    table = load_table(load_settings({"LOOMI_HOME": str(tmp_path), "LOOMI_AI_PROVIDERS_FILE": str(as_json)}))
    assert [t.label for t in table.route("chat", "a")] == ["j/x"] and table.default_model is None


@pytest.mark.parametrize(
    "content, needle",
    [
        ('{"providers": [{"name": "x", "base_url": "ftp://nope"}]}', "base_url"),
        ('{"providers": [{"name": "x", "base_url": "http://a", "kind": "martian"}]}', "kind"),
        ('{"providers": [{"name": "x", "base_url": "http://a", "colour": 1}]}', "colour"),
        ('{"providers": [{"name": "x", "base_url": "http://a"}, {"name": "x", "base_url": "http://b"}]}', "duplicate"),
        ("{not json", "not valid JSON"),
    ],
)
def test_bad_providers_file_fails_with_one_clear_line(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(content)
    with pytest.raises(ProviderConfigError) as caught:
        load_table(load_settings({"LOOMI_HOME": str(tmp_path), "LOOMI_AI_PROVIDERS_FILE": str(path)}))
    assert needle in str(caught.value) and "\n" not in str(caught.value)
