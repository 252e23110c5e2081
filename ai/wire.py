"""OpenAI's wire details the SDKs depend on: its error shape and server-sent events.

The official clients pick their exception class from the status and read
`{"error": {"message", "type", "code"}}`; a top-level `"type": "error"` makes the same body
acceptable to the Anthropic client. `openai_errors` converts our errors to that shape on the
`/v1/*` routes only: the rest of the API keeps the seed's `{error, code?, cause?}`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response

from ai.types import AIError
from api.errors import ApiError, openai_error, openai_error_body, openai_error_type

log = logging.getLogger("loomi.ai")
T = TypeVar("T")

DONE = b"data: [DONE]\n\n"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}

# The shape lives in api.errors (which renders every error under /api/ai/v1): one definition,
# and no import back from api.errors to here.
error_type = openai_error_type
error_body = openai_error_body


def error_response(status: int, message: str, code: str | None, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(error_body(status, message, code)), status, headers=headers, media_type="application/json")


def sse(data: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def sse_error(err: AIError) -> bytes:
    """A mid-stream failure: the SDKs raise APIError when they read it."""
    return sse(error_body(err.status, err.message, err.code))


class EventStream(Response):
    """Server-sent events, each chunk sent as it is produced, in the request's own task.

    Starlette's StreamingResponse runs the body in an anyio task group with a cancel scope
    per response, which on this path cost more than the rest of the relay (task reprs are
    formatted on every cancel). Here one small task waits for `http.disconnect` and cancels
    the request's task; the body iterator is closed either way, so the upstream request is
    cancelled and the ledger row written (ai.gateway.ChatStream).
    """

    media_type = "text/event-stream"

    def __init__(self, body: AsyncIterator[bytes]) -> None:
        self.body_iterator = body
        self.status_code = 200
        self.background = None
        self.init_headers(SSE_HEADERS)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        task = asyncio.current_task()
        assert task is not None
        gone = False

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            task.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
            async for chunk in self.body_iterator:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except asyncio.CancelledError:
            if not gone:
                raise
            task.uncancel()  # the client left: a normal end for us, not a cancelled server
        except OSError:  # the connection broke under a send (ASGI spec 2.4)
            pass
        finally:
            watcher.cancel()
            closer = getattr(self.body_iterator, "aclose", None)
            if closer is not None:
                await closer()


def event_stream(body: AsyncIterator[bytes]) -> Response:
    return EventStream(body)


class ClientGone(Exception):
    """The caller hung up while we waited on the upstream."""


async def _disconnected(request: Request) -> None:
    # The body has been read, so the next ASGI message can only be the disconnect.
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it (and so its upstream request) if the client goes away first.

    Streams are covered once they start (Starlette cancels them on disconnect); this covers
    the wait before the first byte, which is most of the time a slow model spends.
    """
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
    if task.cancelled():
        raise ClientGone()
    return task.result()


def as_api_error(err: AIError) -> ApiError:
    return ApiError(err.status, err.message, err.code)


Handler = Callable[[Request], Awaitable[Response]]


def openai_errors(handler: Handler) -> Handler:
    """Render ApiError / AIError (auth, validation, upstream) in OpenAI's error shape."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as err:
            return openai_error(err)
        except AIError as err:
            return error_response(err.status, err.message, err.code)
        except ClientGone:
            return Response(status_code=499)  # nobody is listening; the status is for the logs

    return wrapped


def api_errors(handler: Handler) -> Handler:
    """AIError as the seed's `{error, code}` for the non-OpenAI routes (`/api/ai/chat`)."""

    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except AIError as err:
            raise as_api_error(err) from None
        except ClientGone:
            return Response(status_code=499)

    return wrapped
