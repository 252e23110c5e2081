"""Brief categories: /api/insights/brief-categories/* and /api/insights/{id}/brief-category.

The category of each insight comes from the score in ai/insights/brief.py unless the person
set one (an override) or pinned / unpinned it; those are never overwritten by sync or a plain
cleanup. Both the seed's routes and the openloomi client's shapes are accepted: cleanup is
POST (seed) or DELETE with `?force=true` (openloomi); overrides reads `{insights}` (openloomi)
and also writes `{overrides: {id: category|null}}` or `{insightId, category}`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StringConstraints, model_validator
from starlette.requests import Request
from starlette.routing import Route

from ai.insights.brief import CATEGORIES, Brief, categorize
from api.auth import Principal, hub_of
from api.endpoint import endpoint
from api.errors import ApiError
from api.routes.insights import insight_json
from api.routes.messages import iso
from api.schemas import Body
from store import insight_brief as store
from store.ids import now_ms

Category = Literal["urgent", "important", "monitor", "archive"]
InsightId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
MAX_SYNC = 100
MAX_REFS = 1000


def _ref(value: Any) -> Any:
    """An insight is given as its id or as the insight object itself (openloomi sends objects)."""
    if isinstance(value, dict):
        if "id" not in value:
            raise ValueError("an insight object needs its id")
        return value["id"]
    return value


InsightRef = Annotated[InsightId, BeforeValidator(_ref)]


def not_found(error: store.NotOwned) -> ApiError:
    shown = ", ".join(error.ids[:5]) + (" …" if len(error.ids) > 5 else "")
    return ApiError(404, "Insight not found", "insight_not_found", f"not yours or no such insight: {shown}")


def _auto(scored: dict[str, dict[str, Any]], now: int, given: dict[str, str] | None = None) -> dict[str, str]:
    """Each insight's automatic category: the client's when it sent one, else the score's."""
    given = given or {}
    return {i: given.get(i) or categorize(row, now).category for i, row in scored.items()}


class BriefQuery(Body):
    category: Category | None = None
    limit: int = Field(default=500, ge=1, le=2000)
    offset: int = Field(default=0, ge=0)


class SyncBody(Body):
    insight_ids: Annotated[list[InsightId], Field(alias="insightIds", max_length=MAX_SYNC)]
    categories: dict[str, Category] | None = None

    @model_validator(mode="after")
    def _known(self) -> "SyncBody":
        extra = set(self.categories or {}) - set(self.insight_ids)
        if extra:
            raise ValueError(f"categories: {len(extra)} id(s) are not in insightIds")
        return self


class OverridesBody(Body):
    insights: Annotated[list[InsightRef], Field(max_length=MAX_REFS)] | None = None
    overrides: Annotated[dict[str, Category | None], Field(max_length=MAX_REFS)] | None = None
    insight_id: InsightId | None = Field(default=None, alias="insightId")
    category: Category | None = None

    @model_validator(mode="after")
    def _something(self) -> "OverridesBody":
        if self.insights is None and self.overrides is None and self.insight_id is None:
            raise ValueError("give insights (to read), overrides or insightId with category (to set)")
        if self.category is not None and self.insight_id is None:
            raise ValueError("category needs insightId")
        return self

    def writes(self) -> dict[str, str | None]:
        out: dict[str, str | None] = dict(self.overrides or {})
        if self.insight_id is not None:
            out[self.insight_id] = self.category
        return out


class PinBody(Body):
    insight_id: InsightId | None = Field(default=None, alias="insightId")
    insight_ids: Annotated[list[InsightId], Field(max_length=MAX_SYNC)] | None = Field(default=None, alias="insightIds")
    pinned: bool = True
    category: Category | None = None

    @model_validator(mode="after")
    def _ids(self) -> "PinBody":
        if not self.ids():
            raise ValueError("give insightId or insightIds")
        if self.category is not None and not self.pinned:
            raise ValueError("category is only for pinning")
        return self

    def ids(self) -> list[str]:
        return list(dict.fromkeys(([self.insight_id] if self.insight_id else []) + (self.insight_ids or [])))


class CleanupQuery(Body):
    force: bool = False


class CategoryBody(Body):
    category: Category


def _item(row: dict[str, Any] | None, insight: dict[str, Any], brief: Brief) -> dict[str, Any]:
    category, source = (row["category"], row["source"]) if row else (brief.category, "computed")
    return {
        "insightId": insight["id"],
        "title": insight["title"],
        "category": category,
        "source": source,  # computed (no row) | auto (synced) | override (the person's)
        "pinned": bool(row and row["pinned"]),
        "unpinned": bool(row and row["unpinned_at"] is not None),
        "score": brief.score,
        "computedCategory": brief.category,
        "cold": brief.cold,
        "asOf": iso(insight["as_of"]),
    }


@endpoint(query=BriefQuery)
async def list_brief(request: Request, user: Principal, query: BriefQuery):
    """Every insight's brief category, most pressing first, with its score and where it came from."""
    now = now_ms()
    async with hub_of(request).engine.connect() as conn:
        scored = await store.all_scored(conn, user.id)
        rows = await store.rows_of(conn, user.id)
    ranked = [(_item(rows.get(ins["id"]), ins, categorize(ins, now)), int(ins["as_of"])) for ins in scored]
    ranked.sort(key=lambda pair: (CATEGORIES.index(pair[0]["category"]), -pair[0]["score"], -pair[1]))
    items = [item for item, _ in ranked]
    counts = {name: sum(1 for i in items if i["category"] == name) for name in CATEGORIES}
    if query.category:
        items = [i for i in items if i["category"] == query.category]
    page = items[query.offset : query.offset + query.limit]
    return {
        "success": True,
        "data": {
            "items": page,
            "categories": {i["insightId"]: i["category"] for i in page},
            "counts": counts,
            "pinnedIds": sorted(i for i, r in rows.items() if r["pinned"]),
            "unpinnedIds": sorted(i for i, r in rows.items() if r["unpinned_at"] is not None),
            "total": len(items),
            "limit": query.limit,
            "offset": query.offset,
        },
    }


