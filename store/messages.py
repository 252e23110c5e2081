"""Messages: batched exactly-once writes, per-owner `seq`, and the reads the API serves.

Writes are `INSERT … ON CONFLICT (account_id, chat_id, native_id)`, so redelivery, replays and
backfill overlap never duplicate. Each write takes fresh `seq` numbers from the owner's counter
row in the same transaction: the row lock orders commits, so a sync cursor never skips a row
that commits late.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import time
from typing import Any, Callable, ClassVar

import numpy as np
import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from store.model import Change, ChangeKind, Message
from store.ids import new_id, now_ms
from store.schema import chats, messages, users
from store.text import without_nul

KEY = ["account_id", "chat_id", "native_id"]


@dataclasses.dataclass(frozen=True)
class Owned:
    """A change with the account it came through and the raw payload it came from."""

    user_id: str
    account_id: str
    platform: str
    change: Change
    raw: dict[str, Any] | None


def _insert(conn: AsyncConnection):  # noqa: ANN202
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(messages)


async def reserve_seq(conn: AsyncConnection, user_id: str, count: int) -> int:
    """Take `count` sequence numbers for `user_id`; returns the first. Locks the owner's row."""
    result = await conn.execute(
        users.update().where(users.c.id == user_id).values(seq=users.c.seq + count).returning(users.c.seq)
    )
    last = result.scalar_one()
    return int(last) - count + 1


def _clip(value: str | None, size: int) -> str | None:
    return value[:size] if value else value


def _row(item: Owned, seq: int, now: int) -> dict[str, Any]:
    change = item.change
    msg = change.message or Message(chat_id=change.chat_id, native_id=change.native_id, sent_at=change.at or now)
    return {
        "id": new_id("msg"),
        "user_id": item.user_id,
        "account_id": item.account_id,
        "platform": item.platform,
        "chat_id": change.chat_id,
        "chat_name": _clip(msg.chat_name, 500),
        "chat_type": msg.chat_type.value if hasattr(msg.chat_type, "value") else str(msg.chat_type),
        "native_id": change.native_id,
        "thread_id": msg.thread_id,
        "reply_to_id": msg.reply_to_id,
        "sender_id": _clip(msg.sender_id, 200),
        "sender_name": _clip(msg.sender_name, 500),
        "is_self": msg.is_self,
        "direction": "outbound" if msg.is_self else "inbound",
        "text": msg.text if change.kind is not ChangeKind.DELETE else "",
        "original_text": None,
        "content_type": msg.content_type,
        "attachments": [dataclasses.asdict(a) for a in msg.attachments],
        "mentions": list(msg.mentions),
        "reactions": [],
        "sent_at": msg.sent_at,
        "edited_at": change.at if change.kind is ChangeKind.EDIT else msg.edited_at,
        "deleted_at": change.at if change.kind is ChangeKind.DELETE else None,
        "status": "sent" if msg.is_self else None,
        "error": None,
        "idempotency_key": None,
        "seq": seq,
        "raw": item.raw,
        "created_at": now,
        "updated_at": now,
    }


async def apply_changes(conn: AsyncConnection, items: list[Owned]) -> int:
    """Write a batch in the caller's transaction; returns rows inserted or changed."""
    if not items:
        return 0
    items = [without_nul(item) for item in items]  # the store's one text rule: store/text.py
    now = now_ms()
    by_user: dict[str, list[Owned]] = {}
    for item in items:
        by_user.setdefault(item.user_id, []).append(item)
    touched = 0
    for user_id in sorted(by_user):  # a fixed lock order: no deadlock between ingest workers
        batch = by_user[user_id]
        first = await reserve_seq(conn, user_id, len(batch))
        rows = [_row(item, first + i, now) for i, item in enumerate(batch)]
        upserts = [r for r, i in zip(rows, batch) if i.change.kind is ChangeKind.UPSERT]
        edits = [r for r, i in zip(rows, batch) if i.change.kind is ChangeKind.EDIT]
        deletes = [r for r, i in zip(rows, batch) if i.change.kind is ChangeKind.DELETE]
        await _name_from_chats(conn, upserts)
        touched += await _insert_new(conn, upserts)
        for row in edits:
            touched += await _apply_edit(conn, row)
        for row in deletes:
            touched += await _apply_delete(conn, row)
        for row, item in zip(rows, batch):
            if item.change.kind is ChangeKind.REACTION:
                touched += await _apply_reaction(conn, row, item.change)
            elif item.change.kind is ChangeKind.STATUS:
                touched += await _apply_status(conn, row, item.change)
        await _record_chats(conn, upserts, [i for i in batch if i.change.kind is ChangeKind.CHAT], now)
    return touched


