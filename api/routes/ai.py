"""AI module: /api/ai/chat (grounded in the person's messages) and the OpenAI-compatible /v1.

Wire compatibility with the official `openai` and `anthropic` clients is the contract: the
SDK's API key is the person's hub token, checked like any request; errors on `/v1/*` come in
OpenAI's shape (`ai.wire`); policy (routing, fallback, metering) lives in `ai.gateway`.
"""

from __future__ import annotations

import base64
import contextlib
from typing import Any, AsyncIterator, Literal

import numpy as np
import orjson
from pydantic import ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount, Route

from ai import grounding, uploads, wire
from ai.gateway import ChatStream, gateway_of, ready_gateway
from ai.search import Scope
from ai.types import AIError, ChatRequest
from ai.usage import count_messages, count_text
from api.auth import Principal, authenticate, hub_of
from api.endpoint import endpoint
from api.errors import bad_request
from api.responses import json
from api.schemas import Body

Messages = list[dict[str, Any]]
OPENAI_CHAT_PARAMS = frozenset(
    "temperature top_p max_tokens max_completion_tokens n stop presence_penalty frequency_penalty seed "
    "logit_bias logprobs top_logprobs response_format tools tool_choice parallel_tool_calls user "
    "reasoning_effort metadata".split()
)
MAX_MESSAGES = 2000
MAX_EMBEDDING_INPUTS = 2048


def _check_messages(value: Messages) -> Messages:
    for i, message in enumerate(value):
        if not isinstance(message.get("role"), str):
            raise ValueError(f"messages[{i}].role: required")
    return value


class ChatCompletionBody(Body):
    """OpenAI's request; fields we do not read (temperature, tools, …) pass through as they are."""

    model_config = ConfigDict(populate_by_name=True, extra="allow")
    model: str | None = Field(default=None, max_length=200)
    messages: Messages = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    stream_options: dict[str, Any] | None = None

    @field_validator("messages")
    @classmethod
    def _roles(cls, value: Messages) -> Messages:
        return _check_messages(value)

    def passthrough(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def to_request(self) -> ChatRequest:
        include_usage = bool((self.stream_options or {}).get("include_usage"))
        params = self.passthrough()
        if self.stream_options:
            params["stream_options"] = self.stream_options
        return ChatRequest(self.model or "", self.messages, self.stream, include_usage, params)


class AiChatBody(ChatCompletionBody):
    """The seed's `/api/ai/chat` body plus the grounding scope."""

    chat_id: str | None = Field(default=None, alias="chatId", max_length=200)
    platform: str | None = Field(default=None, max_length=20)
    account_id: str | None = Field(default=None, alias="accountId", max_length=40)
    since: int | str | None = None
    grounded: bool = True
    sources_limit: int = Field(default=8, alias="sourcesLimit", ge=1, le=30)

    def passthrough(self) -> dict[str, Any]:
        # App clients send their own bookkeeping fields; strict upstreams reject unknown ones.
        return {k: v for k, v in (self.model_extra or {}).items() if k in OPENAI_CHAT_PARAMS}


class EmbeddingsBody(Body):
    model: str | None = Field(default=None, max_length=200)
    input: str | list[str] | list[int] | list[list[int]]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1, le=8192)
    user: str | None = None


class CountTokensBody(Body):
    model_config = ConfigDict(populate_by_name=True, extra="allow")
    model: str = Field(max_length=200)
    messages: Messages = Field(min_length=1, max_length=MAX_MESSAGES)
    system: str | list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None


class SpeechBody(Body):
    model_config = ConfigDict(populate_by_name=True, extra="allow")
    model: str | None = Field(default=None, max_length=200)
    input: str = Field(min_length=1, max_length=4096)
    voice: str | None = Field(default=None, max_length=100)
    response_format: str | None = Field(default=None, max_length=10)  # None: mp3 upstream, wav offline
    speed: float = Field(default=1.0, ge=0.25, le=4.0)


class FilesQuery(Body):
    purpose: str | None = Field(default=None, max_length=100)
    limit: int = Field(default=10_000, ge=1, le=10_000)
    order: Literal["asc", "desc"] = "desc"
    after: str | None = Field(default=None, max_length=100)


class ImagesBody(Body):
    model_config = ConfigDict(populate_by_name=True, extra="allow")
    model: str | None = Field(default=None, max_length=200)
    prompt: str = Field(min_length=1, max_length=32_000)


# -- chat ------------------------------------------------------------------------------------