@endpoint(body=SyncBody)
async def sync(request: Request, user: Principal, body: SyncBody):
    """Record the brief's current list; the person's overrides, pins and unpins stay as they are."""
    if not body.insight_ids:
        return {"success": True, "data": {"synced": 0, "cleaned": 0}}
    now = now_ms()
    ids = list(dict.fromkeys(body.insight_ids))
    async with hub_of(request).engine.begin() as conn:
        try:
            scored = await store.owned(conn, user.id, ids)
        except store.NotOwned as err:
            raise not_found(err) from None
        synced, cleaned = await store.sync(conn, user.id, ids, _auto(scored, now, body.categories), now)
    return {"success": True, "data": {"synced": synced, "cleaned": cleaned}}


@endpoint(body=OverridesBody)
async def overrides(request: Request, user: Principal, body: OverridesBody):
    """The person's categories for the given insights (and sets them when asked)."""
    now = now_ms()
    writes = body.writes()
    asked = list(dict.fromkeys((body.insights or []) + list(writes)))
    async with hub_of(request).engine.begin() as conn:
        try:
            scored = await store.owned(conn, user.id, asked)
        except store.NotOwned as err:
            raise not_found(err) from None
        if writes:
            await store.set_overrides(conn, user.id, writes, _auto(scored, now), now)
        rows = await store.rows_of(conn, user.id)
    shown = {
        i: rows[i]["category"]
        for i in asked
        if i in rows and rows[i]["unpinned_at"] is None and (rows[i]["source"] == "override" or rows[i]["pinned"])
    }
    unpinned = sorted(i for i, r in rows.items() if r["unpinned_at"] is not None)
    return {"success": True, "data": {"overrides": shown, "unpinnedIds": unpinned}}


@endpoint()
async def list_pinned(request: Request, user: Principal):
    """The insights the person pinned, each with its `briefCategory`."""
    async with hub_of(request).engine.connect() as conn:
        rows = await store.pinned_insights(conn, user.id)
    return {"success": True, "data": {"insights": [{**insight_json(r), "briefCategory": r["brief_category"]} for r in rows]}}


@endpoint(body=PinBody)
async def pin(request: Request, user: Principal, body: PinBody):
    """Pin insights to the brief (`pinned: true`, optionally in a category) or take them off."""
    now = now_ms()
    ids = body.ids()
    async with hub_of(request).engine.begin() as conn:
        try:
            scored = await store.owned(conn, user.id, ids)
        except store.NotOwned as err:
            raise not_found(err) from None
        await store.set_pins(conn, user.id, ids, body.pinned, _auto(scored, now), now, body.category)
        rows = await store.rows_of(conn, user.id)
    return {
        "success": True,
        "data": {
            "pinnedIds": sorted(i for i, r in rows.items() if r["pinned"]),
            "unpinnedIds": sorted(i for i, r in rows.items() if r["unpinned_at"] is not None),
        },
    }


@endpoint(query=CleanupQuery, query_in_body=True)
async def cleanup(request: Request, user: Principal, query: CleanupQuery):
    """Forget the automatic rows; `force=true` forgets the person's overrides and pins too."""
    async with hub_of(request).engine.begin() as conn:
        cleaned = await store.cleanup(conn, user.id, query.force)
    message = "Cleaned up all brief category records" if query.force else "Cleaned up auto records (the person's kept)"
    return {"success": True, "message": message, "data": {"cleaned": cleaned}}


@endpoint(body=CategoryBody)
async def set_category(request: Request, user: Principal, body: CategoryBody):
    """openloomi's per-insight override: POST /api/insights/{id}/brief-category {category}."""
    insight_id = request.path_params["insightId"]
    now = now_ms()
    async with hub_of(request).engine.begin() as conn:
        try:
            scored = await store.owned(conn, user.id, [insight_id])
        except store.NotOwned as err:
            raise not_found(err) from None
        await store.set_overrides(conn, user.id, {insight_id: body.category}, _auto(scored, now), now)
    return {"success": True, "data": {"id": insight_id, "category": body.category}}


@endpoint()
async def get_category(request: Request, user: Principal):
    """The person's category for one insight, or null when the score decides."""
    insight_id = request.path_params["insightId"]
    async with hub_of(request).engine.connect() as conn:
        try:
            await store.owned(conn, user.id, [insight_id])
        except store.NotOwned as err:
            raise not_found(err) from None
        row = (await store.rows_of(conn, user.id, [insight_id])).get(insight_id)
    category = row["category"] if row and row["unpinned_at"] is None and store.is_persons(row) else None
    return {"success": True, "data": {"id": insight_id, "category": category}}


BASE = "/api/insights/brief-categories"
routes = [
    Route(BASE, list_brief, methods=["GET"]),
    Route(f"{BASE}/sync", sync, methods=["POST"]),
    Route(f"{BASE}/overrides", overrides, methods=["POST"]),
    Route(f"{BASE}/pinned", list_pinned, methods=["GET"]),
    Route(f"{BASE}/pinned", pin, methods=["POST"]),
    Route(f"{BASE}/cleanup", cleanup, methods=["POST", "DELETE"]),
    Route("/api/insights/{insightId}/brief-category", get_category, methods=["GET"]),
    Route("/api/insights/{insightId}/brief-category", set_category, methods=["POST"]),
]
