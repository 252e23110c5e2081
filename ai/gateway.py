"""The gateway: route a call to a provider, retry, fall back, stream, and meter it.

Routes and adapters stay thin: the route parses the wire request, the adapter speaks one
upstream, and this module holds the policy in between (try each target of the fallback chain
in order, retry transient failures with jittered backoff, commit to a stream only once its
first chunk has arrived so failures before it can still fall back, then record usage).
One per process, kept on the Hub (`gateway_of`), so its HTTP connection pool is shared and
keep-alive connections to upstreams are reused across requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

from ai.discovery import PROBE_SECONDS, Discovery, LocalServer, parse_ports
from ai.providers import LOCAL, Provider, ProviderTable, Target, load_table
from ai.types import AIError, ChatChunk, ChatRequest, ChatResult, Usage, not_configured
from ai.upstreams import Adapter, Embeddings
from ai.upstreams.http import Http
from ai.upstreams.local import LocalBackend, local_provider
from ai.upstreams.anthropic import AnthropicUpstream
from ai.upstreams.openai import OpenAIUpstream
from ai.usage import UsageRecorder, count_messages, count_text
from loomi.hub import Hub

log = logging.getLogger("loomi.ai")
T = TypeVar("T")
MODELS_CACHE_SECONDS = 60.0


class Gateway:
    def __init__(self, hub: Hub, table: ProviderTable, http: Http | None = None) -> None:
        self.hub = hub
        self.table = table
        self.http = http or Http()
        self.adapters: dict[str, Adapter] = {
            "openai": OpenAIUpstream(self.http), "anthropic": AnthropicUpstream(self.http), LOCAL: LocalBackend(),
        }
        self.usage = UsageRecorder(hub.engine)
        self._models_cache: tuple[float, list[dict[str, Any]]] | None = None
        self.configured = table  # what settings say; `table` adds what discovery finds
        self.discovery: Discovery | None = None
        self.servers: dict[str, LocalServer] = {}

    @classmethod
    def from_settings(cls, hub: Hub) -> "Gateway":
        gateway = cls(hub, load_table(hub.settings, [local_provider()]))
        settings = hub.settings
        configured_chat = any("chat" in p.capabilities for p in gateway.table.upstreams)
        if settings.ai_discover and not configured_chat:
            gateway.discover(settings.ai_discover_host, parse_ports(settings.ai_discover_ports), settings.ai_discover_seconds)
        return gateway

    def discover(self, host: str, ports: list[int], every: float) -> Discovery:
        """Look for local model servers in the background; what is found joins the table."""
        self.discovery = Discovery(self.http, host, ports, every, self._use_servers)
        with contextlib.suppress(RuntimeError):  # no running loop: started by the first `ready()`
            self.discovery.start()
        return self.discovery

    def _use_servers(self, servers: list[LocalServer]) -> None:
        base = self.configured
        taken = {p.name for p in base.providers}
        found = [s for s in servers if s.name not in taken]
        local = [p for p in base.providers if p.kind == LOCAL]
        self.servers = {s.name: s for s in found}
        self.table = ProviderTable(base.upstreams + [s.provider() for s in found] + local, base.aliases, base._default_model)
        self._models_cache = None

    def start(self) -> None:
        """Begin background work (discovery) now; call from inside the running loop."""
        if self.discovery is not None:
            self.discovery.start()

    async def ready(self) -> None:
        """Before routing: the first discovery round, if it is still running (at most ~1 s, once)."""
        if self.discovery is not None and not self.discovery.first_round.is_set():
            self.discovery.start()
            await self.discovery.wait_first_round(3 * PROBE_SECONDS)

    async def aclose(self) -> None:
        if self.discovery is not None:
            await self.discovery.aclose()
        await self.usage.drain()
        await self.http.aclose()

    # -- routing ---------------------------------------------------------------------------

    def adapter(self, provider: Provider) -> Adapter:
        return self.adapters[provider.kind]

    def targets(self, capability: str, model: str | None) -> list[Target]:
        """The fallback chain, or the error that explains why there is none."""
        targets = self.table.route(capability, model)
        if targets:
            return targets
        if not self.table.serves(capability):
            raise not_configured(capability)
        if not model:
            raise AIError(400, "No model given and no default configured: pass `model` or set LOOMI_AI_MODEL", "model_required")
        raise AIError(404, f"The model `{model}` does not exist or is not served here", "model_not_found")

    async def _backoff(self, attempt: int) -> None:
        await asyncio.sleep(min(2.0, 0.05 * 2**attempt) * (0.5 + random.random()))

    async def _call(self, capability: str, model: str | None, call: Callable[[Adapter, Target], Awaitable[T]]) -> tuple[Target, T]:
        await self.ready()
        last: AIError | None = None
        targets = self.targets(capability, model)
        for target in targets:
            for attempt in range(target.provider.retries + 1):
                try:
                    return target, await call(self.adapter(target.provider), target)
                except AIError as err:
                    last = err
                    log.warning("ai %s via %s failed: %s %s", capability, target.label, err.code, err.message)
                    if not err.fallback:
                        raise
                    if not err.retryable or attempt == target.provider.retries:
                        break
                    await self._backoff(attempt)
        raise self._exhausted(last, targets)

    @staticmethod
    def _exhausted(last: AIError | None, targets: list[Target]) -> AIError:
        assert last is not None
        if len(targets) == 1:
            return last
        return AIError(last.status, f"All {len(targets)} providers failed; last: {last.message}", last.code)

    # -- chat ------------------------------------------------------------------------------

    async def chat(self, user_id: str, request: ChatRequest, what: str = "chat") -> ChatResult:
        target, result = await self._call("chat", request.model, lambda a, t: a.chat(t, request))
        usage = result.usage
        if usage.total == 0:
            usage = Usage(count_messages(request.messages, target.model), count_text(result.text(), target.model))
            result.usage = usage
        self.usage.record(user_id, target, what, usage, result.model or target.model)
        return result

    async def open_chat_stream(self, user_id: str, request: ChatRequest, what: str = "chat") -> "ChatStream":
        """A stream whose first chunk has already arrived: any failure before it falls back."""
        await self.ready()
        last: AIError | None = None
        targets = self.targets("chat", request.model)
        for target in targets:
            for attempt in range(target.provider.retries + 1):
                upstream = self.adapter(target.provider).chat_stream(target, request)
                try:
                    first: ChatChunk | None = await upstream.__anext__()
                except StopAsyncIteration:
                    first = None
                except AIError as err:
                    await upstream.aclose()
                    last = err
                    log.warning("ai chat stream via %s failed: %s %s", target.label, err.code, err.message)
                    if not err.fallback:
                        raise
                    if not err.retryable or attempt == target.provider.retries:
                        break
                    await self._backoff(attempt)
                    continue
                except BaseException:
                    await upstream.aclose()
                    raise
                return ChatStream(self, user_id, target, request, upstream, first, what)
        raise self._exhausted(last, targets)

    # -- the rest --------------------------------------------------------------------------

    async def embeddings(self, user_id: str, inputs: list[Any], model: str | None, params: dict[str, Any]) -> Embeddings:
        target, result = await self._call("embeddings", model, lambda a, t: a.embeddings(t, inputs, params))
        if result.usage.total == 0 and all(isinstance(i, str) for i in inputs):
            result.usage = Usage(sum(count_text(i, target.model) for i in inputs), 0)
        self.usage.record(user_id, target, f"embeddings ({len(inputs)} inputs)", result.usage, result.model)
        return result

    async def speech(self, user_id: str, body: dict[str, Any]) -> tuple[bytes, str]:
        target, (audio, media_type) = await self._call("speech", body.get("model"), lambda a, t: a.speech(t, body))
        self.usage.record(user_id, target, "speech", Usage(count_text(str(body.get("input") or "")), 0))
        return audio, media_type

    async def transcribe(
        self, user_id: str, model: str | None, audio: bytes, filename: str, content_type: str, fields: dict[str, str]
    ) -> tuple[bytes, str]:
        target, (body, media_type) = await self._call(
            "transcriptions", model, lambda a, t: a.transcribe(t, audio, filename, content_type, fields)
        )
        self.usage.record(user_id, target, f"transcription ({len(audio)} bytes)", Usage(0, count_text(body.decode("utf-8", "replace"))))
        return body, media_type

    async def images(self, user_id: str, body: dict[str, Any]) -> dict[str, Any]:
        target, result = await self._call("images", body.get("model"), lambda a, t: a.images(t, body))
        images = len(result.get("data") or [])
        self.usage.record(user_id, target, f"images ({images})", Usage(count_text(str(body.get("prompt") or "")), 0))
        return result

    async def models(self) -> list[dict[str, Any]]:
        """What `/v1/models` lists: configured and offline models, plus what open upstreams report."""
        await self.ready()
        now = time.monotonic()
        if self._models_cache is not None and now - self._models_cache[0] < MODELS_CACHE_SECONDS:
            return self._models_cache[1]
        owners = dict(self.table.models())
        open_upstreams = [p for p in self.table.upstreams if p.serves_any]
        reported = await asyncio.gather(*(self.adapter(p).list_models(Target(p, "")) for p in open_upstreams))
        for provider, ids in zip(open_upstreams, reported, strict=True):
            for model in ids:
                owners.setdefault(model, provider.name)
        models = [{"id": m, "object": "model", "created": 0, "owned_by": owner} for m, owner in owners.items()]
        self._models_cache = (now, models)
        return models

    def status(self) -> dict[str, Any]:
        local = self.table.by_name.get(LOCAL)
        offline = sorted(local.capabilities) if local else []
        return {
            "status": "ok" if self.table.serves("chat") else "unavailable",
            "chat": self.table.serves("chat"),
            "defaultModel": self.table.default_model,
            "provider": self.chat_provider(),
            "providers": [p.name for p in self.table.upstreams],
            "discovered": [{"name": s.name, "server": s.server, "models": list(s.models)} for s in self.servers.values()],
            "offline": {cap: cap in offline for cap in ("embeddings", "speech", "transcriptions", "chat")},
        }

    def chat_provider(self) -> dict[str, Any] | None:
        """Who answers a chat that names no model: the first of the default model's chain."""
        targets = self.table.route("chat", None)
        if not targets:
            return None
        provider = targets[0].provider
        server = self.servers.get(provider.name)
        return {
            "name": provider.name,
            "kind": provider.kind,
            "model": targets[0].model or None,
            "local": server is not None or provider.kind == LOCAL,
            "server": server.server if server else None,
        }


