"""The OpenAI-compatible upstream (OpenAI, Azure-style proxies, vLLM, Ollama, llama.cpp, LiteLLM…).

Streams are read line by line as they arrive and yielded at once: nothing is buffered, so
the gateway adds one JSON parse and one dump per chunk. Usage is always requested
(`stream_options.include_usage`) because the ledger needs it, whatever the client asked.
"""

from __future__ import annotations

from typing import Any, AsyncIterator

import aiohttp
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

__all__ = ["OpenAIUpstream", "scrub", "status_error", "transport_error"]


def _chunk(data: dict[str, Any]) -> ChatChunk:
    extra = {k: data[k] for k in ("system_fingerprint", "service_tier") if data.get(k) is not None}
    return ChatChunk(
        id=str(data.get("id") or ""),
        created=int(data.get("created") or 0),
        model=str(data.get("model") or ""),
        choices=list(data.get("choices") or []),
        usage=Usage.from_openai(data.get("usage")),
        extra=extra,
    )


class OpenAIUpstream:
    kind = "openai"

    def __init__(self, http: Http) -> None:
        self.http = http

    @staticmethod
    def _headers(provider: Provider, json_body: bool = True) -> dict[str, str]:
        headers = dict(provider.headers)
        if json_body:
            headers["content-type"] = "application/json"
        if provider.api_key:
            headers["authorization"] = f"Bearer {provider.api_key}"
        return headers

    async def _post(self, target: Target, path: str, body: dict[str, Any]) -> tuple[bytes, str]:
        """(body, content type) of a successful POST."""
        provider = target.provider
        try:
            async with self.http.post(
                provider.base_url + path,
                data=orjson.dumps({**body, "model": target.model}),
                headers=self._headers(provider),
                timeout=timeout(provider),
            ) as response:
                content = await response.read()
                if response.status >= 400:
                    raise status_error(provider, response.status, content)
                return content, response.headers.get("content-type", "application/octet-stream")
        except TRANSPORT_ERRORS as err:
            raise transport_error(provider, err) from None

    async def chat(self, target: Target, request: ChatRequest) -> ChatResult:
        params = {k: v for k, v in request.params.items() if k != "stream_options"}  # refused when not streaming
        body = {**params, "messages": request.messages, "stream": False}
        content, _ = await self._post(target, "/chat/completions", body)
        data = json_object(target.provider, content)
        extra = {k: data[k] for k in ("system_fingerprint", "service_tier") if data.get(k) is not None}
        return ChatResult(
            id=str(data.get("id") or ""),
            created=int(data.get("created") or 0),
            model=str(data.get("model") or target.model),
            choices=list(data.get("choices") or []),
            usage=Usage.from_openai(data.get("usage")) or Usage(),
            extra=extra,
        )

    async def chat_stream(self, target: Target, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        provider = target.provider
        body = {
            **request.params,
            "model": target.model,
            "messages": request.messages,
            "stream": True,
            "stream_options": {**(request.params.get("stream_options") or {}), "include_usage": True},
        }
        try:
            async with self.http.post(
                provider.base_url + "/chat/completions",
                data=orjson.dumps(body),
                headers={**self._headers(provider), "accept": "text/event-stream"},
                timeout=timeout(provider),
            ) as response:
                if response.status >= 400:
                    raise status_error(provider, response.status, await response.read())
                async for payload in sse_lines(response):
                    if payload == "[DONE]":
                        await drain(response)
                        return
                    try:
                        data = orjson.loads(payload)
                    except orjson.JSONDecodeError:
                        raise AIError(502, f"upstream {provider.name} sent an invalid event", "upstream_error") from None
                    if isinstance(data, dict) and data.get("error"):
                        raise AIError(502, scrub(upstream_message(payload.encode()), provider), "upstream_error")
                    yield _chunk(data)
        except TRANSPORT_ERRORS as err:
            raise transport_error(provider, err) from None

    async def embeddings(self, target: Target, inputs: list[Any], params: dict[str, Any]) -> Embeddings:
        body = {**params, "input": inputs, "encoding_format": "float"}
        content, _ = await self._post(target, "/embeddings", body)
        data = json_object(target.provider, content)
        rows = sorted(data.get("data") or [], key=lambda item: item.get("index", 0))
        usage = data.get("usage") or {}
        tokens = int(usage.get("prompt_tokens") or usage.get("total_tokens") or 0)
        return Embeddings([row["embedding"] for row in rows], str(data.get("model") or target.model), Usage(tokens, 0))

    async def speech(self, target: Target, body: dict[str, Any]) -> tuple[bytes, str]:
        return await self._post(target, "/audio/speech", body)

    async def transcribe(
        self, target: Target, audio: bytes, filename: str, content_type: str, fields: dict[str, str]
    ) -> tuple[bytes, str]:
        provider = target.provider
        form = aiohttp.FormData()
        for key, value in {**fields, "model": target.model}.items():
            form.add_field(key, value)
        form.add_field("file", audio, filename=filename, content_type=content_type)
        try:
            async with self.http.session().post(
                provider.base_url + "/audio/transcriptions",
                data=form,
                headers=self._headers(provider, json_body=False),
                timeout=timeout(provider),
            ) as response:
                content = await response.read()
                if response.status >= 400:
                    raise status_error(provider, response.status, content)
                return content, response.headers.get("content-type", "application/json")
        except TRANSPORT_ERRORS as err:
            raise transport_error(provider, err) from None

    async def images(self, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        content, _ = await self._post(target, "/images/generations", body)
        return json_object(target.provider, content)

    async def list_models(self, target: Target) -> list[str]:
        provider = target.provider
        try:
            async with self.http.session().get(
                provider.base_url + "/models",
                headers=self._headers(provider, json_body=False),
                timeout=aiohttp.ClientTimeout(total=3.0, sock_connect=min(provider.connect_timeout, 3.0)),
            ) as response:
                if response.status != 200:
                    return []
                content = await response.read()
        except TRANSPORT_ERRORS:
            return []
        try:
            return [str(item["id"]) for item in orjson.loads(content).get("data", []) if "id" in item]
        except (orjson.JSONDecodeError, AttributeError, TypeError, KeyError):
            return []
