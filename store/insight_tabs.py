"""Insight tabs (`insight_tabs`): a person's saved filters, in the order they arrange them.

Every function is scoped to one owner: another owner's tab id behaves as a missing one.
The filter is stored as validated JSON; turning it into SQL is ai/insights/filters.py's job.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.elements import ColumnElement

from store.ids import new_id
from store.schema import insight_tabs, insights

MAX_TABS = 50


class TooManyTabs(Exception):
    pass


async def list_tabs(conn: AsyncConnection, user_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(
        sa.select(insight_tabs)
        .where(insight_tabs.c.user_id == user_id)
        .order_by(insight_tabs.c.position, insight_tabs.c.created_at, insight_tabs.c.id)
    )
    return [dict(row._mapping) for row in rows]


async def get_tab(conn: AsyncConnection, user_id: str, tab_id: str) -> dict[str, Any] | None:
    row = (
        await conn.execute(sa.select(insight_tabs).where(insight_tabs.c.id == tab_id, insight_tabs.c.user_id == user_id))
    ).first()
    return dict(row._mapping) if row else None


async def create_tab(conn: AsyncConnection, user_id: str, name: str, flt: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """A new tab, placed after the others."""
    count, last = (
        await conn.execute(
            sa.select(sa.func.count(), sa.func.max(insight_tabs.c.position)).where(insight_tabs.c.user_id == user_id)
        )
    ).one()
    if count >= MAX_TABS:
        raise TooManyTabs
    row = {
        "id": new_id("tab"),
        "user_id": user_id,
        "name": name,
        "filter": flt,
        "enabled": True,
        "position": 0 if last is None else int(last) + 1,
        "created_at": now_ms,
        "updated_at": now_ms,
    }
    await conn.execute(insight_tabs.insert().values(**row))
    return row


async def update_tab(conn: AsyncConnection, user_id: str, tab_id: str, changes: dict[str, Any], now_ms: int) -> dict[str, Any] | None:
    result = await conn.execute(
        sa.update(insight_tabs)
        .where(insight_tabs.c.id == tab_id, insight_tabs.c.user_id == user_id)
        .values(**changes, updated_at=now_ms)
    )
    if not result.rowcount:
        return None
    return await get_tab(conn, user_id, tab_id)


async def delete_tab(conn: AsyncConnection, user_id: str, tab_id: str) -> bool:
    result = await conn.execute(sa.delete(insight_tabs).where(insight_tabs.c.id == tab_id, insight_tabs.c.user_id == user_id))
    return bool(result.rowcount)


async def reorder(conn: AsyncConnection, user_id: str, tab_ids: list[str], now_ms: int) -> list[str] | None:
    """Put `tab_ids` first, in that order, the rest after them as they were.

    Returns the ids that are not the owner's (nothing changed then), or None when done.
    """
    current = [tab["id"] for tab in await list_tabs(conn, user_id)]
    missing = [tab_id for tab_id in tab_ids if tab_id not in set(current)]
    if missing:
        return missing
    order = tab_ids + [tab_id for tab_id in current if tab_id not in set(tab_ids)]
    for position, tab_id in enumerate(order):
        await conn.execute(
            sa.update(insight_tabs)
            .where(insight_tabs.c.id == tab_id, insight_tabs.c.user_id == user_id)
            .values(position=position, updated_at=now_ms)
        )
    return None


async def matching_insights(
    conn: AsyncConnection, user_id: str, clause: ColumnElement[bool], *, limit: int, offset: int
) -> tuple[list[dict[str, Any]], int]:
    """One page of the owner's insights matching `clause`, newest activity first, and the total."""
    where = [insights.c.user_id == user_id, clause]
    total = (await conn.execute(sa.select(sa.func.count()).select_from(insights).where(*where))).scalar_one()
    rows = await conn.execute(
        sa.select(insights).where(*where).order_by(insights.c.as_of.desc(), insights.c.id.desc()).limit(limit).offset(offset)
    )
    return [dict(row._mapping) for row in rows], int(total)
