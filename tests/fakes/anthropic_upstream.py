"""A loopback Anthropic Messages API, for the gateway's `kind = "anthropic"` upstreams.

Why: the adapter must be proven against what the official `anthropic` client itself accepts
(tests drive this fake with that client too), not against our idea of the format. It speaks
`POST /v1/messages` (whole, or as the named SSE events `message_start`, `content_block_*`,
`message_delta`, `message_stop`, with `ping`s), `GET /v1/models`, `x-api-key` (or Bearer)
auth and Anthropic's error bodies.

Behaviour, deterministic so a test can check what came back:
* with `tools` and no `tool_result` in the last user turn: a short text, then a `tool_use` of
  the first tool with `tool_input`, stop reason `tool_use`;
* after a `tool_result`: "tool said: <its text>", `end_turn`;
* otherwise "echo: <last user text>", cut at `max_tokens` words (`max_tokens` stop reason).
Usage counts words. `requests` keeps every body and header seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status, media_type="application/json")


def _error(status: int, kind: str, message: str) -> Response:
    return _json({"type": "error", "error": {"type": kind, "message": message}}, status)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(str(b.get("text") or "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text")


def _words(value: Any) -> int:
    return len(orjson.dumps(value).decode().split()) if not isinstance(value, str) else len(value.split())


@dataclass
class FakeAnthropic:
    api_key: str | None = "sk-ant-fake-upstream-key-0123456789"
    name: str = "claude"
    tool_input: dict[str, Any] = field(default_factory=lambda: {"city": "Paris", "unit": "celsius"})
    fail_next: int = 0
    fail_status: int = 529  # overloaded_error
    models: list[str] = field(default_factory=lambda: ["claude-fake-1", "claude-fake-2"])
    requests: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""

    # -- behaviour -----------------------------------------------------------------------

    def _answer(self, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str, int]:
        """(content blocks, stop reason, input tokens)."""
        messages = body.get("messages") or []
        last = messages[-1] if messages else {}
        blocks = last.get("content") if isinstance(last.get("content"), list) else []
        results = [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
        input_tokens = _words(body.get("system") or "") + sum(_words(m.get("content")) for m in messages) + 3
        if results:
            said = _text(results[0].get("content")) if not isinstance(results[0].get("content"), str) else results[0]["content"]
            return [{"type": "text", "text": f"tool said: {said}"}], "end_turn", input_tokens
        tools = body.get("tools") or []
        if tools and (body.get("tool_choice") or {}).get("type") != "none":
            call = {"type": "tool_use", "id": f"toolu_fake{len(self.requests)}", "name": tools[0]["name"], "input": self.tool_input}
            return [{"type": "text", "text": "Let me check."}, call], "tool_use", input_tokens
        words = f"echo: {_text(last.get('content'))}".split(" ")
        limit = int(body.get("max_tokens") or 0)
        stop = "end_turn"
        if len(words) > limit:
            words, stop = words[:limit], "max_tokens"
        return [{"type": "text", "text": " ".join(words)}], stop, input_tokens

    async def messages(self, request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            return _error(400, "invalid_request_error", "body is not JSON")
        self.requests.append({"body": body, "headers": dict(request.headers)})
        given = request.headers.get("x-api-key") or (request.headers.get("authorization") or "").removeprefix("Bearer ")
        if self.api_key is not None and given != self.api_key:
            return _error(401, "authentication_error", "invalid x-api-key")
        if not request.headers.get("anthropic-version"):
            return _error(400, "invalid_request_error", "anthropic-version header is required")
        if not isinstance(body.get("max_tokens"), int) or not body.get("messages"):
            return _error(400, "invalid_request_error", "max_tokens and messages are required")
        if any(m.get("role") not in ("user", "assistant") for m in body["messages"]):
            return _error(400, "invalid_request_error", "messages: roles must be user or assistant (system goes in `system`)")
        if self.fail_next > 0:
            self.fail_next -= 1
            return _error(self.fail_status, "overloaded_error", "Overloaded")
        content, stop, input_tokens = self._answer(body)
        output_tokens = sum(_words(b.get("text") or b.get("input") or "") for b in content)
        mid, model = f"msg_fake{len(self.requests)}", body.get("model") or "claude-fake-1"
        if not body.get("stream"):
            return _json({
                "id": mid, "type": "message", "role": "assistant", "model": model, "content": content,
                "stop_reason": stop, "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
            })
        return StreamingResponse(self._stream(mid, model, content, stop, input_tokens, output_tokens), media_type="text/event-stream")

    async def _stream(self, mid: str, model: str, content: list[dict[str, Any]], stop: str, input_tokens: int, output_tokens: int) -> AsyncIterator[bytes]:
        def event(kind: str, data: dict[str, Any]) -> bytes:
            return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps({"type": kind, **data}) + b"\n\n"

        message = {"id": mid, "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": None,
                   "stop_sequence": None, "usage": {"input_tokens": input_tokens, "output_tokens": 1}}
        yield event("message_start", {"message": message})
        yield event("ping", {})
        for index, block in enumerate(content):
            if block["type"] == "text":
                yield event("content_block_start", {"index": index, "content_block": {"type": "text", "text": ""}})
                words = block["text"].split(" ")
                for i, word in enumerate(words):
                    await asyncio.sleep(0)
                    yield event("content_block_delta", {"index": index, "delta": {"type": "text_delta", "text": word if i == 0 else " " + word}})
            else:
                yield event("content_block_start", {"index": index, "content_block": {**block, "input": {}}})
                raw = orjson.dumps(block["input"]).decode()
                for part in (raw[: len(raw) // 2], raw[len(raw) // 2 :]):
                    yield event("content_block_delta", {"index": index, "delta": {"type": "input_json_delta", "partial_json": part}})
            yield event("content_block_stop", {"index": index})
        yield event("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": output_tokens}})
        yield event("message_stop", {})

    async def models_list(self, request: Request) -> Response:
        given = request.headers.get("x-api-key") or (request.headers.get("authorization") or "").removeprefix("Bearer ")
        if self.api_key is not None and given != self.api_key:
            return _error(401, "authentication_error", "invalid x-api-key")
        data = [{"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"} for m in self.models]
        return _json({"data": data, "has_more": False, "first_id": self.models[0], "last_id": self.models[-1]})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/v1/messages", self.messages, methods=["POST"]),
            Route("/v1/models", self.models_list, methods=["GET"]),
        ])

    @contextlib.asynccontextmanager
    async def serve(self) -> AsyncIterator["FakeAnthropic"]:
        """Run on 127.0.0.1 (a free port) inside the current event loop."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
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


def provider_for(fake: FakeAnthropic, **overrides: Any) -> Any:
    """A gateway Provider row of kind "anthropic" pointing at `fake` (any model, chat only)."""
    from ai.providers import Provider

    return Provider(**{"name": fake.name, "base_url": fake.url, "kind": "anthropic", "api_key": fake.api_key,
                       "capabilities": frozenset({"chat"}), "retries": 0, **overrides})