async def _insert_new(conn: AsyncConnection, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    unique: dict[tuple[str, str, str], dict[str, Any]] = {}
    for row in rows:  # one statement cannot touch the same key twice
        unique.setdefault((row["account_id"], row["chat_id"], row["native_id"]), row)
    if conn.dialect.name == "postgresql":
        return await _copy_new_postgres(conn, list(unique.values()))
    # RETURNING makes SQLAlchemy batch the rows into multi-row VALUES ("insertmanyvalues")
    # and tells us how many were new
    stmt = _insert(conn).on_conflict_do_nothing(index_elements=KEY).returning(messages.c.id)
    result = await conn.execute(stmt, list(unique.values()))
    return len(result.all())


_COLUMNS = [column.name for column in messages.columns]
_JSON_COLUMNS = {column.name for column in messages.columns if isinstance(column.type, sa.JSON)}
_STAGING = "CREATE TEMP TABLE IF NOT EXISTS messages_incoming (LIKE messages INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
_MERGE = (
    f"INSERT INTO messages ({', '.join(_COLUMNS)}) SELECT {', '.join(_COLUMNS)} FROM messages_incoming "
    "ON CONFLICT (account_id, chat_id, native_id) DO NOTHING RETURNING 1"
)


async def _copy_new_postgres(conn: AsyncConnection, rows: list[dict[str, Any]]) -> int:
    """COPY the batch into a per-session staging table, then one INSERT … SELECT … ON CONFLICT.

    Binary COPY skips SQLAlchemy's per-parameter processing, which was the largest CPU cost of
    ingest on PostgreSQL (bench/ingest); it runs inside the caller's transaction.
    """
    from store.db import _json_dumps

    driver = (await conn.get_raw_connection()).driver_connection
    records = [
        tuple(_json_dumps(row[c]) if c in _JSON_COLUMNS and row[c] is not None else row[c] for c in _COLUMNS)
        for row in rows
    ]
    await driver.execute(_STAGING)
    await driver.copy_records_to_table("messages_incoming", records=records, columns=_COLUMNS)
    inserted = await driver.fetch(_MERGE)
    await driver.execute("TRUNCATE messages_incoming")  # a later batch in this transaction starts empty
    return len(inserted)


async def _apply_edit(conn: AsyncConnection, row: dict[str, Any]) -> int:
    """Newer text wins; the first text is kept in `original_text`; a missing row is created."""
    stmt = _insert(conn).values(**row)
    excluded = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=KEY,
        set_={
            "original_text": sa.func.coalesce(messages.c.original_text, messages.c.text),
            "text": excluded.text,
            "edited_at": excluded.edited_at,
            "attachments": excluded.attachments,
            "mentions": excluded.mentions,
            "seq": excluded.seq,
            "updated_at": excluded.updated_at,
        },
        where=sa.and_(
            messages.c.deleted_at.is_(None),
            sa.or_(messages.c.edited_at.is_(None), messages.c.edited_at <= excluded.edited_at),  # same-second edits: arrival order wins
            messages.c.text != excluded.text,
        ),
    )
    return max((await conn.execute(stmt)).rowcount or 0, 0)


async def _apply_delete(conn: AsyncConnection, row: dict[str, Any]) -> int:
    """A tombstone: set once; if the message was never seen, the tombstone row stops it later."""
    stmt = _insert(conn).values(**row)
    stmt = stmt.on_conflict_do_update(
        index_elements=KEY,
        set_={"deleted_at": stmt.excluded.deleted_at, "seq": stmt.excluded.seq, "updated_at": stmt.excluded.updated_at},
        where=messages.c.deleted_at.is_(None),
    )
    return max((await conn.execute(stmt)).rowcount or 0, 0)


async def _apply_reaction(conn: AsyncConnection, row: dict[str, Any], change: Change) -> int:
    """Add or take back one (emoji, sender) on a stored message (an empty emoji taken back: all of
    the sender's); a reaction to a message we never stored is dropped (nothing to show it on)."""
    reaction = change.reaction
    if reaction is None:
        return 0
    where = sa.and_(*(messages.c[k] == row[k] for k in KEY))
    current = (
        await conn.execute(sa.select(messages.c.reactions).where(where).with_for_update())
    ).scalar_one_or_none()
    if current is None:
        return 0
    entry = {"emoji": reaction.emoji, "senderId": reaction.sender_id}
    anything = not reaction.added and not reaction.emoji  # "took back whatever they had" (WhatsApp)
    kept = [r for r in current
            if not (r.get("senderId") == entry["senderId"] and (anything or r.get("emoji") == entry["emoji"]))]
    updated = kept + [{**entry, "at": change.at}] if reaction.added else kept
    if updated == current or (reaction.added and len(kept) < len(current)):
        return 0  # the same reaction again, or taking back one we never saw
    await conn.execute(messages.update().where(where).values(reactions=updated, seq=row["seq"], updated_at=row["updated_at"]))
    return 1


# how far an outbound message got; a status only moves forward (Meta may deliver them out of order)
STATUS_RANK = {"pending": 0, "sent": 1, "failed": 1.5, "delivered": 2, "read": 3}


async def _apply_status(conn: AsyncConnection, row: dict[str, Any], change: Change) -> int:
    """The platform's delivery report on one of OUR sent messages (WhatsApp's sent, delivered,
    read, failed): found by chat and native id (the unique key's index), never downgraded; a
    report on a message we do not have (sent from another device, or not yet marked sent) is
    dropped."""
    rank = STATUS_RANK.get(change.status or "")
    if not rank:
        return 0
    earlier = [name for name, r in STATUS_RANK.items() if r < rank]
    result = await conn.execute(
        messages.update()
        .where(
            messages.c.account_id == row["account_id"],
            messages.c.chat_id == change.chat_id,
            messages.c.native_id == change.native_id,
            messages.c.direction == "outbound",
            messages.c.status.in_(earlier),
        )
        .values(status=change.status, seq=row["seq"], updated_at=row["updated_at"])
    )
    return max(result.rowcount or 0, 0)