async def _sse(stream: ChatStream, include_usage: bool, first_extra: dict[str, Any] | None = None) -> AsyncIterator[bytes]:
    """Upstream chunks re-emitted as they come; usage only if asked; errors as an event."""
    extra = first_extra
    try:
        async with contextlib.aclosing(stream.__aiter__()) as chunks:  # closed (and metered) even if we are
            async for chunk in chunks:
                if not chunk.choices:
                    if chunk.usage is not None and include_usage:
                        yield wire.sse(chunk.openai(with_usage=True))
                    continue
                data = chunk.openai(with_usage=include_usage)
                if extra:
                    data.update(extra)
                    extra = None
                yield wire.sse(data)
    except AIError as err:
        yield wire.sse_error(err)
        return
    if extra:  # the stream had no content chunk to carry them
        yield wire.sse({"object": "chat.completion.chunk", "choices": [], **extra})
    yield wire.DONE


async def _complete(request: Request, user: Principal, chat: ChatRequest, what: str, extra: dict[str, Any] | None = None) -> Response:
    gateway = gateway_of(hub_of(request))
    if chat.stream:
        stream = await wire.unless_disconnected(request, gateway.open_chat_stream(user.id, chat, what))
        return wire.event_stream(_sse(stream, chat.include_usage, extra))
    result = await wire.unless_disconnected(request, gateway.chat(user.id, chat, what))
    return json({**result.openai(), **(extra or {})})


@wire.openai_errors
@endpoint(body=ChatCompletionBody)
async def chat_completions(request: Request, user: Principal, body: ChatCompletionBody):
    """OpenAI chat completions: streamed (SSE, `[DONE]`, include_usage) or whole."""
    return await _complete(request, user, body.to_request(), "chat completion")


@wire.api_errors
@endpoint(body=AiChatBody)
async def ai_chat(request: Request, user: Principal, body: AiChatBody):
    """Chat grounded in the user's own messages (scope: chatId, platform, accountId, since)."""
    hub = hub_of(request)
    chat = body.to_request()
    (await ready_gateway(hub)).targets("chat", chat.model or None)  # fail fast (503) before searching
    sources: list[dict[str, Any]] = []
    if body.grounded:
        try:
            since = grounding.parse_since(body.since)
        except ValueError:
            raise bad_request("Invalid input", "invalid_input", "since: not a timestamp or ISO 8601 date") from None
        scope = Scope(body.chat_id, body.platform, body.account_id, since)
        sources = await grounding.ground(hub.engine, user.id, chat.messages, scope, body.sources_limit)
        chat.messages = grounding.with_context(chat.messages, sources)
    return await _complete(request, user, chat, "assistant chat", {"sources": sources})


@endpoint(auth=False)
async def ai_status(request: Request):
    """AI status: whether chat is available, the provider in use, discovered local servers (no auth)."""
    return (await ready_gateway(hub_of(request))).status()


# -- embeddings, models, tokens ----------------------------------------------------------------


@wire.openai_errors
@endpoint(body=EmbeddingsBody)
async def embeddings(request: Request, user: Principal, body: EmbeddingsBody):
    """Embeddings, as float lists or base64 little-endian float32 (the SDK's default)."""
    inputs: list[Any] = [body.input] if isinstance(body.input, str) else list(body.input)
    if inputs and isinstance(inputs[0], int):
        inputs = [inputs]  # one input given as token ids
    if not inputs or len(inputs) > MAX_EMBEDDING_INPUTS:
        raise bad_request("Invalid input", "invalid_input", f"input: 1 to {MAX_EMBEDDING_INPUTS} items")
    params = {"dimensions": body.dimensions} if body.dimensions else {}
    result = await gateway_of(hub_of(request)).embeddings(user.id, inputs, body.model, params)
    matrix = np.asarray(result.vectors, dtype="<f4")
    if body.encoding_format == "base64":
        rows: list[Any] = [base64.b64encode(row.tobytes()).decode() for row in matrix]
    else:
        rows = matrix.tolist()
    return {
        "object": "list",
        "data": [{"object": "embedding", "index": i, "embedding": row} for i, row in enumerate(rows)],
        "model": result.model,
        "usage": {"prompt_tokens": result.usage.input_tokens, "total_tokens": result.usage.input_tokens},
    }


@wire.openai_errors
@endpoint()
async def models(request: Request, user: Principal):
    """The models this hub serves: configured, aliased, offline, and reported by upstreams."""
    return {"object": "list", "data": await gateway_of(hub_of(request)).models()}


@wire.openai_errors
@endpoint()
async def model(request: Request, user: Principal):
    """One model, or 404."""
    wanted = request.path_params["model"]
    for item in await gateway_of(hub_of(request)).models():
        if item["id"] == wanted:
            return item
    raise AIError(404, f"The model `{wanted}` does not exist", "model_not_found")


@wire.openai_errors
@endpoint(body=CountTokensBody)
async def count_tokens(request: Request, user: Principal, body: CountTokensBody):
    """Anthropic's count_tokens: `{input_tokens}` for messages, system prompt and tools."""
    conversation = list(body.messages)
    if body.system:
        conversation.insert(0, {"role": "system", "content": body.system})
    total = count_messages(conversation, body.model)
    if body.tools:
        total += count_text(orjson.dumps(body.tools).decode(), body.model)
    return {"input_tokens": total}


