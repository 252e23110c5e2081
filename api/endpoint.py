"""`@endpoint`: authenticate, validate query and body with pydantic, render JSON.

The same models feed `/openapi.json`, so the document cannot drift from what is enforced.
Validation errors name the fields but never echo values: bodies carry passwords and tokens.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from api.auth import authenticate
from api.errors import ApiError, bad_request
from api.responses import json

MAX_JSON_BODY = 1 << 20


@dataclass(frozen=True)
class Spec:
    summary: str
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: type[BaseModel] | None
    auth: bool


def describe(err: ValidationError) -> str:
    parts = []
    for item in err.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in item["loc"]) or "body"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def validate(model: type[BaseModel], data: Any) -> BaseModel:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise bad_request("Invalid input", "invalid_input", describe(err)) from None


async def read_json(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_JSON_BODY:
        raise ApiError(400, "Request body too large", "body_too_large", f"limit is {MAX_JSON_BODY} bytes")
    if not raw.strip():
        return {}
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("Request body is not valid JSON", "invalid_json") from None


def query_dict(request: Request) -> dict[str, Any]:
    return {key: value for key, value in request.query_params.items() if value != ""}


Handler = Callable[..., Awaitable[Any]]


def endpoint(
    *,
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    auth: bool = True,
    query_in_body: bool = False,
) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """`query_in_body`: a POST may carry the query's fields as a JSON body (seed GET, source POST)."""

    def wrap(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(fn)
        async def handler(request: Request) -> Response:
            kwargs: dict[str, Any] = {}
            if auth:
                kwargs["user"] = await authenticate(request)
            if query is not None:
                data = query_dict(request)
                if query_in_body and request.method == "POST":
                    extra = await read_json(request)
                    if not isinstance(extra, dict):
                        raise bad_request("Request body must be a JSON object", "invalid_input")
                    data.update(extra)
                kwargs["query"] = validate(query, data)
            if body is not None:
                data = await read_json(request)
                if not isinstance(data, dict):
                    raise bad_request("Request body must be a JSON object", "invalid_input")
                kwargs["body"] = validate(body, data)
            result = await fn(request, **kwargs)
            return result if isinstance(result, Response) else json(result)

        doc = (fn.__doc__ or fn.__name__).strip().splitlines()[0]
        handler.__loomi_spec__ = Spec(doc, body, query, response, auth)  # type: ignore[attr-defined]
        return handler

    return wrap
