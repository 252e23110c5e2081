"""Stored files (`files`): one person's rows only; another person's id behaves as a missing one."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from store.schema import files


async def create(conn: AsyncConnection, row: dict[str, Any]) -> dict[str, Any]:
    await conn.execute(files.insert().values(**row))
    return row


async def get(conn: AsyncConnection, user_id: str, file_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(sa.select(files).where(files.c.id == file_id, files.c.user_id == user_id))).first()
    return dict(row._mapping) if row else None


async def list_files(conn: AsyncConnection, user_id: str, *, source: str | None, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """Newest first, and the total matching."""
    where = [files.c.user_id == user_id] + ([files.c.source == source] if source else [])
    rows = await conn.execute(
        sa.select(files).where(*where).order_by(files.c.created_at.desc(), files.c.id.desc()).limit(limit).offset(offset)
    )
    total = (await conn.execute(sa.select(sa.func.count()).select_from(files).where(*where))).scalar_one()
    return [dict(r._mapping) for r in rows], int(total)


async def delete(conn: AsyncConnection, user_id: str, file_id: str) -> bool:
    result = await conn.execute(sa.delete(files).where(files.c.id == file_id, files.c.user_id == user_id))
    return bool(result.rowcount)


async def usage(conn: AsyncConnection, user_id: str) -> dict[str, tuple[int, int]]:
    """source -> (files, bytes)."""
    rows = await conn.execute(
        sa.select(files.c.source, sa.func.count(), sa.func.coalesce(sa.func.sum(files.c.size_bytes), 0))
        .where(files.c.user_id == user_id)
        .group_by(files.c.source)
    )
    return {source: (int(count), int(size)) for source, count, size in rows}

