"""Loopback fakes of the local model servers the gateway discovers: Ollama, llama.cpp's
`llama-server` and LM Studio, each with the endpoints discovery reads and the OpenAI-compatible
`/v1/chat/completions` they all serve (from FakeUpstream, keyless like the real ones).

* Ollama: `GET /api/tags` (its native model list), `GET /v1/models`.
* llama.cpp: `GET /health` (`{"status": "ok"}`), `GET /v1/models` (the loaded GGUF).
* LM Studio: `GET /v1/models`, and its REST API's `GET /api/v0/models` (type llm / embeddings).

`serve(port=...)` starts one on a port the test chose (0: any free port).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.fakes.openai_upstream import FakeUpstream, _json

FLAVORS = ("ollama", "llamacpp", "lmstudio")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalModelServer(FakeUpstream):
    flavor: str = "ollama"
    api_key: str | None = None  # local servers take no key
    models: list[str] = field(default_factory=list)
    embedding_models: list[str] = field(default_factory=list)  # LM Studio lists these too
    probes: list[str] = field(default_factory=list)  # paths asked by anyone

    def __post_init__(self) -> None:
        if not self.models:
            self.models = {"ollama": ["llama3.2:latest", "qwen2.5:0.5b"], "llamacpp": ["smollm2-135m-instruct-q4_k_m.gguf"],
                           "lmstudio": ["qwen2.5-7b-instruct"]}[self.flavor]
        if self.flavor == "lmstudio" and not self.embedding_models:
            self.embedding_models = ["text-embedding-nomic-embed-text-v1.5"]
        self.name = self.flavor

    async def tags(self, request: Request) -> Response:
        self.probes.append(request.url.path)
        return _json({"models": [{"name": m, "model": m, "modified_at": "2026-01-01T00:00:00Z", "size": 1_000_000,
                                  "digest": "0" * 64, "details": {"format": "gguf", "family": "llama"}} for m in self.models]})

    async def v1_models(self, request: Request) -> Response:
        self.probes.append(request.url.path)
        owner = {"ollama": "library", "llamacpp": "llamacpp", "lmstudio": "organization_owner"}[self.flavor]
        ids = self.models + self.embedding_models
        return _json({"object": "list", "data": [{"id": m, "object": "model", "created": int(time.time()), "owned_by": owner} for m in ids]})

    async def health(self, request: Request) -> Response:
        self.probes.append(request.url.path)
        return _json({"status": "ok"})

    async def lmstudio_models(self, request: Request) -> Response:
        self.probes.append(request.url.path)
        rows = [{"id": m, "object": "model", "type": "llm", "publisher": "lmstudio-community", "arch": "qwen2",
                 "compatibility_type": "gguf", "quantization": "Q4_K_M", "state": "loaded", "max_context_length": 32768}
                for m in self.models]
        rows += [{"id": m, "object": "model", "type": "embeddings", "publisher": "nomic-ai", "arch": "nomic-bert",
                  "compatibility_type": "gguf", "quantization": "Q4_K_M", "state": "not-loaded", "max_context_length": 2048}
                 for m in self.embedding_models]
        return _json({"object": "list", "data": rows})

    def app(self) -> Starlette:
        routes = [r for r in super().app().routes if getattr(r, "path", "") != "/v1/models"]
        routes.append(Route("/v1/models", self.v1_models, methods=["GET"]))
        if self.flavor == "ollama":
            routes.append(Route("/api/tags", self.tags, methods=["GET"]))
        elif self.flavor == "llamacpp":
            routes.append(Route("/health", self.health, methods=["GET"]))
        else:
            routes.append(Route("/api/v0/models", self.lmstudio_models, methods=["GET"]))
        return Starlette(routes=routes)

    @contextlib.asynccontextmanager
    async def serve(self, port: int = 0) -> AsyncIterator["LocalModelServer"]:  # type: ignore[override]
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
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

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@contextlib.asynccontextmanager
async def silent_port() -> AsyncIterator[int]:
    """A port that accepts connections and never answers: what a hung server looks like."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def discovering_gateway(hub: Any, ports: list[int], every: float = 0.2) -> Any:
    """A gateway with nothing configured but the offline backend, discovering on `ports`."""
    from ai.gateway import Gateway
    from ai.providers import ProviderTable
    from ai.upstreams.local import local_provider

    gateway = Gateway(hub, ProviderTable([local_provider()]))
    gateway.discover("127.0.0.1", ports, every)
    return gateway


@contextlib.asynccontextmanager
async def installed(hub: Any, gateway: Any) -> AsyncIterator[Any]:
    """Put `gateway` on the hub for a test, then close it and put the old one back."""
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
