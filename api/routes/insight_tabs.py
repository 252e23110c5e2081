"""Insight tabs: /api/insight-tabs, saved filters whose contents the database computes.

A tab's filter is validated when saved (400 naming the bad condition) and evaluated as one SQL
WHERE clause (ai/insights/filters.py) by `GET /api/insight-tabs/{tabId}/insights`;
`POST /api/insight-tabs/preview` runs a filter without saving it. Reorder is POST (seed) or
PUT (openloomi).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, StringConstraints, model_validator
from starlette.requests import Request
from starlette.routing import Route

from ai.insights.filters import InsightFilter, where
from api.auth import Principal, hub_of
from api.endpoint import endpoint
from api.errors import ApiError, bad_request
from api.routes.insights import insight_json
from api.routes.messages import iso
from api.schemas import Body
from store import insight_tabs as store
from store.ids import now_ms

TabName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


def tab_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "userId": row["user_id"],
        "name": row["name"],
        "type": "custom",
        "filter": row["filter"],
        "enabled": bool(row["enabled"]),
        "sortOrder": row["position"],
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


def tab_not_found() -> ApiError:
    return ApiError(404, "Tab not found", "tab_not_found")


class TabBody(Body):
    name: TabName
    filter: InsightFilter


class TabUpdate(Body):
    name: TabName | None = None
    filter: InsightFilter | None = None
    enabled: bool | None = None

    @model_validator(mode="after")
    def _something(self) -> "TabUpdate":
        if self.name is None and self.filter is None and self.enabled is None:
            raise ValueError("give name, filter or enabled")
        return self


class ReorderBody(Body):
    tab_ids: Annotated[list[Annotated[str, StringConstraints(min_length=1, max_length=40)]], Field(alias="tabIds", max_length=store.MAX_TABS)]

    @model_validator(mode="after")
    def _unique(self) -> "ReorderBody":
        if len(set(self.tab_ids)) != len(self.tab_ids):
            raise ValueError("tabIds: an id appears twice")
        return self


class PageQuery(Body):
    limit: int = Field(default=50, ge=1, le=200)
    offset: int = Field(default=0, ge=0)


class PreviewBody(PageQuery):
    filter: InsightFilter


@endpoint()
async def list_tabs(request: Request, user: Principal):
    """The person's tabs in their order: `{tabs}`."""
    async with hub_of(request).engine.connect() as conn:
        rows = await store.list_tabs(conn, user.id)
    return {"tabs": [tab_json(row) for row in rows]}


@endpoint(body=TabBody)
async def create_tab(request: Request, user: Principal, body: TabBody):
    """A new tab `{name, filter}`, after the others: `{tab}`."""
    async with hub_of(request).engine.begin() as conn:
        try:
            row = await store.create_tab(conn, user.id, body.name, body.filter.dump(), now_ms())
        except store.TooManyTabs:
            raise bad_request("Too many tabs", "too_many_tabs", f"at most {store.MAX_TABS}") from None
    return {"tab": tab_json(row)}


@endpoint(body=TabUpdate)
async def update_tab(request: Request, user: Principal, body: TabUpdate):
    """Change a tab's name, filter or enabled flag: `{tab}`."""
    changes: dict[str, Any] = {}
    if body.name is not None:
        changes["name"] = body.name
    if body.filter is not None:
        changes["filter"] = body.filter.dump()
    if body.enabled is not None:
        changes["enabled"] = body.enabled
    async with hub_of(request).engine.begin() as conn:
        row = await store.update_tab(conn, user.id, request.path_params["tabId"], changes, now_ms())
    if row is None:
        raise tab_not_found()
    return {"tab": tab_json(row)}


@endpoint()
async def delete_tab(request: Request, user: Principal):
    """Delete a tab (openloomi's client does; the seed does not list it)."""
    async with hub_of(request).engine.begin() as conn:
        deleted = await store.delete_tab(conn, user.id, request.path_params["tabId"])
    if not deleted:
        raise tab_not_found()
    return {"success": True}


@endpoint(body=ReorderBody)
async def reorder(request: Request, user: Principal, body: ReorderBody):
    """Put `tabIds` first in that order; tabs not named keep their order after them."""
    async with hub_of(request).engine.begin() as conn:
        missing = await store.reorder(conn, user.id, body.tab_ids, now_ms())
        if missing:
            raise ApiError(404, "Tab not found", "tab_not_found", f"not yours or no such tab: {', '.join(missing[:5])}")
        rows = await store.list_tabs(conn, user.id)
    return {"success": True, "tabs": [tab_json(row) for row in rows]}


async def _page(request: Request, user: Principal, flt: InsightFilter, query: PageQuery) -> dict[str, Any]:
    engine = hub_of(request).engine
    clause = where(flt, dialect=engine.dialect.name, now_ms=now_ms())
    async with engine.connect() as conn:
        rows, total = await store.matching_insights(conn, user.id, clause, limit=query.limit, offset=query.offset)
    return {"insights": [insight_json(row) for row in rows], "total": total, "limit": query.limit, "offset": query.offset}


@endpoint(query=PageQuery)
async def tab_insights(request: Request, user: Principal, query: PageQuery):
    """The insights a tab's filter selects, newest activity first: `{tab, insights, total}`."""
    async with hub_of(request).engine.connect() as conn:
        row = await store.get_tab(conn, user.id, request.path_params["tabId"])
    if row is None:
        raise tab_not_found()
    return {"tab": tab_json(row), **await _page(request, user, InsightFilter.model_validate(row["filter"]), query)}


@endpoint(body=PreviewBody)
async def preview(request: Request, user: Principal, body: PreviewBody):
    """Run a filter without saving it: `{insights, total}`."""
    return await _page(request, user, body.filter, body)


routes = [
    Route("/api/insight-tabs", list_tabs, methods=["GET"]),
    Route("/api/insight-tabs", create_tab, methods=["POST"]),
    Route("/api/insight-tabs/reorder", reorder, methods=["POST", "PUT"]),
    Route("/api/insight-tabs/preview", preview, methods=["POST"]),
    Route("/api/insight-tabs/{tabId}", update_tab, methods=["PUT"]),
    Route("/api/insight-tabs/{tabId}", delete_tab, methods=["DELETE"]),
    Route("/api/insight-tabs/{tabId}/insights", tab_insights, methods=["GET"]),
]
