"""Assistant chats (`assistant_chats`), their messages (`assistant_messages`) and the person's
own characters (`characters`).

Every function is scoped to one owner: another owner's id behaves exactly as a missing one, so
a route can only ever answer 404 for it. Messages are numbered within their chat (`seq`, unique):
appending takes the next number in the same transaction that bumps the chat's counter, so two
concurrent appends to one chat serialize on the chat row (PostgreSQL) or the database lock
(SQLite) instead of colliding.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from store.ids import new_id
from store.schema import assistant_chats, assistant_messages, characters

MAX_CHATS = 10_000
MAX_CHARACTERS = 200


class TooMany(Exception):
    """The owner reached MAX_CHATS or MAX_CHARACTERS."""


# ---- chats ----------------------------------------------------------------------------------


async def list_chats(conn: AsyncConnection, user_id: str, *, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    """One page of the owner's chats, most recently active first, and how many there are."""
    where = assistant_chats.c.user_id == user_id
    total = (await conn.execute(sa.select(sa.func.count()).select_from(assistant_chats).where(where))).scalar_one()
    rows = await conn.execute(
        sa.select(assistant_chats).where(where)
        .order_by(assistant_chats.c.updated_at.desc(), assistant_chats.c.id.desc()).limit(limit).offset(offset)
    )
    return [dict(r._mapping) for r in rows], int(total)


async def get_chat(conn: AsyncConnection, user_id: str, chat_id: str) -> dict[str, Any] | None:
    row = (
        await conn.execute(sa.select(assistant_chats).where(assistant_chats.c.id == chat_id, assistant_chats.c.user_id == user_id))
    ).first()
    return dict(row._mapping) if row else None


async def create_chat(
    conn: AsyncConnection, user_id: str, *, title: str, character_id: str | None, model: str | None, now_ms: int,
    chat_id: str | None = None,
) -> dict[str, Any]:
    count = (await conn.execute(sa.select(sa.func.count()).select_from(assistant_chats).where(assistant_chats.c.user_id == user_id))).scalar_one()
    if count >= MAX_CHATS:
        raise TooMany
    row = {
        "id": chat_id or new_id("achat"), "user_id": user_id, "title": title, "character_id": character_id, "model": model,
        "message_count": 0, "created_at": now_ms, "updated_at": now_ms,
    }
    await conn.execute(assistant_chats.insert().values(**row))
    return row


async def update_chat(conn: AsyncConnection, user_id: str, chat_id: str, changes: dict[str, Any], now_ms: int) -> dict[str, Any] | None:
    result = await conn.execute(
        sa.update(assistant_chats)
        .where(assistant_chats.c.id == chat_id, assistant_chats.c.user_id == user_id)
        .values(**changes, updated_at=now_ms)
    )
    if not result.rowcount:
        return None
    return await get_chat(conn, user_id, chat_id)


async def delete_chat(conn: AsyncConnection, user_id: str, chat_id: str) -> bool:
    """The chat and (by cascade, and explicitly for SQLite without foreign keys) its messages."""
    chat = await get_chat(conn, user_id, chat_id)
    if chat is None:
        return False
    await conn.execute(sa.delete(assistant_messages).where(assistant_messages.c.chat_id == chat_id))
    await conn.execute(sa.delete(assistant_chats).where(assistant_chats.c.id == chat_id, assistant_chats.c.user_id == user_id))
    return True


# ---- messages -------------------------------------------------------------------------------


async def append_messages(
    conn: AsyncConnection, user_id: str, chat_id: str, turns: list[tuple[str, str, dict[str, Any]]], now_ms: int,
    client_ids: list[str | None] | None = None,
) -> list[dict[str, Any]] | None:
    """Append `(role, content, meta)` turns in order; None if the chat is not the owner's.

    The counter bump comes first: it takes the chat row's write lock, so the numbers read
    after it cannot be taken by a concurrent append.
    """
    bumped = await conn.execute(
        sa.update(assistant_chats)
        .where(assistant_chats.c.id == chat_id, assistant_chats.c.user_id == user_id)
        .values(message_count=assistant_chats.c.message_count + len(turns), updated_at=now_ms)
    )
    if not bumped.rowcount:
        return None
    last = (await conn.execute(sa.select(sa.func.max(assistant_messages.c.seq)).where(assistant_messages.c.chat_id == chat_id))).scalar_one()
    seq = int(last or 0)
    rows = []
    for i, (role, content, meta) in enumerate(turns):
        seq += 1
        rows.append({"id": new_id("amsg"), "chat_id": chat_id, "user_id": user_id, "seq": seq, "role": role,
                     "content": content, "meta": meta, "created_at": now_ms, "client_id": client_ids[i] if client_ids else None})
    await conn.execute(assistant_messages.insert(), rows)
    return rows


