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
from store.crypto import CredentialError

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
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
}


def openai_error_type(status: int) -> str:
    return _OPENAI_TYPES.get(status, "invalid_request_error" if 400 <= status < 500 else "api_error")


def openai_error_body(status: int, message: str, code: str | None, param: str | None = None) -> dict:
    """OpenAI's error body; the top-level `"type": "error"` makes it Anthropic's too."""
    return {"type": "error", "error": {"message": message, "type": openai_error_type(status), "code": code, "param": param}}


def openai_error(err: ApiError) -> Response:
    """An ApiError in OpenAI's shape: the cause joins the message, 401 is `invalid_api_key`."""
    message = err.error if not err.cause else f"{err.error}: {err.cause}"
    code = "invalid_api_key" if err.status == 401 else err.code
    return json(openai_error_body(err.status, message, code), err.status, headers=err.headers)


def render(request: Request, err: ApiError) -> Response:
    """The seed's shape, or OpenAI's on the OpenAI-compatible routes (ai.wire uses the same)."""
    if request.url.path.startswith(OPENAI_PREFIX):
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


async def credentials_unreadable(request: Request, exc: Exception) -> Response:
    """Stored credentials no listed key opens: the operator dropped a key `loomi keys rotate`
    had not finished with. Say so, rather than a bare 500."""
    log.error("%s %s: %s", request.method, request.url.path, exc)
    return render(request, ApiError(
        503, "Stored credentials cannot be opened", "credentials_unreadable",
        "they were sealed with a key this hub no longer lists: add it back to LOOMI_OLD_SECRET_KEYS "
        "and run `loomi keys rotate`, or reconnect the account"))


HANDLERS = {ApiError: api_error, HTTPException: http_error, CredentialError: credentials_unreadable, Exception: server_error}
