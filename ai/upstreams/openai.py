"""The OpenAI-compatible upstream (OpenAI, Azure-style proxies, vLLM, Ollama, llama.cpp, LiteLLM…).

Streams are read line by line as they arrive and yielded at once: nothing is buffered, so
the gateway adds one JSON parse and one dump per chunk. Usage is always requested
(`stream_options.include_usage`) because the ledger needs it, whatever the client asked.
Error text from an upstream is scrubbed of the provider's key before it goes anywhere: some
upstreams echo part of a bad key back in their message.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

import httpx
import orjson

from ai.providers import Provider, Target
from ai.types import AIError, ChatChunk, ChatRequest, ChatResult, Usage
from ai.upstreams import Embeddings

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 520, 522, 524, 529})


def scrub(text: str, provider: Provider) -> str:
    """Upstream text, shortened, with the provider's key removed."""
    if provider.api_key:
        text = text.replace(provider.api_key, "***")
        if len(provider.api_key) > 12:  # "sk-abc…xyz" style partial echoes
            text = text.replace(provider.api_key[:8], "***").replace(provider.api_key[-6:], "***")
    return text[:500]


def _upstream_message(body: bytes) -> str:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace").strip()
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)
    if isinstance(error, str):
        return error
    return str(data.get("message") or data.get("detail") or data) if isinstance(data, dict) else str(data)


def status_error(provider: Provider, status: int, body: bytes) -> AIError:
    """Map an upstream HTTP error: transient ones retry, credential or model ones fall back."""
    message = scrub(_upstream_message(body), provider)
    where = f"upstream {provider.name}"
    if status in (401, 403):
        # Our key for that upstream is wrong: not the caller's fault, so never a 401 to them.
        return AIError(502, f"{where} rejected the server's credentials", "upstream_auth_failed", fallback=True)
    if status == 404:
        return AIError(404, f"{where}: {message}", "model_not_found", fallback=True)
    if status in RETRYABLE_STATUS:
        code = "upstream_rate_limited" if status == 429 else "upstream_unavailable"
        return AIError(429 if status == 429 else 502, f"{where} answered {status}: {message}", code, retryable=True)
    if 400 <= status < 500:
        return AIError(400, message or f"{where} refused the request", "upstream_invalid_request")
    return AIError(502, f"{where} answered {status}", "upstream_error", retryable=True)


def transport_error(provider: Provider, err: httpx.HTTPError) -> AIError:
    where = f"upstream {provider.name}"
    if isinstance(err, httpx.TimeoutException):
        return AIError(504, f"{where} timed out ({type(err).__name__})", "upstream_timeout", retryable=True)
    return AIError(502, f"{where} unreachable ({type(err).__name__})", "upstream_unavailable", retryable=True)


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


async def _drain(lines: AsyncIterator[str], wait: float = 0.25) -> None:
    """Read to the end of the body after `[DONE]` so the connection goes back to the pool.

    Leaving the chunked terminator unread makes httpx close the connection, and the next
    stream pays a new TCP handshake; an upstream that keeps talking past `[DONE]` is cut.
    """
    try:
        async with asyncio.timeout(wait):
            async for _ in lines:
                pass
    except TimeoutError:
        pass


