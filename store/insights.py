"""Insights rows: one per (owner, chat), upserted by dedupe key; reads are always per owner."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from store.ids import new_id, now_ms
from store.schema import insights, messages

_KEEP = {"id", "user_id", "dedupe_key", "created_at"}


def dedupe_key(account_id: str | None, chat_id: str) -> str:
    return f"{account_id}:{chat_id}"


async def upsert(conn: AsyncConnection, values: dict[str, Any]) -> dict[str, Any]:
    """Insert the chat's insight or replace the one with the same (user, dedupe key)."""
    now = now_ms()
    row = {"id": new_id("ins"), "created_at": now, "updated_at": now, **values}
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(insights).values(**row)
    stmt = insert.on_conflict_do_update(
        index_elements=[insights.c.user_id, insights.c.dedupe_key],
        set_={c: insert.excluded[c] for c in row if c not in _KEEP},
    )
    await conn.execute(stmt)
    found = await get_by_key(conn, row["user_id"], row["dedupe_key"])
    assert found is not None
    return found


async def get_by_key(conn: AsyncConnection, user_id: str, key: str) -> dict[str, Any] | None:
    row = (await conn.execute(insights.select().where(insights.c.user_id == user_id, insights.c.dedupe_key == key))).mappings().first()
    return dict(row) if row else None


async def get(conn: AsyncConnection, user_id: str, insight_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(insights.select().where(insights.c.user_id == user_id, insights.c.id == insight_id))).mappings().first()
    return dict(row) if row else None


async def list_insights(
    conn: AsyncConnection,
    user_id: str,
    *,
    filters: dict[str, Any] | None = None,
    since: int | None = None,
    before: tuple[int, str] | None = None,
    limit: int = 50,
) -> list[dict[str, Any]]:
    """Newest conversation first (as_of, id), keyset-paged; `filters` are column equalities."""
    query = insights.select().where(insights.c.user_id == user_id)
    for column, value in (filters or {}).items():
        query = query.where(insights.c[column] == value)
    if since is not None:
        query = query.where(insights.c.as_of >= since)
    if before is not None:
        as_of, row_id = before
        query = query.where(sa.or_(insights.c.as_of < as_of, sa.and_(insights.c.as_of == as_of, insights.c.id < row_id)))
    query = query.order_by(insights.c.as_of.desc(), insights.c.id.desc()).limit(limit)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def chats(
    conn: AsyncConnection, user_id: str, *, account_id: str | None = None, chat_id: str | None = None, after_seq: int | None = None
) -> list[dict[str, Any]]:
    """The owner's chats (account, chat) with their newest seq and arrival time; only chats
    changed after `after_seq` when given."""
    m = messages
    query = (
        sa.select(m.c.account_id, m.c.chat_id, sa.func.min(m.c.seq).label("min_seq"), sa.func.max(m.c.seq).label("max_seq"),
                  sa.func.max(m.c.updated_at).label("arrived"))
        .where(m.c.user_id == user_id)
        .group_by(m.c.account_id, m.c.chat_id)
        .order_by(m.c.account_id, m.c.chat_id)
    )
    if account_id is not None:
        query = query.where(m.c.account_id == account_id)
    if chat_id is not None:
        query = query.where(m.c.chat_id == chat_id)
    if after_seq is not None:
        query = query.where(m.c.seq > after_seq)
    return [dict(r) for r in (await conn.execute(query)).mappings()]


async def last_seqs(conn: AsyncConnection, user_id: str) -> dict[str, int]:
    rows = await conn.execute(sa.select(insights.c.dedupe_key, insights.c.last_seq).where(insights.c.user_id == user_id))
    return {key: int(seq) for key, seq in rows}
