"""Anthropic's Messages API as an upstream (`kind = "anthropic"` in the providers file).

Clients keep speaking OpenAI's chat completions; this adapter translates each request to
`POST /v1/messages` and each answer (whole or streamed) back, so tools, stop reasons and
usage survive the trip:

* system and developer messages become the `system` prompt; `max_tokens` (required there)
  comes from `max_completion_tokens`/`max_tokens`, else DEFAULT_MAX_TOKENS;
* OpenAI tools become `input_schema` tools, `tool_choice` maps (auto/required/none/one
  function), assistant `tool_calls` become `tool_use` blocks and `tool` messages become
  `tool_result` blocks in a user turn (consecutive same-role turns are merged: the API
  wants them alternating);
* answers map back: text to `content`, `tool_use` to `tool_calls` (arguments as JSON text),
  `stop_reason` to `finish_reason`, usage (cache reads and writes count as input) to the ledger.
  A stream's `message_start`/`content_block_*`/`message_delta` events become OpenAI chunks
  as they arrive.
"""

from __future__ import annotations

import time
from typing import Any, AsyncIterator

import orjson

from ai.providers import Provider, Target
from ai.types import AIError, ChatChunk, ChatRequest, ChatResult, Usage
from ai.upstreams import Embeddings
from ai.upstreams.http import (
    TRANSPORT_ERRORS,
    Http,
    drain,
    json_object,
    scrub,
    sse_lines,
    status_error,
    timeout,
    transport_error,
    upstream_message,
)

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
STOP_REASONS = {
    "end_turn": "stop", "stop_sequence": "stop", "pause_turn": "stop",
    "max_tokens": "length", "tool_use": "tool_calls", "refusal": "content_filter",
}


class Unsupported(AIError):
    def __init__(self, what: str, provider: Provider) -> None:
        super().__init__(400, f"upstream {provider.name} (Anthropic) does not do {what}", "unsupported_by_provider", fallback=True)


# -- OpenAI request -> Messages request ---------------------------------------------------------


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict) and p.get("type") in ("text", "input_text"))
    return "" if content is None else str(content)


