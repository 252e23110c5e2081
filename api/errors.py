"""One error type and the handlers that render every failure as `{error, code?, cause?}`.

Under `/api/ai/v1/` (the OpenAI-compatible API) the same failures render in OpenAI's shape,
`{"error": {"message", "type", "code"}}`, whatever raised them (`ai.wire`): the official SDKs
read nothing else.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from api.responses import json

log = logging.getLogger("loomi.api")


class ApiError(Exception):
    """Raise anywhere in a handler; the seed's status codes: 400, 401, 403, 404, 429, 500…"""

    def __init__(
        self,
        status: int,
        error: str,
        code: str | None = None,
        cause: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status, self.error, self.code, self.cause, self.headers = status, error, code, cause, headers

    def body(self) -> dict[str, str]:
        out = {"error": self.error}
        if self.code:
            out["code"] = self.code
        if self.cause:
            out["cause"] = self.cause
        return out


def bad_request(error: str, code: str = "invalid_input", cause: str | None = None) -> ApiError:
    return ApiError(400, error, code, cause)


def unauthorized(cause: str | None = None) -> ApiError:
    return ApiError(401, "Not authenticated", "unauthorized", cause)


def not_found(what: str = "Not found", code: str = "not_found") -> ApiError:
    return ApiError(404, what, code)


_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}


OPENAI_PREFIX = "/api/ai/v1/"


def render(request: Request, err: ApiError) -> Response:
    """The seed's shape, or OpenAI's on the OpenAI-compatible routes."""
    if request.url.path.startswith(OPENAI_PREFIX):
        from ai.wire import openai_error  # ai.wire imports this module

        return openai_error(err)
    return json(err.body(), err.status, headers=err.headers)


async def api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return render(request, exc)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _CODES.get(exc.status_code, f"http_{exc.status_code}")
    return render(request, ApiError(exc.status_code, exc.detail or "Error", code, headers=getattr(exc, "headers", None)))


async def server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return render(request, ApiError(500, "Internal server error", "internal"))


HANDLERS = {ApiError: api_error, HTTPException: http_error, Exception: server_error}
