"""One adapter per upstream kind, each mapping its wire format onto `ai.types`.

An adapter does one call against one target and reports failures as `AIError` with
`retryable` / `fallback` set; it never retries or picks providers itself (the gateway does).
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Protocol

from ai.providers import Target
from ai.types import ChatChunk, ChatRequest, ChatResult, Usage


class Embeddings:
    """Vectors (one list of floats per input, or a float32 array) and the tokens they cost."""

    def __init__(self, vectors: Any, model: str, usage: Usage) -> None:
        self.vectors, self.model, self.usage = vectors, model, usage


class Adapter(Protocol):
    async def chat(self, target: Target, request: ChatRequest) -> ChatResult: ...

    def chat_stream(self, target: Target, request: ChatRequest) -> AsyncIterator[ChatChunk]: ...

    async def embeddings(self, target: Target, inputs: list[Any], params: dict[str, Any]) -> Embeddings: ...

    async def speech(self, target: Target, body: dict[str, Any]) -> tuple[bytes, str]: ...

    async def transcribe(
        self, target: Target, audio: bytes, filename: str, content_type: str, fields: dict[str, str]
    ) -> tuple[bytes, str]: ...

    async def images(self, target: Target, body: dict[str, Any]) -> dict[str, Any]: ...

    async def list_models(self, target: Target) -> list[str]: ...
