"""Workspace skills (`skills`): scoped to one owner; names are unique per owner."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from store.schema import skills

MAX_SKILLS = 200


class NameTaken(Exception):
    pass


class TooMany(Exception):
    pass


async def list_skills(conn: AsyncConnection, user_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(sa.select(skills).where(skills.c.user_id == user_id).order_by(skills.c.name, skills.c.id))
    return [dict(r._mapping) for r in rows]


async def get(conn: AsyncConnection, user_id: str, skill_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(sa.select(skills).where(skills.c.id == skill_id, skills.c.user_id == user_id))).first()
    return dict(row._mapping) if row else None


async def create(conn: AsyncConnection, row: dict[str, Any]) -> dict[str, Any]:
    count = (await conn.execute(sa.select(sa.func.count()).select_from(skills).where(skills.c.user_id == row["user_id"]))).scalar_one()
    if count >= MAX_SKILLS:
        raise TooMany
    try:
        async with conn.begin_nested():
            await conn.execute(skills.insert().values(**row))
    except IntegrityError:
        raise NameTaken from None
    return row


async def update(conn: AsyncConnection, user_id: str, skill_id: str, changes: dict[str, Any]) -> dict[str, Any] | None:
    try:
        async with conn.begin_nested():
            result = await conn.execute(
                sa.update(skills).where(skills.c.id == skill_id, skills.c.user_id == user_id).values(**changes)
            )
    except IntegrityError:
        raise NameTaken from None
    if not result.rowcount:
        return None
    return await get(conn, user_id, skill_id)


async def delete(conn: AsyncConnection, user_id: str, skill_id: str) -> bool:
    result = await conn.execute(sa.delete(skills).where(skills.c.id == skill_id, skills.c.user_id == user_id))
    return bool(result.rowcount)
