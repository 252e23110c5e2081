"""Brief rows (`insight_brief`): the category each insight has in the person's brief.

Two owners write here and must never collide. The automatic side (`sync`) writes rows with
source `auto` and may replace or delete them. The person writes overrides (source `override`),
pins (`pinned`) and explicit unpins (`unpinned_at`); `sync` and a plain `cleanup` leave those
rows alone, only `cleanup(force=True)` forgets them. Every function takes the owner's id and
touches only that owner's rows. Callers check ids with `owned()` first (NotOwned -> 404) and pass
the automatic category of each id (`auto`, from ai/insights/brief.py): the store does not score.
"""

from __future__ import annotations

from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from store.schema import insight_brief, insights

def score_columns(dialect: str) -> list[Any]:
    """What the score needs; the task lists are counted by the database (`n_<list>`), not
    decoded here: for 10,000 insights that takes the brief from 401 to 247 ms on SQLite and
    from 344 to 99 ms on PostgreSQL."""
    length = sa.func.jsonb_array_length if dialect == "postgresql" else sa.func.json_array_length
    counted = [length(col).label(f"n_{col.name}") for col in (insights.c.my_tasks, insights.c.waiting_for_me,
                                                                  insights.c.waiting_for_others)]
    return [insights.c.id, insights.c.title, insights.c.importance, insights.c.urgency, insights.c.is_unreplied,
            insights.c.due_date, insights.c.as_of, insights.c.updated_at, *counted]


class NotOwned(LookupError):
    """Some insight ids are not the owner's (or do not exist): the caller answers 404."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(f"{len(ids)} insight id(s) not found")
        self.ids = ids


def _insert(conn: AsyncConnection) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(insight_brief)


async def owned(conn: AsyncConnection, user_id: str, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The owner's insights among `ids` (score columns), or NotOwned naming the others."""
    wanted = list(dict.fromkeys(ids))
    if not wanted:
        return {}
    rows = await conn.execute(sa.select(*score_columns(conn.dialect.name)).where(insights.c.user_id == user_id, insights.c.id.in_(wanted)))
    found = {row.id: dict(row._mapping) for row in rows}
    missing = [i for i in wanted if i not in found]
    if missing:
        raise NotOwned(missing)
    return found


async def all_scored(conn: AsyncConnection, user_id: str) -> list[dict[str, Any]]:
    rows = await conn.execute(sa.select(*score_columns(conn.dialect.name)).where(insights.c.user_id == user_id))
    return [dict(row._mapping) for row in rows]


async def rows_of(conn: AsyncConnection, user_id: str, ids: Iterable[str] | None = None) -> dict[str, dict[str, Any]]:
    """The owner's brief rows by insight id (all of them when `ids` is None)."""
    stmt = sa.select(insight_brief).where(insight_brief.c.user_id == user_id)
    if ids is not None:
        stmt = stmt.where(insight_brief.c.insight_id.in_(list(ids)))
    return {row.insight_id: dict(row._mapping) for row in await conn.execute(stmt)}


def is_persons(row: dict[str, Any] | None) -> bool:
    """A row the person made: sync and a plain cleanup never change it."""
    return bool(row) and (row["source"] == "override" or row["pinned"] or row["unpinned_at"] is not None)


# The database re-checks this when sync's upsert meets an existing row, so a person's override
# made between sync's read and its write is still never overwritten.
_STILL_AUTO = sa.and_(
    insight_brief.c.source == "auto", insight_brief.c.pinned == sa.false(), insight_brief.c.unpinned_at.is_(None)
)


async def _upsert(conn: AsyncConnection, rows: list[dict[str, Any]], update: list[str], where: Any = None) -> None:
    """Insert `rows` (one statement, executemany) or update `update` columns of the existing ones."""
    if not rows:
        return
    stmt = _insert(conn)
    stmt = stmt.on_conflict_do_update(
        index_elements=[insight_brief.c.user_id, insight_brief.c.insight_id],
        set_={name: stmt.excluded[name] for name in update},
        where=where,
    )
    await conn.execute(stmt, rows)