class ChatStream:
    """Chunks as they arrive; on the way, text and usage are metered for the ledger.

    Closing early (the client hung up) closes the upstream request and still records what was
    produced so far.
    """

    def __init__(
        self,
        gateway: Gateway,
        user_id: str,
        target: Target,
        request: ChatRequest,
        upstream: AsyncIterator[ChatChunk],
        first: ChatChunk | None,
        what: str,
    ) -> None:
        self.gateway, self.user_id, self.target, self.request = gateway, user_id, target, request
        self.upstream, self.first, self.what = upstream, first, what
        self.usage: Usage | None = None

    async def __aiter__(self) -> AsyncIterator[ChatChunk]:
        texts: list[str] = []
        last: ChatChunk | None = None
        try:
            chunk = self.first
            while chunk is not None:
                last = chunk
                if chunk.usage is not None:
                    self.usage = chunk.usage
                texts.append(chunk.text())
                yield chunk
                try:
                    chunk = await self.upstream.__anext__()
                except StopAsyncIteration:
                    chunk = None
            if self.usage is None:
                # The upstream sent no usage: count it here, so include_usage always works.
                self.usage = self._counted(texts)
                yield ChatChunk(last.id if last else "", last.created if last else 0, last.model if last else self.target.model, [], self.usage)
        finally:
            # Record first: under cancellation the await below may be cancelled again.
            usage = self.usage or self._counted(texts)
            model = (last.model if last and last.model else None) or self.target.model
            self.gateway.usage.record(self.user_id, self.target, self.what, usage, model)
            with contextlib.suppress(Exception):
                await self.upstream.aclose()  # type: ignore[attr-defined]

    def _counted(self, texts: list[str]) -> Usage:
        return Usage(count_messages(self.request.messages, self.target.model), count_text("".join(texts), self.target.model))


def gateway_of(hub: Hub) -> Gateway:
    """The process's gateway, built from settings on first use."""
    gateway = hub.extras.get("ai.gateway")
    if gateway is None:
        gateway = hub.extras["ai.gateway"] = Gateway.from_settings(hub)
    return gateway


async def ready_gateway(hub: Hub) -> Gateway:
    """The gateway once its first look for local model servers is done (a status that says
    "unavailable" a moment before a server is found would be wrong)."""
    gateway = gateway_of(hub)
    await gateway.ready()
    return gateway


async def close_gateway(hub: Hub) -> None:
    """Shutdown hook: finish pending ledger writes and close upstream connections."""
    gateway = hub.extras.pop("ai.gateway", None)
    if gateway is not None:
        await gateway.aclose()
