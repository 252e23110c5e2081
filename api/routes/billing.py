"""Billing module: /api/billing/ledger, the user's charges and credits (AI usage included)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from starlette.requests import Request
from starlette.routing import Route

from api.auth import Principal, hub_of
from api.endpoint import endpoint
from api.schemas import Body
from store.ledger import list_entries, public_entry

Source = Literal["purchase", "usage", "refund", "reward", "subscription"]


class LedgerQuery(Body):
    limit: int = Field(default=50, ge=1, le=500)
    offset: int = Field(default=0, ge=0)
    source: Source | None = None


@endpoint(query=LedgerQuery)
async def ledger(request: Request, user: Principal, query: LedgerQuery):
    """The user's ledger, newest first: `{items, total, limit, offset}`."""
    async with hub_of(request).engine.connect() as conn:
        rows, total = await list_entries(conn, user.id, limit=query.limit, offset=query.offset, source=query.source)
    return {"items": [public_entry(row) for row in rows], "total": total, "limit": query.limit, "offset": query.offset}


routes = [Route("/api/billing/ledger", ledger, methods=["GET"])]
