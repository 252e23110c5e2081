"""The Starlette app factory: routes as an explicit list, one error format, one Hub."""

from __future__ import annotations

import contextlib
from typing import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route

from api import openapi
from api.errors import HANDLERS
from api.routes import ai, auth, billing, health, integrations, messages, oauth_login, user
from api.routes import insight_brief, insight_tabs, insights
from loomi.hub import Hub

Hook = Callable[[Hub], Awaitable[None]]


def all_routes() -> list[BaseRoute]:
    modules = [health, auth, oauth_login, user, messages, integrations, ai, billing, insights, insight_brief, insight_tabs]
    return [route for module in modules for route in module.routes] + [
        Route("/openapi.json", openapi.openapi, methods=["GET"], include_in_schema=False)
    ]


def create_app(hub: Hub, *, on_startup: list[Hook] | None = None, on_shutdown: list[Hook] | None = None) -> Starlette:
    """An app bound to an opened Hub; the caller owns the Hub's lifetime."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for hook in on_startup or []:
            await hook(hub)
        try:
            yield
        finally:
            for hook in on_shutdown or []:
                await hook(hub)

    app = Starlette(routes=all_routes(), exception_handlers=HANDLERS, lifespan=lifespan)  # type: ignore[arg-type]
    app.state.hub = hub
    return app
