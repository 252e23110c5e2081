"""A loopback OpenAI-compatible upstream, for the gateway's tests and bench/ai.py.

Why: the gateway must be tested against something that speaks the real wire format
(SSE `data:` chunks, `[DONE]`, a final usage chunk, OpenAI's error bodies), and must be made
to fail on demand (status errors, slow first byte, stalls) to prove retry, fallback and
cancellation. State lives on the `FakeUpstream` object so a test can read what was asked
(`requests`) and how streams ended (`completed`, `cancelled`).

In a test: `async with FakeUpstream().serve() as fake: ... fake.base_url` (".../v1").
For the bench, as a process: `python -m tests.fakes.openai_upstream --port 0` prints its URL.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import numpy as np
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

EMBEDDING_DIMS = 16


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


def _error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None) -> Response:
    return _json({"error": {"message": message, "type": kind, "code": code, "param": None}}, status)


def fake_vector(text: str, dims: int = EMBEDDING_DIMS) -> list[float]:
    """Deterministic unit vector for a text, so a test can check what came back."""
    raw = np.frombuffer(hashlib.sha256(text.encode()).digest() * 4, dtype=np.uint8)[:dims].astype(np.float32) - 127.5
    return (raw / np.linalg.norm(raw)).astype(np.float32).tolist()


def _last_user_text(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            return message["content"]
    return ""


@dataclass
class FakeUpstream:
    api_key: str | None = "sk-fake-upstream-key-0123456789"
    name: str = "fake"
    reply: str | None = None  # default: "echo: <last user message>"
    chunk_words: int = 1  # words per streamed chunk
    send_usage: bool = True  # honour stream_options.include_usage / include usage in replies
    fail_next: int = 0  # the next N requests answer `fail_status`
    fail_status: int = 500
    first_byte_delay: float = 0.0  # seconds before answering at all
    chunk_delay: float = 0.0  # seconds between streamed chunks
    fail_mid_stream: bool = False  # send an error event after the first piece
    models: list[str] = field(default_factory=lambda: ["fake-chat", "fake-embed", "tts-1", "whisper-1", "dall-e-3"])
    requests: list[dict[str, Any]] = field(default_factory=list)
    completed: int = 0
    cancelled: int = 0  # streams cut after they started
    aborted: int = 0  # callers gone before the first byte
    url: str = ""

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    # -- behaviour -----------------------------------------------------------------------

    def _reply(self, body: dict[str, Any]) -> str:
        return self.reply if self.reply is not None else "echo: " + _last_user_text(body.get("messages") or [])

    async def _gate(self, request: Request, body: Any) -> Response | None:
        self.requests.append({
            "path": request.url.path, "body": body, "authorization": request.headers.get("authorization"),
            "client_port": request.client.port if request.client else None,  # same port: a reused connection
        })
        if self.first_byte_delay:
            deadline = time.monotonic() + self.first_byte_delay
            while time.monotonic() < deadline:  # "thinking", but noticing a caller that hangs up
                if await request.is_disconnected():
                    self.aborted += 1
                    return Response(status_code=499)
                await asyncio.sleep(0.01)
        if self.api_key is not None and request.headers.get("authorization") != f"Bearer {self.api_key}":
            given = (request.headers.get("authorization") or "").removeprefix("Bearer ")
            return _error(401, f"Incorrect API key provided: {given}.", "invalid_request_error", "invalid_api_key")
        if self.fail_next > 0:
            self.fail_next -= 1
            return _error(self.fail_status, f"fake failure {self.fail_status}", "server_error")
        return None

    async def chat(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        refused = await self._gate(request, body)
        if refused is not None:
            return refused
        text, model = self._reply(body), body.get("model") or "fake-chat"
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in body.get("messages") or []) + 1
        words = text.split(" ")
        pieces = [" ".join(words[i : i + self.chunk_words]) for i in range(0, len(words), self.chunk_words)]
        pieces = [p if i == 0 else " " + p for i, p in enumerate(pieces)]
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": len(words), "total_tokens": prompt_tokens + len(words)}
        cid, created = f"chatcmpl-{self.name}-{len(self.requests)}", int(time.time())
        if not body.get("stream"):
            self.completed += 1
            result = {
                "id": cid, "object": "chat.completion", "created": created, "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            }
            if self.send_usage:
                result["usage"] = usage
            return _json(result)
        include_usage = self.send_usage and bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(self._stream(cid, created, model, pieces, usage, include_usage), media_type="text/event-stream")

    async def _stream(
        self, cid: str, created: int, model: str, pieces: list[str], usage: dict[str, int], include_usage: bool
    ) -> AsyncIterator[bytes]:
        def event(choices: list[dict[str, Any]], **extra: Any) -> bytes:
            data = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices, **extra}
            return b"data: " + orjson.dumps(data) + b"\n\n"

        finished = False
        try:
            yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
            for piece in pieces:
                if self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
                yield event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}])
                if self.fail_mid_stream:
                    yield b'data: {"error": {"message": "fake upstream broke mid-stream", "type": "server_error"}}\n\n'
                    finished = True
                    return
            yield event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
            if include_usage:
                yield event([], usage=usage)
            yield b"data: [DONE]\n\n"
            finished = True
        finally:
            if finished:
                self.completed += 1
            else:
                self.cancelled += 1

    async def embeddings(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        refused = await self._gate(request, body)
        if refused is not None:
            return refused
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for i, text in enumerate(inputs):
            vector = fake_vector(str(text))
            if body.get("encoding_format") == "base64":
                encoded: Any = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
            else:
                encoded = vector
            data.append({"object": "embedding", "index": i, "embedding": encoded})
        tokens = sum(len(str(t).split()) for t in inputs)
        return _json({"object": "list", "data": data, "model": body.get("model"), "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    async def models_list(self, request: Request) -> Response:
        refused = await self._gate(request, None)
        if refused is not None:
            return refused
        return _json({"object": "list", "data": [{"id": m, "object": "model", "created": 0, "owned_by": self.name} for m in self.models]})

    async def speech(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        refused = await self._gate(request, body)
        if refused is not None:
            return refused
        return Response(b"FAKEAUDIO:" + str(body.get("input")).encode(), media_type="audio/mpeg")

    async def transcriptions(self, request: Request) -> Response:
        async with request.form() as form:
            audio = await form["file"].read()  # type: ignore[union-attr]
            fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
        refused = await self._gate(request, fields)
        if refused is not None:
            return refused
        return _json({"text": f"fake transcript of {len(audio)} bytes ({fields.get('model')})"})

    async def images(self, request: Request) -> Response:
        body = orjson.loads(await request.body())
        refused = await self._gate(request, body)
        if refused is not None:
            return refused
        return _json({"created": int(time.time()), "data": [{"url": f"http://fake.invalid/{body.get('prompt', '')[:10]}.png"}]})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/embeddings", self.embeddings, methods=["POST"]),
                Route("/v1/models", self.models_list, methods=["GET"]),
                Route("/v1/audio/speech", self.speech, methods=["POST"]),
                Route("/v1/audio/transcriptions", self.transcriptions, methods=["POST"]),
                Route("/v1/images/generations", self.images, methods=["POST"]),
            ]
        )

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator["FakeUpstream"]:
        """Run on 127.0.0.1 (a free port) inside the current event loop."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY on accepts
        sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        server = uvicorn.Server(uvicorn.Config(self.app(), log_config=None, lifespan="off", access_log=False))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        try:
            yield self
        finally:
            server.should_exit = True
            await task


