"""The billing ledger: one row per charge or credit, newest first.

AI usage lands here as source "usage" with the tokens and the cost (a negative delta, in
USD at the provider's configured price; 0 for offline models). Reads are always scoped to one
user: the user id is a required argument of every function.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from store.ids import new_id, now_ms
from store.schema import ledger

SOURCES = ("purchase", "usage", "refund", "reward", "subscription")


def money(value: float | Decimal | None) -> Decimal | None:
    """Six decimals, as the column stores; never a negative zero."""
    if value is None:
        return None
    quantized = Decimal(str(value)).quantize(Decimal("0.000001"))
    return quantized if quantized != 0 else Decimal("0.000000")


def entry(
    user_id: str,
    *,
    source: str,
    description: str,
    model: str | None = None,
    input_tokens: int | None = None,
    output_tokens: int | None = None,
    delta: float | Decimal | None = None,
    balance_after: float | Decimal | None = None,
    created_at: int | None = None,
) -> dict[str, Any]:
    """A ledger row, validated: an unknown source is a bug, not data."""
    if source not in SOURCES:
        raise ValueError(f"unknown ledger source {source!r}")
    row = {
        "id": new_id("led"),
        "user_id": user_id,
        "source": source,
        "description": description[:500],
        "model": model[:200] if model else None,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "delta": money(delta),
        "balance_after": money(balance_after),
        "created_at": created_at if created_at is not None else now_ms(),
    }
    return row


async def add_entry(conn: AsyncConnection, user_id: str, **fields: Any) -> dict[str, Any]:
    """Insert one entry (see `entry` for the fields); returns the row written."""
    row = entry(user_id, **fields)
    await conn.execute(ledger.insert().values(**row))
    return row


async def add_entries(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Insert rows made by `entry` in one statement: how usage is written, batched."""
    if rows:
        await conn.execute(ledger.insert(), rows)


async def list_entries(
    conn: AsyncConnection, user_id: str, *, limit: int = 50, offset: int = 0, source: str | None = None
) -> tuple[list[dict[str, Any]], int]:
    """One page of the user's entries, newest first, and how many there are in all."""
    where = [ledger.c.user_id == user_id]
    if source is not None:
        where.append(ledger.c.source == source)
    total = (await conn.execute(sa.select(sa.func.count()).select_from(ledger).where(*where))).scalar_one()
    rows = await conn.execute(
        sa.select(ledger).where(*where).order_by(ledger.c.created_at.desc(), ledger.c.id.desc()).limit(limit).offset(offset)
    )
    return [dict(row._mapping) for row in rows], int(total)


def public_entry(row: dict[str, Any]) -> dict[str, Any]:
    """openloomi's item shape; the optional fields appear only when set."""
    item: dict[str, Any] = {
        "id": row["id"],
        "createdAt": row["created_at"],
        "source": row["source"],
        "description": row["description"],
    }
    if row.get("delta") is not None:
        item["delta"] = float(row["delta"])
    if row.get("balance_after") is not None:
        item["balanceAfter"] = float(row["balance_after"])
    if row.get("model"):
        item["model"] = row["model"]
    if row.get("input_tokens") is not None:
        item["inputTokens"] = row["input_tokens"]
    if row.get("output_tokens") is not None:
        item["outputTokens"] = row["output_tokens"]
    return item
