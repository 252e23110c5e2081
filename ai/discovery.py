"""Local model servers found by themselves: Ollama, llama.cpp's server, LM Studio.

When no upstream is configured for chat, the gateway looks for an OpenAI-compatible server on
the usual loopback ports (LOOMI_AI_DISCOVER_PORTS, default Ollama 11434, llama.cpp 8080,
LM Studio 1234) and serves chat through whatever it finds, so chat and insights work with
nothing leaving the machine. LOOMI_AI_DISCOVER=false turns it off.

Probing never blocks a request: it runs in a background task at start and every
LOOMI_AI_DISCOVER_SECONDS, each port asked with a short timeout (a closed port answers at
once; a port held by something else that stays silent costs PROBE_SECONDS, in the
background). What was found replaces the gateway's provider table in one assignment.
How each server is recognised: Ollama answers `GET /api/tags` with `{"models": [...]}`;
every one answers `GET /v1/models` with `{"data": [{"id": ...}]}`, and then llama.cpp's server
`GET /health` with `{"status": ...}`, LM Studio its REST API's `GET /api/v0/models`; anything
else that lists models is served as a plain OpenAI-compatible server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Callable

import aiohttp
import orjson

from ai.providers import Provider
from ai.upstreams.http import TRANSPORT_ERRORS, Http

log = logging.getLogger("loomi.ai")
PROBE_SECONDS = 0.5
USUAL_PORTS = {"ollama": 11434, "llamacpp": 8080, "lmstudio": 1234}
SERVERS = {"ollama": "ollama", "llamacpp": "llama.cpp", "lmstudio": "lm-studio"}


def provider_name(kind: str | None, port: int) -> str:
    """"ollama" on its usual port, "ollama-11435" on another, "local-<port>" when unknown."""
    if kind is None:
        return f"local-{port}"
    return kind if USUAL_PORTS.get(kind) == port else f"{kind}-{port}"


@dataclass(frozen=True)
class LocalServer:
    name: str  # provider name: ollama, llamacpp, lmstudio, or local-<port>
    server: str  # what answered: ollama | llama.cpp | lm-studio | openai-compatible
    base_url: str  # ".../v1"
    models: tuple[str, ...]

    def provider(self) -> Provider:
        # Local models are slow to first token on a laptop CPU: a long read timeout, a short connect.
        return Provider(
            name=self.name, base_url=self.base_url, kind="openai", models=self.models,
            default_model=self.models[0] if self.models else None, capabilities=frozenset({"chat"}),
            timeout=300.0, connect_timeout=1.0, retries=0,
        )


def parse_ports(value: str) -> list[int]:
    """"11434,8080,1234" -> ports; anything that is not a port is a config error."""
    ports = []
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        if not part.isdigit() or not 0 < int(part) < 65536:
            raise ValueError(f"LOOMI_AI_DISCOVER_PORTS: {part!r} is not a port")
        ports.append(int(part))
    return ports


async def _get_json(session: aiohttp.ClientSession, url: str) -> Any:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=PROBE_SECONDS)) as response:
            if response.status != 200:
                return None
            return orjson.loads(await response.read())
    except (*TRANSPORT_ERRORS, orjson.JSONDecodeError):
        return None


async def probe(http: Http, host: str, port: int) -> LocalServer | None:
    """What serves OpenAI-compatible chat on host:port, with its models; None if nothing does."""
    session = http.session()
    root = f"http://{host}:{port}"
    tags = await _get_json(session, root + "/api/tags")
    if isinstance(tags, dict) and isinstance(tags.get("models"), list):
        models = [str(m.get("name") or m.get("model")) for m in tags["models"] if isinstance(m, dict) and (m.get("name") or m.get("model"))]
        return LocalServer(provider_name("ollama", port), SERVERS["ollama"], root + "/v1", tuple(models))
    listed = await _get_json(session, root + "/v1/models")
    if not isinstance(listed, dict) or not isinstance(listed.get("data"), list):
        return None
    models = [str(m["id"]) for m in listed["data"] if isinstance(m, dict) and m.get("id")]
    health, lmstudio = await asyncio.gather(_get_json(session, root + "/health"), _get_json(session, root + "/api/v0/models"))
    kind = None
    if isinstance(health, dict) and "status" in health:
        kind = "llamacpp"
    elif isinstance(lmstudio, dict) and isinstance(lmstudio.get("data"), list):
        kind = "lmstudio"
        # LM Studio lists every downloaded model; embedding models cannot chat
        models = [str(m["id"]) for m in lmstudio["data"] if isinstance(m, dict) and m.get("id") and m.get("type") != "embeddings"] or models
    return LocalServer(provider_name(kind, port), SERVERS.get(kind or "", "openai-compatible"), root + "/v1", tuple(models))


class Discovery:
    """Probes the ports at start and periodically; `on_change` gets the servers when they change."""

    def __init__(self, http: Http, host: str, ports: list[int], every: float, on_change: Callable[[list[LocalServer]], None]) -> None:
        self.http, self.host, self.ports, self.every = http, host, ports, every
        self.on_change = on_change
        self.found: list[LocalServer] = []
        self.first_round = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ai-discovery")

    async def scan(self) -> list[LocalServer]:
        results = await asyncio.gather(*(probe(self.http, self.host, port) for port in self.ports), return_exceptions=True)
        found = [r for r in results if isinstance(r, LocalServer) and r.models]
        if found != self.found:
            self.found = found
            described = ", ".join(f"{s.server} at {s.base_url} ({len(s.models)} models)" for s in found) or "none"
            log.info("ai: local model servers: %s", described)
            self.on_change(found)
        return found

    async def _run(self) -> None:
        while True:
            try:
                await self.scan()
            except Exception:  # noqa: BLE001 - discovery must never take the gateway down
                log.exception("ai: local model server discovery failed")
            self.first_round.set()
            await asyncio.sleep(self.every)

    async def wait_first_round(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.first_round.wait()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