class OpenAIUpstream:
    kind = "openai"

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    @staticmethod
    def _headers(provider: Provider, json_body: bool = True) -> dict[str, str]:
        headers = dict(provider.headers)
        if json_body:
            headers["content-type"] = "application/json"
        if provider.api_key:
            headers["authorization"] = f"Bearer {provider.api_key}"
        return headers

    @staticmethod
    def _timeout(provider: Provider) -> httpx.Timeout:
        return httpx.Timeout(provider.timeout, connect=provider.connect_timeout)

    async def _post(self, target: Target, path: str, body: dict[str, Any]) -> httpx.Response:
        provider = target.provider
        try:
            response = await self.http.post(
                provider.base_url + path,
                content=orjson.dumps({**body, "model": target.model}),
                headers=self._headers(provider),
                timeout=self._timeout(provider),
            )
        except httpx.HTTPError as err:
            raise transport_error(provider, err) from None
        if response.status_code >= 400:
            raise status_error(provider, response.status_code, response.content)
        return response

    @staticmethod
    def _json(target: Target, response: httpx.Response) -> dict[str, Any]:
        try:
            data = orjson.loads(response.content)
        except orjson.JSONDecodeError:
            raise AIError(502, f"upstream {target.provider.name} sent invalid JSON", "upstream_error", retryable=True) from None
        if not isinstance(data, dict):
            raise AIError(502, f"upstream {target.provider.name} sent an unexpected body", "upstream_error", retryable=True)
        return data

    async def chat(self, target: Target, request: ChatRequest) -> ChatResult:
        params = {k: v for k, v in request.params.items() if k != "stream_options"}  # refused when not streaming
        body = {**params, "messages": request.messages, "stream": False}
        data = self._json(target, await self._post(target, "/chat/completions", body))
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
            async with self.http.stream(
                "POST",
                provider.base_url + "/chat/completions",
                content=orjson.dumps(body),
                headers={**self._headers(provider), "accept": "text/event-stream"},
                timeout=self._timeout(provider),
            ) as response:
                if response.status_code >= 400:
                    raise status_error(provider, response.status_code, await response.aread())
                lines = response.aiter_lines()
                async for line in lines:
                    if not line.startswith("data:"):
                        continue  # comments, event names, keep-alives, blank separators
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        await _drain(lines)
                        return
                    try:
                        data = orjson.loads(payload)
                    except orjson.JSONDecodeError:
                        raise AIError(502, f"upstream {provider.name} sent an invalid event", "upstream_error") from None
                    if isinstance(data, dict) and data.get("error"):
                        raise AIError(502, scrub(_upstream_message(payload.encode()), provider), "upstream_error")
                    yield _chunk(data)
        except httpx.HTTPError as err:
            raise transport_error(provider, err) from None

    async def embeddings(self, target: Target, inputs: list[Any], params: dict[str, Any]) -> Embeddings:
        body = {**params, "input": inputs, "encoding_format": "float"}
        data = self._json(target, await self._post(target, "/embeddings", body))
        rows = sorted(data.get("data") or [], key=lambda item: item.get("index", 0))
        usage = data.get("usage") or {}
        tokens = int(usage.get("prompt_tokens") or usage.get("total_tokens") or 0)
        return Embeddings([row["embedding"] for row in rows], str(data.get("model") or target.model), Usage(tokens, 0))

    async def speech(self, target: Target, body: dict[str, Any]) -> tuple[bytes, str]:
        response = await self._post(target, "/audio/speech", body)
        return response.content, response.headers.get("content-type", "application/octet-stream")

    async def transcribe(
        self, target: Target, audio: bytes, filename: str, content_type: str, fields: dict[str, str]
    ) -> tuple[bytes, str]:
        provider = target.provider
        try:
            response = await self.http.post(
                provider.base_url + "/audio/transcriptions",
                data={**fields, "model": target.model},
                files={"file": (filename, audio, content_type)},
                headers=self._headers(provider, json_body=False),
                timeout=self._timeout(provider),
            )
        except httpx.HTTPError as err:
            raise transport_error(provider, err) from None
        if response.status_code >= 400:
            raise status_error(provider, response.status_code, response.content)
        return response.content, response.headers.get("content-type", "application/json")

    async def images(self, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        return self._json(target, await self._post(target, "/images/generations", body))

    async def list_models(self, target: Target) -> list[str]:
        provider = target.provider
        try:
            response = await self.http.get(
                provider.base_url + "/models",
                headers=self._headers(provider, json_body=False),
                timeout=httpx.Timeout(3.0, connect=min(provider.connect_timeout, 3.0)),
            )
        except httpx.HTTPError:
            return []
        if response.status_code != 200:
            return []
        try:
            return [str(item["id"]) for item in orjson.loads(response.content).get("data", []) if "id" in item]
        except (orjson.JSONDecodeError, AttributeError, TypeError):
            return []