def _image_block(part: dict[str, Any]) -> dict[str, Any]:
    url = str((part.get("image_url") or {}).get("url") or "")
    if url.startswith("data:") and ";base64," in url:
        media, _, data = url[5:].partition(";base64,")
        return {"type": "image", "source": {"type": "base64", "media_type": media, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content: Any) -> list[dict[str, Any]]:
    """OpenAI message content (a string or parts) as Anthropic content blocks."""
    if content is None:
        return []
    if not isinstance(content, list):
        text = str(content)
        return [{"type": "text", "text": text}] if text else []
    blocks = []
    for part in content:
        if not isinstance(part, dict):
            continue
        if part.get("type") in ("text", "input_text") and part.get("text"):
            blocks.append({"type": "text", "text": str(part["text"])})
        elif part.get("type") == "image_url":
            blocks.append(_image_block(part))
    return blocks


def _arguments(raw: Any) -> Any:
    if isinstance(raw, dict):
        return raw
    try:
        value = orjson.loads(raw or "{}")
    except orjson.JSONDecodeError:
        raise AIError(400, "tool_calls[].function.arguments must be a JSON object", "invalid_input") from None
    return value if isinstance(value, dict) else {"value": value}


def _messages(messages: list[dict[str, Any]]) -> tuple[str | None, list[dict[str, Any]]]:
    system: list[str] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for message in messages:
        role = message.get("role")
        if role in ("system", "developer"):
            text = _text_of(message.get("content"))
            if text:
                system.append(text)
        elif role == "assistant":
            blocks = _blocks(message.get("content"))
            for call in message.get("tool_calls") or []:
                function = call.get("function") or {}
                blocks.append({"type": "tool_use", "id": str(call.get("id") or ""), "name": str(function.get("name") or ""),
                               "input": _arguments(function.get("arguments"))})
            add("assistant", blocks)
        elif role == "tool":
            result: dict[str, Any] = {"type": "tool_result", "tool_use_id": str(message.get("tool_call_id") or "")}
            result["content"] = _blocks(message.get("content")) or [{"type": "text", "text": ""}]
            add("user", [result])
        else:  # user (and anything unknown, as the user's words)
            add("user", _blocks(message.get("content")))
    return ("\n\n".join(system) or None), turns


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    out: dict[str, Any] | None
    if choice in (None, "auto"):
        out = {"type": "auto"} if parallel is False or choice == "auto" else None
    elif choice == "required":
        out = {"type": "any"}
    elif choice == "none":
        out = {"type": "none"}
    elif isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
        out = {"type": "tool", "name": choice["function"]["name"]}
    else:
        out = None
    if out is not None and parallel is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


def to_messages_request(target: Target, request: ChatRequest, stream: bool) -> dict[str, Any]:
    params = request.params
    system, turns = _messages(request.messages)
    body: dict[str, Any] = {
        "model": target.model,
        "messages": turns,
        "max_tokens": int(params.get("max_completion_tokens") or params.get("max_tokens") or DEFAULT_MAX_TOKENS),
    }
    if system:
        body["system"] = system
    for key in ("temperature", "top_p", "top_k"):
        if params.get(key) is not None:
            body[key] = params[key]
    stop = params.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if params.get("user"):
        body["metadata"] = {"user_id": str(params["user"])}
    tools = [t.get("function") or {} for t in params.get("tools") or [] if isinstance(t, dict) and t.get("type", "function") == "function"]
    if tools:
        body["tools"] = [
            {"name": f.get("name"), **({"description": f["description"]} if f.get("description") else {}),
             "input_schema": f.get("parameters") or {"type": "object", "properties": {}}}
            for f in tools
        ]
    choice = _tool_choice(params.get("tool_choice"), params.get("parallel_tool_calls"))
    if choice is not None and tools:
        body["tool_choice"] = choice
    if stream:
        body["stream"] = True
    return body


# -- Messages answer -> OpenAI ------------------------------------------------------------------


def _usage(data: dict[str, Any] | None) -> Usage:
    data = data or {}
    prompt = sum(int(data.get(k) or 0) for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
    return Usage(prompt, int(data.get("output_tokens") or 0))


def from_message(data: dict[str, Any], target: Target) -> ChatResult:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in data.get("content") or []:
        if block.get("type") == "text":
            texts.append(str(block.get("text") or ""))
        elif block.get("type") == "tool_use":
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": block.get("name"), "arguments": orjson.dumps(block.get("input") or {}).decode()}})
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    finish = STOP_REASONS.get(str(data.get("stop_reason")), "stop")
    return ChatResult(
        id=str(data.get("id") or ""),
        created=int(time.time()),
        model=str(data.get("model") or target.model),
        choices=[{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        usage=_usage(data.get("usage")),
    )


class _StreamState:
    """What a Messages stream has said so far, to turn its next event into an OpenAI chunk."""

    def __init__(self, target: Target) -> None:
        self.id, self.model, self.created = "", target.model, int(time.time())
        self.input = Usage()
        self.output_tokens = 0
        self.tools: dict[int, int] = {}  # content block index -> tool call index

    def chunk(self, delta: dict[str, Any], finish: str | None = None) -> ChatChunk:
        return ChatChunk(self.id, self.created, self.model, [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}])

    def event(self, data: dict[str, Any]) -> list[ChatChunk]:
        kind = data.get("type")
        if kind == "message_start":
            message = data.get("message") or {}
            self.id, self.model = str(message.get("id") or ""), str(message.get("model") or self.model)
            self.input = _usage(message.get("usage"))
            self.output_tokens = int((message.get("usage") or {}).get("output_tokens") or 0)
            return [self.chunk({"role": "assistant", "content": ""})]
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self.tools[int(data.get("index") or 0)] = len(self.tools)
                call = {"index": index, "id": block.get("id"), "type": "function", "function": {"name": block.get("name"), "arguments": ""}}
                return [self.chunk({"tool_calls": [call]})]
            if block.get("type") == "text" and block.get("text"):
                return [self.chunk({"content": block["text"]})]
            return []
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [self.chunk({"content": str(delta.get("text") or "")})]
            if delta.get("type") == "input_json_delta":
                index = self.tools.get(int(data.get("index") or 0), 0)
                return [self.chunk({"tool_calls": [{"index": index, "function": {"arguments": str(delta.get("partial_json") or "")}}]})]
            return []  # thinking and signature deltas have no OpenAI counterpart
        if kind == "message_delta":
            usage = data.get("usage") or {}
            self.output_tokens = int(usage.get("output_tokens") or self.output_tokens)
            if usage.get("input_tokens") is not None:  # newer servers report the final input count here
                self.input = _usage({**usage, "output_tokens": 0})
            reason = (data.get("delta") or {}).get("stop_reason")
            return [self.chunk({}, STOP_REASONS.get(str(reason), "stop"))] if reason else []
        if kind == "message_stop":
            return [ChatChunk(self.id, self.created, self.model, [], Usage(self.input.input_tokens, self.output_tokens))]
        return []  # ping, content_block_stop


# -- the adapter --------------------------------------------------------------------------------


class AnthropicUpstream:
    kind = "anthropic"

    def __init__(self, http: Http) -> None:
        self.http = http

    @staticmethod
    def _url(provider: Provider, path: str) -> str:
        base = provider.base_url.rstrip("/")
        return base + path if base.endswith("/v1") else base + "/v1" + path

    @staticmethod
    def _headers(provider: Provider) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION, **provider.headers, "content-type": "application/json"}
        if provider.api_key:
            headers["x-api-key"] = provider.api_key
        return headers

    async def chat(self, target: Target, request: ChatRequest) -> ChatResult:
        provider = target.provider
        body = to_messages_request(target, request, stream=False)
        try:
            async with self.http.post(
                self._url(provider, "/messages"), data=orjson.dumps(body), headers=self._headers(provider), timeout=timeout(provider)
            ) as response:
                content = await response.read()
                if response.status >= 400:
                    raise status_error(provider, response.status, content)
        except TRANSPORT_ERRORS as err:
            raise transport_error(provider, err) from None
        return from_message(json_object(provider, content), target)

    async def chat_stream(self, target: Target, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        provider = target.provider
        body = to_messages_request(target, request, stream=True)
        state = _StreamState(target)
        try:
            async with self.http.post(
                self._url(provider, "/messages"), data=orjson.dumps(body),
                headers={**self._headers(provider), "accept": "text/event-stream"}, timeout=timeout(provider),
            ) as response:
                if response.status >= 400:
                    raise status_error(provider, response.status, await response.read())
                async for payload in sse_lines(response):
                    try:
                        data = orjson.loads(payload)
                    except orjson.JSONDecodeError:
                        raise AIError(502, f"upstream {provider.name} sent an invalid event", "upstream_error") from None
                    if not isinstance(data, dict):
                        continue
                    if data.get("type") == "error":
                        raise AIError(502, scrub(upstream_message(payload.encode()), provider), "upstream_error")
                    for chunk in state.event(data):
                        yield chunk
                    if data.get("type") == "message_stop":
                        await drain(response)
                        return
        except TRANSPORT_ERRORS as err:
            raise transport_error(provider, err) from None

    async def list_models(self, target: Target) -> list[str]:
        provider = target.provider
        try:
            async with self.http.session().get(
                self._url(provider, "/models"), headers=self._headers(provider), timeout=timeout(provider)
            ) as response:
                if response.status != 200:
                    return []
                content = await response.read()
            return [str(item["id"]) for item in orjson.loads(content).get("data", []) if "id" in item]
        except (*TRANSPORT_ERRORS, orjson.JSONDecodeError, AttributeError, TypeError):
            return []

    async def embeddings(self, target: Target, inputs: list[Any], params: dict[str, Any]) -> Embeddings:
        raise Unsupported("embeddings", target.provider)

    async def speech(self, target: Target, body: dict[str, Any]) -> tuple[bytes, str]:
        raise Unsupported("speech", target.provider)

    async def transcribe(
        self, target: Target, audio: bytes, filename: str, content_type: str, fields: dict[str, str]
    ) -> tuple[bytes, str]:
        raise Unsupported("transcriptions", target.provider)

    async def images(self, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        raise Unsupported("images", target.provider)
