"""Request body limits enforced while the body streams in, before anything buffers it.

A handler that calls `request.body()` holds the whole body in memory before it can look at its
size; a 500 MB chunked POST to a route that needs no login took the process from 680 MB to
1.38 GB. This ASGI middleware refuses a declared `Content-Length` over the limit without reading
a byte, and counts the bytes of each `http.request` chunk otherwise, failing the read as soon
as the count passes the limit.

Then the connection: closing it while the client still sends makes the kernel answer with a
reset, which can destroy the 413 before the client reads it; letting uvicorn drain (it discards
what arrives after the response) costs bandwidth but no memory. So a declared body a little
over the limit is drained and the client reads a clean 413; one far over it, or a chunked body
of unknown size, gets `Connection: close` and the server stops reading.
"""

from __future__ import annotations

from typing import Mapping

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import ApiError, render

DEFAULT_LIMIT = 1 << 20  # JSON bodies: 1 MiB (api/endpoint.py reads at most this much)
DRAIN_BYTES = 8 << 20  # a declared body at most this much over the limit is read and discarded


class BodyTooLarge(ApiError):
    def __init__(self, limit: int, close: bool = True) -> None:
        super().__init__(
            413,
            "Request body too large",
            "body_too_large",
            f"the limit for this route is {limit} bytes",
            {"Connection": "close"} if close else None,  # close: the server stops reading the rest
        )


class BodyLimit:
    """`limits`: path -> bytes for routes that need more (uploads, imports); `default` elsewhere."""

    def __init__(self, app: ASGIApp, default: int = DEFAULT_LIMIT, limits: Mapping[str, int] | None = None) -> None:
        self.app, self.default, self.limits = app, default, dict(limits or {})

    def limit_for(self, path: str) -> int:
        return self.limits.get(path.rstrip("/") or "/", self.default)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            error = BodyTooLarge(limit, close=declared > limit + DRAIN_BYTES)
            await render(Request(scope), error)(scope, receive, send)  # the seed's shape, OpenAI's under /api/ai/v1
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)  # an ApiError: rendered by the app's handler as a 413
            return message

        await self.app(scope, counted, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None
