"""`@endpoint`: authenticate, validate query and body with pydantic, render JSON.

The same models feed `/openapi.json`, so the document cannot drift from what is enforced.
Validation errors name the fields but never echo values: bodies carry passwords and tokens.

Every input also passes checks no single model should have to remember, so bad input is a 400
here rather than a 500 deep in a driver: no NUL character in any string (PostgreSQL cannot
store one, SQLite's full-text search chokes on it), JSON nested at most MAX_JSON_DEPTH deep
(deeper bodies break serializers further on), and every integer within 64 bits (what both
databases can compare against).
"""

from __future__ import annotations

import functools
import math
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
MAX_JSON_DEPTH = 64
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1


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


def _invalid(where: str, why: str) -> ApiError:
    return bad_request("Invalid input", "invalid_input", f"{where or 'body'}: {why}")


def check_input(data: Any, where: str = "") -> None:
    """Refuse NUL characters (in keys too) and nesting deeper than MAX_JSON_DEPTH, anywhere.

    Iterative, so a hostile depth cannot exhaust the stack while being checked.
    """
    stack: list[tuple[Any, str, int]] = [(data, where, 0)]
    while stack:
        value, loc, depth = stack.pop()
        if isinstance(value, str):
            if "\x00" in value:
                raise _invalid(loc, "contains a NUL character")
        elif isinstance(value, (dict, list)):
            if depth >= MAX_JSON_DEPTH:
                raise _invalid(loc, f"nested deeper than {MAX_JSON_DEPTH} levels")
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str) and "\x00" in key:
                    raise _invalid(loc, "a key contains a NUL character")
                stack.append((item, f"{loc}.{key}" if loc else str(key), depth + 1))


def check_numbers(value: Any, where: str = "") -> None:
    """Integers within 64 bits and finite floats, in a validated model and what it holds."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, loc = stack.pop()
        if isinstance(item, bool):
            continue
        if isinstance(item, int):
            if not INT64_MIN <= item <= INT64_MAX:
                raise _invalid(loc, "number out of range")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise _invalid(loc, "number out of range")
        elif isinstance(item, BaseModel):
            fields = {**dict(item), **(item.model_extra or {})}
            stack.extend((v, f"{loc}.{k}" if loc else k) for k, v in fields.items())
        elif isinstance(item, dict):
            stack.extend((v, f"{loc}.{k}" if loc else str(k)) for k, v in item.items())
        elif isinstance(item, (list, tuple)):
            stack.extend((v, f"{loc}.{i}" if loc else str(i)) for i, v in enumerate(item))


def validate(model: type[BaseModel], data: Any) -> BaseModel:
    check_input(data)
    try:
        result = model.model_validate(data)
    except ValidationError as err:
        raise bad_request("Invalid input", "invalid_input", describe(err)) from None
    except (OverflowError, RecursionError):  # from a validator converting a hostile value
        raise bad_request("Invalid input", "invalid_input", "a value is out of range") from None
    check_numbers(result)
    return result


async def read_json(request: Request) -> Any:
    raw = await request.body()
    if len(raw) > MAX_JSON_BODY:
        raise ApiError(400, "Request body too large", "body_too_large", f"limit is {MAX_JSON_BODY} bytes")
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("Request body is not valid JSON", "invalid_json") from None
    check_input(data)
    return data


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
            check_input(dict(request.path_params))
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
