"""`/healthz`: is the store reachable, is Redis, is work flowing.

Every part is asked at once and given PROBE_SECONDS: a part that hangs (a frozen Redis, a
database that accepts connections but never answers) is reported not ok with `Timeout`,
instead of hanging the answer past the prober's own timeout, when it would say nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from starlette.requests import Request
from starlette.routing import Route

from api.auth import hub_of
from api.responses import json
from store.db import ping

from workers.health import ingest_health

CHECKS: dict[str, Callable[[Any], Awaitable[dict[str, Any]]]] = {"ingest": ingest_health}
PROBE_SECONDS = 2.0


async def _probe(coro: Awaitable[Any]) -> dict[str, Any]:
    try:
        await asyncio.wait_for(coro, timeout=PROBE_SECONDS)
        return {"ok": True}
    except asyncio.TimeoutError:
        return {"ok": False, "error": "Timeout"}
    except Exception as exc:  # noqa: BLE001 - health reports any failure
        return {"ok": False, "error": type(exc).__name__}


async def _check(check: Callable[[Any], Awaitable[dict[str, Any]]], hub: Any) -> dict[str, Any]:
    try:
        return await asyncio.wait_for(check(hub), timeout=PROBE_SECONDS)
    except asyncio.TimeoutError:
        return {"ok": False, "error": "Timeout"}
    except Exception as exc:  # noqa: BLE001
        return {"ok": False, "error": type(exc).__name__}


async def healthz(request: Request):
    hub = hub_of(request)
    names = list(CHECKS)
    store, redis, *checks = await asyncio.gather(
        _probe(ping(hub.engine)), _probe(hub.redis.ping()), *(_check(CHECKS[name], hub) for name in names)
    )
    report: dict[str, Any] = {"store": {**store, "dialect": hub.engine.dialect.name}, "redis": redis}
    report.update(zip(names, checks))
    ok = all(part.get("ok") for part in report.values())
    return json({"ok": ok, **report}, 200 if ok else 503)


routes = [Route("/healthz", healthz, methods=["GET"])]