# -- files, images, audio ---------------------------------------------------------------------


@wire.openai_errors
@endpoint()
async def upload(request: Request, user: Principal):
    """Upload a file for AI use (multipart `file`, optional `purpose`); OpenAI's file object back."""
    return await uploads.receive(request, hub_of(request), user.id)


@wire.openai_errors
@endpoint(query=FilesQuery)
async def list_files(request: Request, user: Principal, query: FilesQuery):
    """The caller's uploads, newest first (OpenAI's file list: `purpose`, `limit`, `order`, `after`)."""
    return await uploads.list_files(
        hub_of(request), user.id, purpose=query.purpose, limit=query.limit, order=query.order, after=query.after
    )


@wire.openai_errors
@endpoint()
async def get_file(request: Request, user: Principal):
    """One of the caller's uploads (OpenAI's file object); 404 for anyone else's."""
    return await uploads.get_file(hub_of(request), user.id, request.path_params["file_id"])


@wire.openai_errors
@endpoint()
async def file_content(request: Request, user: Principal):
    """The bytes of one of the caller's uploads, as uploaded; 404 for anyone else's."""
    path, record = await uploads.file_content(hub_of(request), user.id, request.path_params["file_id"])
    return FileResponse(path, media_type=str(record.get("content_type") or "application/octet-stream"),
                        filename=str(record.get("filename") or record["id"]), content_disposition_type="attachment")


@wire.openai_errors
@endpoint()
async def delete_file(request: Request, user: Principal):
    """Delete one of the caller's uploads (content and record); its room in the quota is free again."""
    return await uploads.delete_file(hub_of(request), user.id, request.path_params["file_id"])


@wire.openai_errors
@endpoint(body=ImagesBody)
async def images(request: Request, user: Principal, body: ImagesBody):
    """Image generation: forwarded to an upstream that serves it (no offline model)."""
    payload = body.model_dump(exclude_none=True, by_alias=True)
    return await gateway_of(hub_of(request)).images(user.id, payload)


@wire.openai_errors
@endpoint(body=SpeechBody)
async def speech(request: Request, user: Principal, body: SpeechBody):
    """Text to speech: an upstream, or the offline voice (extra `offline-audio`)."""
    payload = body.model_dump(exclude_none=True, by_alias=True)
    audio, media_type = await gateway_of(hub_of(request)).speech(user.id, payload)
    return Response(audio, media_type=media_type)


@wire.openai_errors
@endpoint()
async def transcriptions(request: Request, user: Principal):
    """Speech to text (multipart `file`, `model`, …): an upstream, or offline Whisper (extra)."""
    audio, filename, content_type, fields = await uploads.audio_form(request)
    body, media_type = await gateway_of(hub_of(request)).transcribe(
        user.id, fields.pop("model", None), audio, filename, content_type, fields
    )
    return Response(body, media_type=media_type)


@wire.openai_errors
async def unknown(request: Request) -> Response:
    await authenticate(request)
    raise AIError(404, f"Unknown path {request.url.path}", "not_found")


routes = [
    Route("/api/ai/chat", ai_chat, methods=["POST"]),
    Route("/api/ai/chat", ai_status, methods=["GET"]),
    Route("/api/ai/v1/chat/completions", chat_completions, methods=["POST"]),
    Route("/api/ai/v1/embeddings", embeddings, methods=["POST"]),
    Route("/api/ai/v1/models", models, methods=["GET"]),
    Route("/api/ai/v1/models/{model:path}", model, methods=["GET"]),
    Route("/api/ai/v1/messages/count_tokens", count_tokens, methods=["POST"]),
    Route("/api/ai/v1/upload", upload, methods=["POST"]),
    Route("/api/ai/v1/files", upload, methods=["POST"]),  # where the openai SDK's files.create posts
    Route("/api/ai/v1/files", list_files, methods=["GET"]),
    Route("/api/ai/v1/files/{file_id}", get_file, methods=["GET"]),
    Route("/api/ai/v1/files/{file_id}", delete_file, methods=["DELETE"]),
    Route("/api/ai/v1/files/{file_id}/content", file_content, methods=["GET"]),
    Route("/api/ai/v1/images/generations", images, methods=["POST"]),
    Route("/api/ai/v1/audio/speech", speech, methods=["POST"]),
    Route("/api/ai/v1/audio/transcriptions", transcriptions, methods=["POST"]),
    # Anything else under /v1 answers in OpenAI's shape too (a Mount: kept out of /openapi.json).
    Mount("/api/ai/v1", routes=[Route("/{path:path}", unknown, methods=["GET", "POST", "PUT", "PATCH", "DELETE"])]),
]
