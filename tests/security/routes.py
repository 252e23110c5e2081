"""The app's routes as (method, path template) pairs, discovered from `api.app.all_routes()`
(mounted routers included), so every check here grows by itself when a route is added."""

from __future__ import annotations

import re
from typing import Iterator

from starlette.routing import BaseRoute, Mount, Route

from api.app import all_routes

PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


def walk(routes: list[BaseRoute] | None = None, prefix: str = "") -> Iterator[tuple[str, str, Route]]:
    """(METHOD, path template with `{name}` params, route) for every route and method, HEAD aside."""
    for route in routes if routes is not None else all_routes():
        if isinstance(route, Mount):
            yield from walk(list(route.routes), prefix + route.path)
        elif isinstance(route, Route):
            path = PARAM.sub(r"{\1}", prefix + route.path)
            for method in sorted((route.methods or {"GET"}) - {"HEAD"}):
                yield method, path, route


def params(path: str) -> list[str]:
    return [m.group(1) for m in PARAM.finditer(path)]


def fill(path: str, values: dict[str, str], default: str = "x1") -> str:
    """The path with each `{name}` replaced by values[name] (or `default`)."""
    return PARAM.sub(lambda m: values.get(m.group(1), default), path)