async def sync(conn: AsyncConnection, user_id: str, ids: list[str], auto: dict[str, str], now_ms: int) -> tuple[int, int]:
    """Record `ids` as the brief's automatic list; returns (synced, cleaned).

    Each id gets an `auto` row with its category from `auto` (the client's or the score's);
    the person's rows are left as they are (an unpinned one is not counted as synced). `auto`
    rows of insights no longer in the list are deleted: that count is `cleaned`.
    """
    existing = await rows_of(conn, user_id, ids)
    synced, writes = 0, []
    for insight_id in dict.fromkeys(ids):
        row = existing.get(insight_id)
        if row and row["unpinned_at"] is not None:
            continue
        synced += 1
        if not is_persons(row):
            writes.append({"user_id": user_id, "insight_id": insight_id, "category": auto[insight_id], "source": "auto",
                           "pinned": False, "unpinned_at": None, "updated_at": now_ms})
    await _upsert(conn, writes, ["category", "updated_at"], where=_STILL_AUTO)
    stale = await conn.execute(
        sa.delete(insight_brief).where(
            insight_brief.c.user_id == user_id,
            insight_brief.c.source == "auto",
            insight_brief.c.pinned == sa.false(),
            insight_brief.c.unpinned_at.is_(None),
            insight_brief.c.insight_id.not_in(ids),
        )
    )
    return synced, int(stale.rowcount or 0)


async def set_overrides(
    conn: AsyncConnection, user_id: str, overrides: dict[str, str | None], auto: dict[str, str], now_ms: int
) -> None:
    """The person's categories; None gives the insight back to the automatic side."""
    existing = await rows_of(conn, user_id, overrides)
    for insight_id, category in overrides.items():
        row = existing.get(insight_id)
        if category is not None:
            values = {"user_id": user_id, "insight_id": insight_id, "category": category, "source": "override",
                      "pinned": False, "unpinned_at": None, "updated_at": now_ms}
            await _upsert(conn, [values], ["category", "source", "updated_at"])
        elif row is None:
            continue
        elif row["pinned"] or row["unpinned_at"] is not None:
            await conn.execute(
                sa.update(insight_brief)
                .where(insight_brief.c.user_id == user_id, insight_brief.c.insight_id == insight_id)
                .values(category=auto[insight_id], source="auto", updated_at=now_ms)
            )
        else:
            await conn.execute(
                sa.delete(insight_brief).where(insight_brief.c.user_id == user_id, insight_brief.c.insight_id == insight_id)
            )


async def set_pins(
    conn: AsyncConnection, user_id: str, ids: list[str], pinned: bool, auto: dict[str, str], now_ms: int,
    category: str | None = None,
) -> None:
    """Pin (keep in the brief) or unpin (take off, and keep sync from bringing it back)."""
    rows = [
        {
            "user_id": user_id,
            "insight_id": insight_id,
            "category": category or auto[insight_id],  # for a new row; an existing one keeps its own
            "source": "override" if category else "auto",
            "pinned": pinned,
            "unpinned_at": None if pinned else now_ms,
            "updated_at": now_ms,
        }
        for insight_id in dict.fromkeys(ids)
    ]
    update = ["pinned", "unpinned_at", "updated_at"] + (["category", "source"] if category else [])
    await _upsert(conn, rows, update)


async def cleanup(conn: AsyncConnection, user_id: str, force: bool) -> int:
    """Forget automatic rows (and with `force`, the person's too); returns how many."""
    stmt = sa.delete(insight_brief).where(insight_brief.c.user_id == user_id)
    if not force:
        stmt = stmt.where(
            insight_brief.c.source == "auto",
            insight_brief.c.pinned == sa.false(),
            insight_brief.c.unpinned_at.is_(None),
        )
    return int((await conn.execute(stmt)).rowcount or 0)


async def pinned_insights(conn: AsyncConnection, user_id: str) -> list[dict[str, Any]]:
    """The owner's pinned insights (full rows) with their `brief_category`, last pinned first."""
    rows = await conn.execute(
        sa.select(insights, insight_brief.c.category.label("brief_category"))
        .join(insight_brief, sa.and_(insight_brief.c.insight_id == insights.c.id, insight_brief.c.user_id == insights.c.user_id))
        .where(insights.c.user_id == user_id, insight_brief.c.pinned == sa.true())
        .order_by(insight_brief.c.updated_at.desc(), insights.c.id)
    )
    return [dict(row._mapping) for row in rows]
