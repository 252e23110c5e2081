"""The one HTTP client every upstream adapter shares, and how its failures become AIErrors.

aiohttp rather than httpx: on this path the client is most of what the gateway adds, and
measured against the same loopback upstream aiohttp's round trip is about a third of
httpx's (0.5-0.7 ms against 1.8-6 ms p50 on a loaded 2-core machine). The session is made on
first use, inside the running loop, and keeps connections alive so the next call skips the
handshake. Error text from an upstream is scrubbed of the provider's key before it goes
anywhere: some upstreams echo part of a bad key back in their message.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

import aiohttp
import orjson

from ai.providers import Provider
from ai.types import AIError

RETRYABLE_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504, 520, 522, 524, 529})
KEEPALIVE_SECONDS = 4.0  # under uvicorn's 5 s and most servers' idle limits: we close first
STALE = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)  # a pooled connection the server had closed


class Http:
    """A lazily opened aiohttp session with a large keep-alive pool."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=200, limit_per_host=100, keepalive_timeout=KEEPALIVE_SECONDS)
            self._session = aiohttp.ClientSession(
                connector=connector, json_serialize=lambda v: orjson.dumps(v).decode(), auto_decompress=True,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=60.0),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()

    @contextlib.asynccontextmanager
    async def post(self, url: str, **kwargs: Any) -> AsyncIterator[aiohttp.ClientResponse]:
        """POST, once more on a fresh connection if a kept-alive one turns out to be closed
        (the server hung up on it while idle: nothing reached it, so sending again is safe)."""
        for attempt in range(2):
            try:
                response = await self.session().post(url, **kwargs)
                break
            except STALE:
                if attempt:
                    raise
        try:
            yield response
        finally:
            response.release()


def timeout(provider: Provider) -> aiohttp.ClientTimeout:
    """`timeout` is the longest silence between bytes, `connect_timeout` the handshake."""
    return aiohttp.ClientTimeout(total=None, sock_connect=provider.connect_timeout, sock_read=provider.timeout)


def scrub(text: str, provider: Provider) -> str:
    """Upstream text, shortened, with the provider's key removed."""
    if provider.api_key:
        text = text.replace(provider.api_key, "***")
        if len(provider.api_key) > 12:  # "sk-abc…xyz" style partial echoes
            text = text.replace(provider.api_key[:8], "***").replace(provider.api_key[-6:], "***")
    return text[:500]


def upstream_message(body: bytes) -> str:
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
    message = scrub(upstream_message(body), provider)
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


def transport_error(provider: Provider, err: BaseException) -> AIError:
    where = f"upstream {provider.name}"
    if isinstance(err, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return AIError(504, f"{where} timed out ({type(err).__name__})", "upstream_timeout", retryable=True)
    return AIError(502, f"{where} unreachable ({type(err).__name__})", "upstream_unavailable", retryable=True)


TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)


def json_object(provider: Provider, body: bytes) -> dict[str, Any]:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise AIError(502, f"upstream {provider.name} sent invalid JSON", "upstream_error", retryable=True) from None
    if not isinstance(data, dict):
        raise AIError(502, f"upstream {provider.name} sent an unexpected body", "upstream_error", retryable=True)
    return data


async def drain(response: aiohttp.ClientResponse, wait: float = 0.25) -> None:
    """Read to the end of a stream's body after its last event so the connection goes back to
    the pool (an unread body makes aiohttp close it); an upstream that keeps talking is cut."""
    try:
        async with asyncio.timeout(wait):
            while await response.content.readany():
                pass
    except (TimeoutError, *TRANSPORT_ERRORS):
        pass


async def sse_lines(response: aiohttp.ClientResponse) -> Any:
    """The `data:` payloads of an event stream, as text, as they arrive."""
    async for raw in response.content:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if line.startswith("data:"):
            yield line[5:].strip()
