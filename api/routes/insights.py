"""Insights module: generate now, list with filters, one chat's insight (seed curl 5).

Routes of the brief categories and insight tabs live here too (issue 10), added next to these.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, Field
from starlette.requests import Request
from starlette.routing import Route

from ai.insights.engine import generate
from api.auth import Principal, hub_of
from api.endpoint import endpoint
from api.errors import bad_request
from api.routes.messages import Millis, _decode_cursor, _encode_cursor, iso
from api.schemas import Body
from store import insights as insight_store

Level = Literal["high", "medium", "low"]


def _items(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"text": v.get("text"), "sourceMessageIds": v.get("sourceMessageIds") or [], "due": iso(v.get("due"))} for v in values or []]


def insight_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "chatId": row["chat_id"],
        "chatName": row["chat_name"],
        "accountId": row["account_id"],
        "platform": row["platform"],
        "dedupeKey": row["dedupe_key"],
        "title": row["title"],
        "description": row["description"],
        "importance": row["importance"],
        "urgency": row["urgency"],
        "categories": row["categories"] or [],
        "people": row["people"] or [],
        "groups": [row["chat_name"] or row["chat_id"]],
        "myTasks": _items(row["my_tasks"]),
        "waitingForMe": _items(row["waiting_for_me"]),
        "waitingForOthers": _items(row["waiting_for_others"]),
        "nextActions": row["next_actions"] or [],
        "mentions": row["mentions"] or [],
        "isUnreplied": bool(row["is_unreplied"]),
        "dueDate": iso(row["due_date"]),
        "sourceMessageIds": row["source_message_ids"] or [],
        "method": row["method"],
        "model": row["model"],
        "asOf": iso(row["as_of"]),
        "time": iso(row["as_of"]),
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


class GenerateBody(Body):
    chat_id: str | None = Field(default=None, max_length=200, validation_alias=AliasChoices("chatId", "channel"))
    account_id: str | None = Field(default=None, max_length=40, validation_alias=AliasChoices("accountId", "botId"))
    method: Literal["auto", "offline", "llm"] = "auto"
    force: bool = False


@endpoint(body=GenerateBody)
async def generate_insights(request: Request, user: Principal, body: GenerateBody):
    """Generate now: the caller's chats in scope that changed (or the named chat) -> `{insights}`."""
    rows = await generate(hub_of(request), user.id, chat_id=body.chat_id, account_id=body.account_id, method=body.method, force=body.force)
    rows.sort(key=lambda r: (-r["as_of"], r["id"]))
    return {"insights": [insight_json(r) for r in rows], "count": len(rows)}


class ListQuery(Body):
    platform: str | None = Field(default=None, max_length=40)
    account_id: str | None = Field(default=None, max_length=40, validation_alias=AliasChoices("accountId", "botId"))
    chat_id: str | None = Field(default=None, max_length=500, validation_alias=AliasChoices("chatId", "channel"))
    importance: Level | None = None
    urgency: Level | None = None
    since: Millis = None
    limit: int = Field(default=50, ge=1, le=200)
    cursor: str | None = Field(default=None, max_length=200)


@endpoint(query=ListQuery)
async def list_insights(request: Request, user: Principal, query: ListQuery):
    """The caller's insights, newest conversation first, filtered and keyset-paged."""
    filters = {
        column: value
        for column, value in (
            ("platform", query.platform), ("account_id", query.account_id), ("chat_id", query.chat_id),
            ("importance", query.importance), ("urgency", query.urgency),
        )
        if value is not None
    }
    before = None
    if query.cursor:
        as_of, row_id = _decode_cursor(query.cursor, 2)
        if not as_of.lstrip("-").isdigit():
            raise bad_request("Invalid cursor", "invalid_cursor")
        before = (int(as_of), row_id)
    async with hub_of(request).engine.connect() as conn:
        rows = await insight_store.list_insights(conn, user.id, filters=filters, since=query.since, before=before, limit=query.limit + 1)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    cursor = _encode_cursor(rows[-1]["as_of"], rows[-1]["id"]) if more and rows else None
    return {"insights": [insight_json(r) for r in rows], "nextCursor": cursor, "hasMore": more}


class ChatQuery(Body):
    chat_id: str = Field(min_length=1, max_length=500, validation_alias=AliasChoices("chatId", "channel"))
    account_id: str | None = Field(default=None, max_length=40, validation_alias=AliasChoices("accountId", "botId"))


@endpoint(query=ChatQuery)
async def chat_insights(request: Request, user: Principal, query: ChatQuery):
    """One chat's insights (one per account the chat id appears under): `{insights}`."""
    filters: dict[str, Any] = {"chat_id": query.chat_id}
    if query.account_id:
        filters["account_id"] = query.account_id
    async with hub_of(request).engine.connect() as conn:
        rows = await insight_store.list_insights(conn, user.id, filters=filters, limit=50)
    return {"insights": [insight_json(r) for r in rows]}


routes = [
    Route("/api/insights", list_insights, methods=["GET"]),
    Route("/api/insights/generate", generate_insights, methods=["POST"]),
    Route("/api/chat-insights", chat_insights, methods=["GET"]),
]
