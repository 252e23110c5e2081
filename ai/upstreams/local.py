"""The offline backend: models shipped inside PyPI wheels, run in-process with no network.

Embeddings (all-MiniLM-L6-v2, numpy) are in the core install. Speech and transcription come
from the optional `offline-audio` extra (piper, faster-whisper) and are offered only when
importable. There is no offline chat model in the core install: chat with no upstream is a
clear 503. Heavy work runs in a thread so the event loop keeps serving other requests.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from ai import audio
from ai.providers import LOCAL, Provider, Target
from ai.types import AIError, ChatChunk, ChatRequest, ChatResult, Usage, not_configured
from ai.upstreams import Embeddings

EMBEDDING_MODEL = "all-minilm-l6-v2"


def embeddings_available() -> bool:
    from ai.local.embeddings import ModelNotInstalledError, find_model_dir

    try:
        find_model_dir()
    except ModelNotInstalledError:
        return False
    return True


def local_provider() -> Provider:
    """The offline backend as a provider row: what is installed decides what it serves."""
    capabilities: set[str] = set()
    models: list[str] = []
    if embeddings_available():
        capabilities.add("embeddings")
        models.append(EMBEDDING_MODEL)
    if audio.speech_available():
        capabilities.add("speech")
        models.append(audio.SPEECH_MODEL)
    if audio.transcription_available():
        capabilities.add("transcriptions")
        models.append(audio.TRANSCRIPTION_MODEL)
    return Provider(
        name=LOCAL,
        base_url="local:",
        kind=LOCAL,
        models=tuple(models),
        capabilities=frozenset(capabilities),
        retries=0,
        last_resort=True,
    )


class LocalBackend:
    kind = LOCAL

    async def chat(self, target: Target, request: ChatRequest) -> ChatResult:
        raise not_configured("chat")

    async def chat_stream(self, target: Target, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        raise not_configured("chat")
        yield  # pragma: no cover  (makes this an async generator)

    async def embeddings(self, target: Target, inputs: list[Any], params: dict[str, Any]) -> Embeddings:
        from ai.local.embeddings import get_embedder

        if not all(isinstance(item, str) for item in inputs):
            raise AIError(400, "The offline embedding model takes text input, not token ids", "invalid_input")
        embedder = await asyncio.to_thread(get_embedder)
        dims = params.get("dimensions")
        if dims is not None and int(dims) != embedder.dimensions:
            raise AIError(400, f"{EMBEDDING_MODEL} has {embedder.dimensions} dimensions, not {dims}", "invalid_input")
        vectors = await asyncio.to_thread(embedder.embed, inputs)
        tokens = sum(len(enc.ids) for enc in embedder.tokenizer.encode_batch(inputs)) if inputs else 0
        return Embeddings(vectors, EMBEDDING_MODEL, Usage(tokens, 0))

    async def speech(self, target: Target, body: dict[str, Any]) -> tuple[bytes, str]:
        if not audio.speech_available():
            raise not_configured("speech")
        return await asyncio.to_thread(audio.synthesize, str(body.get("input") or ""), str(body.get("response_format") or "wav"), float(body.get("speed") or 1.0))

    async def transcribe(
        self, target: Target, audio_bytes: bytes, filename: str, content_type: str, fields: dict[str, str]
    ) -> tuple[bytes, str]:
        if not audio.transcription_available():
            raise not_configured("transcriptions")
        return await asyncio.to_thread(audio.transcribe, audio_bytes, fields)

    async def images(self, target: Target, body: dict[str, Any]) -> dict[str, Any]:
        raise not_configured("images")

    async def list_models(self, target: Target) -> list[str]:
        return list(target.provider.models)