async def _name_from_chats(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Messages whose payload names no chat (Discord's) take the name the platform last gave
    the chat (a CHAT change, or an earlier message), so a list by chat reads well."""
    unnamed = {(r["account_id"], r["chat_id"]) for r in rows if not r["chat_name"]}
    if not unnamed:
        return
    accounts_ = sorted({a for a, _ in unnamed})
    chat_ids = sorted({c for _, c in unnamed})
    found = await conn.execute(
        sa.select(chats.c.account_id, chats.c.chat_id, chats.c.name).where(
            chats.c.account_id.in_(accounts_), chats.c.chat_id.in_(chat_ids), chats.c.name.is_not(None)
        )
    )
    names = {(row.account_id, row.chat_id): row.name for row in found}
    for row in rows:
        if not row["chat_name"]:
            row["chat_name"] = names.get((row["account_id"], row["chat_id"]))


def _chat_upsert(conn: AsyncConnection):  # noqa: ANN202
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(chats)


async def _record_chats(conn: AsyncConnection, upserts: list[dict[str, Any]], infos: list[Owned], now: int) -> None:
    """A chat is recorded on first sight with its first message's name and type; a CHAT change
    (a rename, new members) overwrites what it names, here and on the chat's stored messages."""
    first_seen: dict[tuple[str, str], dict[str, Any]] = {}
    for row in upserts:
        first_seen.setdefault((row["account_id"], row["chat_id"]), {
            "account_id": row["account_id"], "chat_id": row["chat_id"], "user_id": row["user_id"],
            "name": row["chat_name"], "type": row["chat_type"], "members": None, "updated_at": now,
        })
    if first_seen:
        stmt = _chat_upsert(conn).on_conflict_do_nothing(index_elements=["account_id", "chat_id"])
        await conn.execute(stmt, list(first_seen.values()))
    for item in infos:
        info = item.change.chat
        if info is None:
            continue
        values = {"name": _clip(info.name, 500), "type": info.type.value if info.type else None, "members": info.members}
        values = {k: v for k, v in values.items() if v is not None}
        stmt = _chat_upsert(conn).values(
            account_id=item.account_id, chat_id=item.change.chat_id, user_id=item.user_id, updated_at=now, **values
        )
        await conn.execute(stmt.on_conflict_do_update(index_elements=["account_id", "chat_id"], set_={**values, "updated_at": now}))
        if "name" in values:
            await conn.execute(
                messages.update()
                .where(messages.c.account_id == item.account_id, messages.c.chat_id == item.change.chat_id)
                .values(chat_name=values["name"])
            )


# ---- outbound -------------------------------------------------------------------------------


async def latest_inbound_raw(conn: AsyncConnection, account_id: str, chat_id: str) -> dict[str, Any] | None:
    """The raw payload of the newest message the other side sent in a chat: what platforms that
    answer only inside a conversation take their reply token from (connectors.base.Outbound)."""
    query = (
        sa.select(messages.c.raw)
        .where(messages.c.account_id == account_id, messages.c.chat_id == chat_id, messages.c.direction == "inbound")
        .order_by(messages.c.sent_at.desc())
        .limit(1)
    )
    raw = (await conn.execute(query)).scalar_one_or_none()
    return raw if isinstance(raw, dict) else None


async def find_by_idempotency(conn: AsyncConnection, user_id: str, key: str) -> dict[str, Any] | None:
    row = (
        await conn.execute(messages.select().where(messages.c.user_id == user_id, messages.c.idempotency_key == key))
    ).mappings().first()
    return dict(row) if row else None


async def insert_outbound(
    conn: AsyncConnection,
    *,
    user_id: str,
    account_id: str,
    platform: str,
    chat_id: str,
    text: str,
    reply_to_id: str | None,
    thread_id: str | None,
    idempotency_key: str | None,
) -> dict[str, Any]:
    now = now_ms()
    row_id = new_id("msg")
    row = {
        "id": row_id,
        "user_id": user_id,
        "account_id": account_id,
        "platform": platform,
        "chat_id": chat_id,
        "chat_type": "channel",
        "native_id": f"pending:{row_id}",
        "thread_id": thread_id,
        "reply_to_id": reply_to_id,
        "is_self": True,
        "direction": "outbound",
        "text": without_nul(text),
        "content_type": "text",
        "attachments": [],
        "mentions": [],
        "reactions": [],
        "sent_at": now,
        "status": "pending",
        "idempotency_key": idempotency_key,
        "seq": await reserve_seq(conn, user_id, 1),
        "created_at": now,
        "updated_at": now,
    }
    await conn.execute(messages.insert().values(**row))
    return row


async def mark_sent(
    conn: AsyncConnection, row: dict[str, Any], native_id: str, sent_at: int, raw: dict[str, Any], thread_id: str | None
) -> None:
    """Record the platform id. If the echo was ingested first, fold it into our row.

    The echo can commit between our delete and our update (ingest runs concurrently), so the
    pair runs in a savepoint and is retried on the unique-key conflict that race causes.
    """
    seq = await reserve_seq(conn, row["user_id"], 1)
    for attempt in range(5):
        try:
            async with conn.begin_nested():
                await conn.execute(
                    messages.delete().where(
                        messages.c.account_id == row["account_id"],
                        messages.c.chat_id == row["chat_id"],
                        messages.c.native_id == native_id,
                        messages.c.id != row["id"],
                    )
                )
                await conn.execute(
                    messages.update()
                    .where(messages.c.id == row["id"])
                    .values(
                        native_id=native_id,
                        status="sent",
                        sent_at=sent_at,
                        raw=without_nul(raw),
                        thread_id=thread_id or row.get("thread_id"),
                        error=None,
                        seq=seq,
                        updated_at=now_ms(),
                    )
                )
            return
        except IntegrityError:
            if attempt == 4:
                raise


async def mark_failed(conn: AsyncConnection, row: dict[str, Any], error: str, *, final: bool) -> None:
    await conn.execute(
        messages.update()
        .where(messages.c.id == row["id"])
        .values(
            status="failed" if final else "pending",
            error=without_nul(error)[:500],
            seq=await reserve_seq(conn, row["user_id"], 1),
            updated_at=now_ms(),
        )
    )


# ---- reads ----------------------------------------------------------------------------------


async def get_message(conn: AsyncConnection, user_id: str, message_id: str) -> dict[str, Any] | None:
    row = (
        await conn.execute(messages.select().where(messages.c.user_id == user_id, messages.c.id == message_id))
    ).mappings().first()
    return dict(row) if row else None


def _fts_query(text: str) -> str:
    """User text -> an FTS5 query of quoted terms (no operator injection)."""
    terms = [t.replace('"', '""') for t in text.split() if t.strip()]
    return " ".join(f'"{t}"' for t in terms)


def text_match(conn: AsyncConnection, q: str) -> sa.ColumnElement[bool]:
    """`q` as a condition on messages: the GIN expression index's exact expression on
    PostgreSQL (a literal 'simple', so a generic plan still matches the index), FTS5 on SQLite."""
    if conn.dialect.name == "postgresql":
        return _tsvector().op("@@")(sa.func.plainto_tsquery(_SIMPLE, q))
    fts = sa.text("SELECT rowid FROM messages_fts WHERE messages_fts MATCH :fts_q").bindparams(fts_q=_fts_query(q))
    return _ROWID.in_(fts)


_SIMPLE = sa.literal_column("'simple'")
_ROWID = sa.literal_column("messages.rowid", sa.Integer)
_JSON_NAMES = frozenset(column.name for column in messages.columns if isinstance(column.type, sa.JSON))


def _selected(columns: list[sa.Column[Any]]) -> list[sa.ColumnElement[Any]]:
    """JSON columns read as text: decoded with orjson by `Page.dicts` (the engine's stdlib
    decoder was the largest single cost of turning a page into dicts), or not at all."""
    return [sa.cast(c, sa.Text).label(c.name) if c.name in _JSON_NAMES else c for c in columns]


ALL = _selected(list(messages.columns))
LISTED = _selected([column for column in messages.columns if column.name != "raw"])  # a listing: ~half the bytes
ALL_KEYS = tuple(column.name for column in messages.columns)
LISTED_KEYS = tuple(key for key in ALL_KEYS if key != "raw")


@dataclasses.dataclass
class Page:
    """Rows as the driver returned them, in order: JSON columns as JSON text, booleans as
    booleans or SQLite's 0/1. `dicts()` is what callers that want values use; the listing
    route formats rows straight from here (a dict per row cost as much as the read)."""

    keys: tuple[str, ...]
    rows: list[Any]

    def dicts(self) -> list[dict[str, Any]]:
        return _dicts(self.keys, self.rows)


def _dicts(keys: tuple[str, ...], rows: Any) -> list[dict[str, Any]]:
    """Rows as dicts: JSON text decoded with orjson, SQLite's 0/1 as booleans."""
    decode = [i for i, key in enumerate(keys) if key in _JSON_NAMES]
    flags = [i for i, key in enumerate(keys) if key in _BOOLEANS]
    out = []
    for row in rows:
        values = list(row)
        for i in decode:
            if values[i] is not None:
                values[i] = orjson.loads(values[i])
        for i in flags:
            if values[i] is not None:
                values[i] = bool(values[i])
        out.append(dict(zip(keys, values)))
    return out


_BOOLEANS = frozenset(column.name for column in messages.columns if isinstance(column.type, sa.Boolean))


# full-text search (`_search`). PostgreSQL: how many candidates the first windows hold.
# SQLite: reading a hit straight from FTS5 costs ~DIRECT_COST_RATIO times as much as passing
# over one candidate in a window (a row lookup against an index step), which sets how rare a
# term must be to be read from its hits; one FTS5 query costs as much as ~FTS_QUERY_ROWS hits
# (~60 µs to open one, ~0.4 µs a hit), which sets where a window's rowid range is cut
PG_WINDOWS = (1000, 8000, 64000)
PG_WALK_COST_RATIO = 40
DIRECT_COST_RATIO = 20
FTS_QUERY_ROWS = 150
DENSE_SLACK = 1000  # hits a window's single rowid range may hold beyond twice its candidates
MAX_WINDOW = 65536


def _tsvector() -> sa.ColumnElement[Any]:
    return sa.func.to_tsvector(_SIMPLE, messages.c.text)


def _column(name: str, indexed: bool) -> sa.ColumnElement[Any]:
    """A messages column; `indexed=False` writes it `+messages.name`, SQLite's way of keeping
    the planner off that column's indexes (a no-op on the value)."""
    column = messages.c[name]
    return column if indexed else sa.literal_column(f"+messages.{name}", column.type)


# the filters by how few rows a value usually selects: on SQLite, which keeps no statistics
# (nothing runs ANALYZE), only the first one present leads the index choice, so a chat inside
# a platform reads the chat's index, not every row of the platform
SELECTIVE = ("thread_id", "chat_id", "sender_id", "account_id", "platform")


def _upper(before: tuple[Any, Any] | None, until: Any) -> str | None:
    """Which upper bound to write: only the tighter of the cursor and `until`, since SQLite
    seeks the index on one of them and may pick the looser one."""
    if before is not None and (until is None or before[0] < until):
        return "before"
    return "until" if until is not None else None


def _where(
    user_id: Any,
    filters: dict[str, Any],
    since: Any,
    until: Any,
    before: tuple[Any, Any] | None,
    *,
    sqlite: bool,
    indexed: bool = True,
) -> list[sa.ColumnElement[bool]]:
    """The conditions for these values (or bind parameters). The cursor is a row value,
    `(sent_at, id) < (?, ?)`, which both databases seek the index to (the OR form walked
    every newer row: 110 ms 400k rows deep on SQLite)."""
    c = functools.partial(_column, indexed=indexed)
    lead = next((name for name in SELECTIVE if name in filters), None)
    where = [c("user_id") == user_id]
    where += [_column(name, indexed and (name == lead or not sqlite)) == value for name, value in filters.items()]
    if since is not None:
        where.append(c("sent_at") >= since)
    if before is not None:
        at, row_id = before
        where.append(sa.tuple_(c("sent_at"), c("id")) < sa.tuple_(_value(at), _value(row_id)))
    if until is not None:
        where.append(c("sent_at") < until)
    return where


def _value(value: Any) -> sa.ColumnElement[Any]:
    return value if isinstance(value, sa.BindParameter) else sa.literal(value)


def _newest_first(query: sa.Select, indexed: bool = True) -> sa.Select:
    return query.order_by(_column("sent_at", indexed).desc(), _column("id", indexed).desc())


async def list_page(
    conn: AsyncConnection,
    user_id: str,
    *,
    filters: dict[str, Any],
    q: str | None,
    before: tuple[int, str] | None,
    limit: int,
    include_deleted: bool,
    since: int | None = None,
    until: int | None = None,
    with_raw: bool = True,
) -> Page:
    """Newest first, keyset-paged on (sent_at, id).

    Each equality filter has an index (user_id, <filter>, sent_at, id) (migration 0010), so a
    page is an index range read whatever the filter. Full-text `q`: `_search`. Every statement
    is compiled once per shape and run on the driver (`_Plan`).
    """
    scope = _Scope(user_id, filters, since, until, before, with_raw, include_deleted)
    keys = ALL_KEYS if with_raw else LISTED_KEYS
    if q and _fts_query(q):
        if conn.dialect.name == "sqlite":
            return Page(keys, await _search_sqlite(conn, scope, q, limit))
        return Page(keys, await _search_postgres(conn, scope, q, limit))
    sql, args = listing_query(
        conn.dialect, user_id, filters=filters, before=before, limit=limit, include_deleted=include_deleted,
        since=since, until=until, with_raw=with_raw,
    )
    return Page(keys, await _fetch(conn, sql, args))


def listing_query(
    dialect: sa.Dialect,
    user_id: str,
    *,
    filters: dict[str, Any],
    before: tuple[int, str] | None,
    limit: int,
    include_deleted: bool,
    since: int | None = None,
    until: int | None = None,
    with_raw: bool = False,
) -> tuple[str, list[Any]]:
    """The SQL and arguments of a listing without `q`, as `list_page` runs it."""
    scope = _Scope(user_id, filters, since, until, before, with_raw, include_deleted)
    plan = _Plan.of(dialect, ("list", *scope.shape), lambda: scope.select(dialect).limit(_bind("limit", sa.Integer)))
    return plan.sql, plan.args({**scope.values, "limit": limit})


# ---- plans: statements compiled once per shape, run on the driver ------------------------------
#
# A listing is one SELECT, but through SQLAlchemy's asyncio adapters it cost five hops to
# aiosqlite's thread (cursor, execute, fetch, close, and the pool's reset) or a BEGIN and a
# ROLLBACK around it on asyncpg, plus building the statement (~0.3-0.9 ms for these selects),
# its cache key and row processing: more than the read itself. So each statement is built
# with named bind parameters and compiled once per shape (which filters, which bounds,
# deleted or not, ...), and run with aiosqlite's `execute_fetchall` (one hop) or asyncpg's
# `fetch` (one round trip, no transaction).


def _bind(name: str, type_: Any) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=type_)


@dataclasses.dataclass(frozen=True)
class _Plan:
    sql: str
    order: tuple[str, ...]  # parameter names in placeholder order
    fixed: dict[str, Any]  # values compiled in, e.g. SQLite's OFFSET 0

    _cache: ClassVar[dict[tuple[Any, ...], "_Plan"]] = {}

    @classmethod
    def of(cls, dialect: sa.Dialect, shape: tuple[Any, ...], build: Callable[[], sa.Select[Any]]) -> "_Plan":
        plan = cls._cache.get(key := (dialect.name, *shape))
        if plan is None:
            compiled = build().compile(dialect=dialect)
            fixed = {k: v for k, v in compiled.params.items() if v is not None}
            plan = cls._cache[key] = cls(compiled.string, tuple(compiled.positiontup or ()), fixed)
        return plan

    def args(self, values: dict[str, Any]) -> list[Any]:
        return [values[name] if name in values else self.fixed[name] for name in self.order]

    async def run(self, conn: AsyncConnection, values: dict[str, Any]) -> list[Any]:
        return await _fetch(conn, self.sql, self.args(values))


async def _fetch(conn: AsyncConnection, sql: str, args: list[Any]) -> list[Any]:
    driver = (await conn.get_raw_connection()).driver_connection
    if conn.dialect.name == "sqlite":
        return list(await driver.execute_fetchall(sql, args))
    return list(await driver.fetch(sql, *args))


@dataclasses.dataclass
class _Scope:
    """Which of a person's messages a read may return: filters, time bounds, the cursor."""

    user_id: str
    filters: dict[str, Any]
    since: int | None
    until: int | None
    before: tuple[int, str] | None
    with_raw: bool
    include_deleted: bool

    @property
    def upper(self) -> str | None:
        return _upper(self.before, self.until)

    @property
    def shape(self) -> tuple[Any, ...]:
        return (self.with_raw, tuple(sorted(self.filters)), self.since is not None, self.upper, self.include_deleted)

    @property
    def values(self) -> dict[str, Any]:
        values = {"user_id": self.user_id, "since": self.since, "until": self.until, **{f"f_{k}": v for k, v in self.filters.items()}}
        if self.before is not None:
            values["before_at"], values["before_id"] = self.before
        return values

    def where(self, sqlite: bool, indexed: bool = True) -> list[sa.ColumnElement[bool]]:
        """The conditions, as bind parameters named like `values`."""
        upper = self.upper
        return _where(
            _bind("user_id", messages.c.user_id.type),
            {name: _bind(f"f_{name}", messages.c[name].type) for name in sorted(self.filters)},
            _bind("since", sa.BigInteger) if self.since is not None else None,
            _bind("until", sa.BigInteger) if upper == "until" else None,
            (_bind("before_at", sa.BigInteger), _bind("before_id", messages.c.id.type)) if upper == "before" else None,
            sqlite=sqlite, indexed=indexed,
        )

    def live(self) -> list[sa.ColumnElement[bool]]:
        return [] if self.include_deleted else [messages.c.deleted_at.is_(None)]

    def select(self, dialect: sa.Dialect, *extra: sa.ColumnElement[bool], indexed: bool = True) -> sa.Select[Any]:
        """The rows in scope (and `extra`), newest first."""
        where = self.where(dialect.name == "sqlite", indexed)
        query = sa.select(*(ALL if self.with_raw else LISTED)).where(*where, *self.live(), *extra)
        return _newest_first(query, indexed)

    def below(self, sent_at: int) -> "_Scope":
        """The same scope, only rows with `sent_at` at or below this (the next window)."""
        return dataclasses.replace(self, before=(sent_at + 1, ""))  # (sent_at, id) < (t + 1, ""): sent_at <= t


async def list_messages(
    conn: AsyncConnection,
    user_id: str,
    *,
    filters: dict[str, Any],
    q: str | None,
    before: tuple[int, str] | None,
    limit: int,
    include_deleted: bool,
    since: int | None = None,
    until: int | None = None,
    with_raw: bool = True,
) -> list[dict[str, Any]]:
    """`list_page` as dicts."""
    page = await list_page(
        conn, user_id, filters=filters, q=q, before=before, limit=limit, include_deleted=include_deleted,
        since=since, until=until, with_raw=with_raw,
    )
    return page.dicts()


async def _search_postgres(conn: AsyncConnection, scope: _Scope, q: str, limit: int) -> list[Any]:
    """The newest `limit` matches of `q` in scope, in windows in time.

    Neither database reads a text index in time order: a common word must not be answered by
    collecting all of its hits (300k rows for "of" at 1M messages) and sorting them, nor a
    rarer one by computing `to_tsvector` row by row through the history (the planner's choice
    for a word in ~1% of messages: 70 ms at 1M rows). A window is the candidates down to the
    K-th newest one's `sent_at`; with that bound the planner ANDs the GIN bitmap with the time
    range.

    How common the term is comes from PostgreSQL's own statistics of the GIN expression index
    (`_term_share`). A rare one (its hits cost less to fetch than a window's walk, the rule
    `_search_sqlite` spells out) is the plain query, which the planner answers from the GIN
    index. A very common one is the plain query too, which the planner answers by walking the
    newest rows: a page comes after limit/share rows (~15 µs each, `to_tsvector` included),
    while any bitmap plan first reads all share*rows GIN entries (~0.35 µs each; 36 ms for a
    word in 10% of 1M messages); that sets PG_WALK_COST_RATIO. Between the two, a window
    expected to hold the page, growing 4x. Without statistics yet, windows of PG_WINDOWS.
    """
    share, rows = await _term_share(conn, q)
    if share is not None and share * rows <= math.sqrt(limit * rows / DIRECT_COST_RATIO):
        sizes: tuple[int | None, ...] = (None,)  # rare: from the GIN index
    elif share is not None and share >= math.sqrt(limit * PG_WALK_COST_RATIO / max(rows, 1)):
        sizes = (None,)  # so common that walking the newest rows finds a page sooner than the GIN bitmap is built
    elif share is not None:
        first = max(256, int(1.5 * limit / share))
        sizes = (*(k for k in (first, first * 4, first * 16) if k <= 4 * MAX_WINDOW), None)
    else:
        sizes = (*PG_WINDOWS, None)
    dialect = conn.dialect
    match = _tsvector().op("@@")(sa.func.plainto_tsquery(_SIMPLE, _bind("q", sa.Text)))
    found: list[Any] = []
    for size in sizes:
        oldest = None
        if size is not None:
            kth = _Plan.of(dialect, ("kth", *scope.shape), lambda: _newest_first(
                sa.select(messages.c.sent_at).where(*scope.where(False))).offset(_bind("skip", sa.Integer)).limit(1))
            hit = await kth.run(conn, {**scope.values, "skip": size - 1})
            oldest = hit[0][0] if hit else None
        bound = [] if oldest is None else [messages.c.sent_at >= _bind("bound", sa.BigInteger)]
        main = _Plan.of(dialect, ("pg", *scope.shape, oldest is None), lambda: scope.select(dialect, *bound, match).limit(_bind("limit", sa.Integer)))
        found += await main.run(conn, {**scope.values, "bound": oldest, "q": q, "limit": limit - len(found)})
        if len(found) >= limit or oldest is None:
            return found
        scope = scope.below(oldest - 1)  # sent_at < oldest
    return found


# PostgreSQL: per database, (read at, lexeme -> share of messages, least share listed, rows)
_TERM_STATS: dict[str, tuple[float, dict[str, float], float, float]] = {}
TERM_STATS_SECONDS = 300.0


async def _term_share(conn: AsyncConnection, q: str) -> tuple[float | None, float]:
    """(share of messages holding every term of `q`, rows) as ANALYZE saw them: the most common
    lexemes of the GIN expression index with their shares (PostgreSQL keeps ~1,000); a term
    not among them is rarer than the least listed one. (None, rows) without statistics."""
    key = str(conn.engine.url)
    stats = _TERM_STATS.get(key)
    if stats is None or time.monotonic() - stats[0] > TERM_STATS_SECONDS:
        row = (await conn.execute(sa.text(
            "SELECT s.most_common_elems::text::text[], s.most_common_elem_freqs, c.reltuples "
            "FROM pg_class c LEFT JOIN pg_stats s ON s.schemaname = current_schema() "
            "AND s.tablename = 'ix_messages_fts' AND s.attname = 'to_tsvector' "
            "WHERE c.relname = 'messages' AND c.relnamespace = current_schema()::regnamespace"
        ))).first()
        elems, freqs, rows = (row or (None, None, 0))
        shares = dict(zip(elems or [], freqs or []))
        stats = _TERM_STATS[key] = (time.monotonic(), shares, min(shares.values(), default=0.0), float(max(rows or 0, 0)))
    _, shares, least, rows = stats
    terms = re.findall(r"\w+", q.lower())
    if not shares or not terms:
        return None, rows
    return min(shares.get(t, least / 2) for t in terms), rows


async def _search_sqlite(conn: AsyncConnection, scope: _Scope, q: str, limit: int) -> list[Any]:
    """The newest `limit` matches of `q` in scope (see `_search_postgres` for why windows).

    FTS5 hands out hits in rowid order only, materializes all of them for an IN, and costs
    ~60 µs per query opened (so no per-row checks). A rare term is read from its hits and
    sorted; otherwise the candidates are taken in windows, newest first: the next K (a
    covering index read). When their rowids are close together (written in time order, as
    live messages are) the term's hits in that one rowid range are joined in SQL; otherwise
    their rowids come back (one JSON array) and are cut into ranges where a gap is wider than
    FTS_QUERY_ROWS hits would fill (a history import, a sparse chat), one FTS5 range query per
    range, and the rows of the hits read by rowid. K starts at what should fill the page at
    the term's density and grows 4x.

    "Rare" weighs the two: reading M hits directly costs ~M * DIRECT_COST_RATIO, the windows
    ~limit / density = limit * rows / M, so hits are read directly while
    M <= sqrt(limit * rows / DIRECT_COST_RATIO) (~1,600 at a 51-row page of 1M messages).
    """
    dialect = conn.dialect
    terms = _fts_query(q)
    probe = await _fetch(conn, _PROBE, [terms, min(8192, max(1024, 32 * limit))])
    hits, oldest_hit, rows = probe[0]
    fts = sa.text("SELECT rowid FROM messages_fts WHERE messages_fts MATCH :t")
    if hits <= max(100, math.sqrt(limit * (rows or 0) / DIRECT_COST_RATIO)):
        direct = _Plan.of(dialect, ("direct", *scope.shape), lambda: scope.select(
            dialect, _ROWID.in_(fts.bindparams(_bind("t", sa.Text))), indexed=False).limit(_bind("limit", sa.Integer)))
        return await direct.run(conn, {**scope.values, "t": terms, "limit": limit})
    density = hits / max(1, rows - oldest_hit + 1)  # of the term among the newest rows written
    split = max(1, int(FTS_QUERY_ROWS / density))
    size = min(MAX_WINDOW, max(256, int(1.5 * limit / density)))
    in_range = sa.text(
        "SELECT rowid FROM messages_fts WHERE messages_fts MATCH :t AND rowid BETWEEN :lo AND :hi"
    ).bindparams(_bind("t", sa.Text), _bind("lo", sa.Integer), _bind("hi", sa.Integer))
    found: list[Any] = []
    while len(found) < limit:
        window = _Window(scope)
        summary = _Plan.of(dialect, ("window", *scope.shape), window.summary)
        values = {**scope.values, "size": size}
        lo, hi, oldest, newest, count = (await summary.run(conn, values))[0]
        if not count:
            break
        last = count < size  # every remaining candidate is in this window
        if not last and oldest == newest:  # K candidates in one millisecond: take that whole millisecond
            size *= 4
            continue
        # rows at the window's oldest millisecond may not all be in it: the next window has them
        inside = [] if last else [messages.c.sent_at > _bind("oldest", sa.BigInteger)]
        need = {"oldest": oldest, "t": terms, "limit": limit - len(found)}
        if density * (hi - lo + 1) <= 2 * count + DENSE_SLACK:
            dense = _Plan.of(dialect, ("dense", *scope.shape, last), lambda: scope.select(
                dialect, *inside, _ROWID.in_(in_range)).limit(_bind("limit", sa.Integer)))
            found += await dense.run(conn, {**values, **need, "lo": lo, "hi": hi})
        else:
            listing = _Plan.of(dialect, ("candidates", *scope.shape), window.rowids)
            candidates = np.array(orjson.loads((await listing.run(conn, values))[0][0]), dtype=np.int64)
            matched = await _fts_hits(conn, terms, _ranges(candidates, split))
            hits_here = candidates[np.isin(candidates, matched)]
            if hits_here.size:
                hit_rows = _ROWID.in_(sa.select(sa.literal_column("value")).select_from(sa.func.json_each(_bind("hits", sa.Text))))
                by_rowid = _Plan.of(dialect, ("hits", scope.with_raw, scope.include_deleted, last), lambda: _newest_first(
                    sa.select(*(ALL if scope.with_raw else LISTED)).where(hit_rows, *inside, *scope.live())).limit(_bind("limit", sa.Integer)))
                found += await by_rowid.run(conn, {**need, "hits": orjson.dumps(hits_here.tolist()).decode()})
        if last:
            break
        scope = scope.below(oldest)
        size = min(MAX_WINDOW, size * 4)
    return found


@dataclasses.dataclass
class _Window:
    """SQLite: the next `:size` candidates of a scope, newest first (a covering index read)."""

    scope: _Scope

    def _rows(self) -> Any:
        query = sa.select(_ROWID.label("r"), messages.c.sent_at.label("s")).where(*self.scope.where(True))
        return _newest_first(query).limit(_bind("size", sa.Integer)).subquery()

    def summary(self) -> sa.Select[Any]:
        rows = self._rows()
        return sa.select(sa.func.min(rows.c.r), sa.func.max(rows.c.r), sa.func.min(rows.c.s), sa.func.max(rows.c.s), sa.func.count())

    def rowids(self) -> sa.Select[Any]:
        return sa.select(sa.func.json_group_array(self._rows().c.r))


_PROBE = (
    "SELECT count(*), min(r), (SELECT max(rowid) FROM messages) FROM "
    "(SELECT rowid AS r FROM messages_fts WHERE messages_fts MATCH ? ORDER BY rowid DESC LIMIT ?)"
)


def _ranges(rowids: np.ndarray, split: int, most: int = 64) -> list[tuple[int, int]]:
    """Rowids as ranges, cut at the gaps wider than `split` (at most the `most - 1` widest)."""
    ordered = np.sort(rowids)
    gaps = np.diff(ordered)
    wide = np.flatnonzero(gaps > split)
    if wide.size > most - 1:
        wide = np.sort(wide[np.argsort(gaps[wide])[-(most - 1):]])
    starts = np.concatenate(([0], wide + 1))
    ends = np.concatenate((wide, [ordered.size - 1]))
    return [(int(ordered[a]), int(ordered[b])) for a, b in zip(starts, ends)]


async def _fts_hits(conn: AsyncConnection, terms: str, ranges: list[tuple[int, int]]) -> np.ndarray:
    """Rowids matching `terms` inside any of `ranges`: one FTS5 range query each."""
    one = "SELECT rowid FROM messages_fts WHERE messages_fts MATCH ? AND rowid BETWEEN ? AND ?"
    args: list[Any] = []
    for lo, hi in ranges:
        args += [terms, lo, hi]
    rows = await _fetch(conn, " UNION ALL ".join([one] * len(ranges)), args)
    return np.array([r[0] for r in rows], dtype=np.int64)


async def changes_since(conn: AsyncConnection, user_id: str, seq: int, limit: int) -> list[dict[str, Any]]:
    query = (
        messages.select()
        .where(messages.c.user_id == user_id, messages.c.seq > seq)
        .order_by(messages.c.seq)
        .limit(limit)
    )
    return [dict(row) for row in (await conn.execute(query)).mappings()]


async def stats(conn: AsyncConnection, user_id: str) -> dict[str, Any]:
    live = sa.and_(messages.c.user_id == user_id, messages.c.deleted_at.is_(None))
    by_platform = await conn.execute(
        sa.select(messages.c.platform, sa.func.count()).where(live).group_by(messages.c.platform)
    )
    by_account = await conn.execute(
        sa.select(messages.c.account_id, sa.func.count()).where(live).group_by(messages.c.account_id)
    )
    bounds = (
        await conn.execute(sa.select(sa.func.count(), sa.func.min(messages.c.sent_at), sa.func.max(messages.c.sent_at)).where(live))
    ).one()
    return {
        "totalMessages": int(bounds[0]),
        "messagesByPlatform": {platform: int(n) for platform, n in by_platform},
        "messagesByBot": {account: int(n) for account, n in by_account},
        "oldestMessage": bounds[1],
        "newestMessage": bounds[2],
    }


async def latest_sent_at(conn: AsyncConnection, account_id: str) -> dict[str, int]:
    """chat id -> when its newest received message was sent (ms), for gap recovery."""
    rows = await conn.execute(
        sa.select(messages.c.chat_id, sa.func.max(messages.c.sent_at))
        .where(messages.c.account_id == account_id, messages.c.direction == "inbound")
        .group_by(messages.c.chat_id)
    )
    return {chat: int(sent) for chat, sent in rows}