async def save_messages(
    conn: AsyncConnection, user_id: str, chat_id: str, items: list[tuple[str, str, str]], now_ms: int,
) -> tuple[int, int] | None:
    """Save `(client_id, role, content)` messages an app keeps its own ids for: a known id in
    this chat (the app's own, or ours for a message it read back from us) is updated in place,
    a new one appended; the same call again changes nothing.
    Returns (appended, updated), or None if the chat is not the owner's."""
    if await get_chat(conn, user_id, chat_id) is None:
        return None
    ids = [i[0] for i in items]
    m = assistant_messages.c
    known = {r.client_id or r.id: r for r in await conn.execute(
        sa.select(m.id, m.client_id, m.role, m.content).where(
            m.chat_id == chat_id, sa.or_(m.client_id.in_(ids), sa.and_(m.client_id.is_(None), m.id.in_(ids))))
    )}
    fresh: list[tuple[str, str, str]] = []
    updated = 0
    for client_id, role, content in items:
        row = known.get(client_id)
        if row is None:
            fresh.append((client_id, role, content))
        elif (row.role, row.content) != (role, content):
            await conn.execute(sa.update(assistant_messages).where(assistant_messages.c.id == row.id).values(role=role, content=content))
            updated += 1
    if fresh:
        await append_messages(conn, user_id, chat_id, [(role, content, {}) for _, role, content in fresh], now_ms,
                              client_ids=[client_id for client_id, _, _ in fresh])
    elif updated:
        await conn.execute(sa.update(assistant_chats).where(assistant_chats.c.id == chat_id).values(updated_at=now_ms))
    return len(fresh), updated


async def list_messages(
    conn: AsyncConnection, user_id: str, chat_id: str, *, limit: int, before: int | None = None,
) -> tuple[list[dict[str, Any]], bool]:
    """The newest `limit` messages (older than seq `before` if given), oldest first, and whether
    older ones remain. The caller has checked the chat is the owner's."""
    where = [assistant_messages.c.chat_id == chat_id, assistant_messages.c.user_id == user_id]
    if before is not None:
        where.append(assistant_messages.c.seq < before)
    rows = [dict(r._mapping) for r in await conn.execute(
        sa.select(assistant_messages).where(*where).order_by(assistant_messages.c.seq.desc()).limit(limit + 1)
    )]
    more = len(rows) > limit
    return list(reversed(rows[:limit])), more


async def message_seq(conn: AsyncConnection, user_id: str, chat_id: str, message_id: str) -> int | None:
    """The position of one of the chat's messages (a paging cursor), None if not in this chat."""
    m = assistant_messages.c
    return (await conn.execute(
        sa.select(m.seq).where(sa.or_(m.id == message_id, m.client_id == message_id), m.chat_id == chat_id, m.user_id == user_id)
    )).scalars().first()


# ---- characters -----------------------------------------------------------------------------


async def list_characters(conn: AsyncConnection, user_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(
        sa.select(characters).where(characters.c.user_id == user_id).order_by(characters.c.created_at, characters.c.id)
    )
    return [dict(r._mapping) for r in rows]


async def get_character(conn: AsyncConnection, user_id: str, character_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(sa.select(characters).where(characters.c.id == character_id, characters.c.user_id == user_id))).first()
    return dict(row._mapping) if row else None


async def create_character(conn: AsyncConnection, user_id: str, fields: dict[str, Any], now_ms: int) -> dict[str, Any]:
    count = (await conn.execute(sa.select(sa.func.count()).select_from(characters).where(characters.c.user_id == user_id))).scalar_one()
    if count >= MAX_CHARACTERS:
        raise TooMany
    row = {"id": new_id("char"), "user_id": user_id, "description": None, "avatar": None, "model": None, **fields,
           "created_at": now_ms, "updated_at": now_ms}
    await conn.execute(characters.insert().values(**row))
    return row


async def update_character(conn: AsyncConnection, user_id: str, character_id: str, changes: dict[str, Any], now_ms: int) -> dict[str, Any] | None:
    result = await conn.execute(
        sa.update(characters).where(characters.c.id == character_id, characters.c.user_id == user_id).values(**changes, updated_at=now_ms)
    )
    if not result.rowcount:
        return None
    return await get_character(conn, user_id, character_id)


async def delete_character(conn: AsyncConnection, user_id: str, character_id: str) -> bool:
    """Delete it; the owner's chats that used it go back to the default character."""
    result = await conn.execute(sa.delete(characters).where(characters.c.id == character_id, characters.c.user_id == user_id))
    if not result.rowcount:
        return False
    await conn.execute(
        sa.update(assistant_chats)
        .where(assistant_chats.c.user_id == user_id, assistant_chats.c.character_id == character_id)
        .values(character_id=None)
    )
    return True