def provider_for(fake: FakeUpstream, **overrides: Any) -> Any:
    """A gateway Provider row pointing at `fake` (serves any model unless `models` given)."""
    from ai.providers import Provider

    return Provider(**{"name": fake.name, "base_url": fake.base_url, "api_key": fake.api_key, "retries": 0, **overrides})


@contextlib.asynccontextmanager
async def gateway_with(hub: Any, providers: list[Any], *, aliases: dict[str, list[str]] | None = None,
                       default_model: str | None = None, offline: bool = True) -> AsyncIterator[Any]:
    """Swap the hub's AI gateway for one over `providers` (plus the offline backend) for a test."""
    from ai.gateway import Gateway
    from ai.providers import ProviderTable
    from ai.upstreams.local import local_provider

    table = ProviderTable(list(providers) + ([local_provider()] if offline else []), aliases, default_model)
    gateway = Gateway(hub, table)
    saved = hub.extras.get("ai.gateway")
    hub.extras["ai.gateway"] = gateway
    try:
        yield gateway
    finally:
        await gateway.aclose()
        if saved is None:
            hub.extras.pop("ai.gateway", None)
        else:
            hub.extras["ai.gateway"] = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reply", default=None, help="fixed reply text (default: echo)")
    parser.add_argument("--api-key", default=FakeUpstream.api_key)
    args = parser.parse_args()
    fake = FakeUpstream(api_key=args.api_key, reply=args.reply)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # TCP_NODELAY on accepts
    sock.bind(("127.0.0.1", args.port))
    fake.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    print(fake.url, flush=True)
    config = uvicorn.Config(fake.app(), log_config=None, lifespan="off", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    sys.exit(main())
