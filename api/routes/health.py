"""`/healthz`: is the store reachable, is Redis, is work flowing."""

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


async def _probe(coro: Awaitable[Any]) -> dict[str, Any]:
    try:
        await asyncio.wait_for(coro, timeout=2)
        return {"ok": True}
    except Exception as exc:  # noqa: BLE001 - health reports any failure
        return {"ok": False, "error": type(exc).__name__}


async def healthz(request: Request):
    hub = hub_of(request)
    report: dict[str, Any] = {
        "store": {**await _probe(ping(hub.engine)), "dialect": hub.engine.dialect.name},
        "redis": await _probe(hub.redis.ping()),
    }
    for name, check in CHECKS.items():
        try:
            report[name] = await check(hub)
        except Exception as exc:  # noqa: BLE001
            report[name] = {"ok": False, "error": type(exc).__name__}
    ok = all(part.get("ok") for part in report.values())
    return json({"ok": ok, **report}, 200 if ok else 503)


routes = [Route("/healthz", healthz, methods=["GET"])]
