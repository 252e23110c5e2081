"""The Starlette app factory: routes as an explicit list, one error format, one Hub."""

from __future__ import annotations

import contextlib
from typing import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

from api import openapi
from api.body_limit import DEFAULT_LIMIT, BodyLimit
from api.errors import HANDLERS
from api.routes import ai, auth, billing, health, integrations, messages, oauth_login, user
from api.routes import insight_brief, insight_tabs, insights
from api.routes import rag
from api.routes import files, storage, workspace
from api.routes import metrics, status
from api.routes import chat, native
from loomi.hub import Hub

Hook = Callable[[Hub], Awaitable[None]]


def all_routes() -> list[BaseRoute]:
    modules = [health, auth, oauth_login, user, messages, integrations, ai, billing, insights, insight_brief, insight_tabs, rag]
    modules += [files, storage, workspace]
    modules += [metrics, status]
    modules += [chat, native]
    return [route for module in modules for route in module.routes] + [
        Route("/openapi.json", openapi.openapi, methods=["GET"], include_in_schema=False)
    ]


MULTIPART_SLACK = 1 << 20  # headers and boundaries of a multipart body around its file


def rag_body_limits(hub: Hub) -> dict[str, int]:
    document = hub.settings.rag_max_file_bytes + MULTIPART_SLACK
    part = rag.MAX_CHUNK_SIZE + MULTIPART_SLACK
    return {"/api/rag/upload": document, "/api/rag/upload/async": document, "/api/rag/upload/chunk": part}


def body_limits(hub: Hub) -> dict[str, int]:
    """Routes allowed more than the default 1 MiB body: uploads and history imports."""
    upload = hub.settings.upload_max_bytes + MULTIPART_SLACK
    bulk = messages.MAX_IMPORT_BYTES + MULTIPART_SLACK
    return {
        "/api/ai/v1/upload": upload,
        "/api/ai/v1/files": upload,
        "/api/ai/v1/audio/transcriptions": upload,
        "/api/messages/import": bulk,
        "/api/messages/raw": bulk,
        **rag_body_limits(hub),
        "/api/files/upload": upload, "/api/workspace/skills/upload": workspace.MAX_UPLOAD_BYTES + MULTIPART_SLACK,
    }


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

    limits = body_limits(hub)
    middleware = [Middleware(BodyLimit, default=DEFAULT_LIMIT, limits=limits)]  # type: ignore[arg-type]
    app = Starlette(routes=all_routes(), exception_handlers=HANDLERS, middleware=middleware, lifespan=lifespan)  # type: ignore[arg-type]
    app.state.hub = hub
    app.state.upload_paths = frozenset(limits)  # where a cookie-authenticated multipart body is accepted (api.auth)
    return app
