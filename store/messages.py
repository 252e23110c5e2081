"""Messages: batched exactly-once writes, per-owner `seq`, and the reads the API serves.

Writes are `INSERT … ON CONFLICT (account_id, chat_id, native_id)`, so redelivery, replays and
backfill overlap never duplicate. Each write takes fresh `seq` numbers from the owner's counter
row in the same transaction: the row lock orders commits, so a sync cursor never skips a row
that commits late.
"""

from __future__ import annotations

import dataclasses
from typing import Any

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
    if conn.dialect.name == "postgresql":
        return sa.func.to_tsvector("simple", messages.c.text).op("@@")(sa.func.plainto_tsquery("simple", q))
    fts = sa.text("SELECT rowid FROM messages_fts WHERE messages_fts MATCH :fts_q").bindparams(fts_q=_fts_query(q))
    return sa.literal_column("messages.rowid").in_(fts)


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
) -> list[dict[str, Any]]:
    """Newest first, keyset-paged on (sent_at, id)."""
    query = messages.select().where(messages.c.user_id == user_id)
    for column, value in filters.items():
        query = query.where(messages.c[column] == value)
    if not include_deleted:
        query = query.where(messages.c.deleted_at.is_(None))
    query = time_bounds(query, since, until)
    if q and _fts_query(q):
        query = query.where(text_match(conn, q))
    if before is not None:
        sent_at, row_id = before
        query = query.where(
            sa.or_(messages.c.sent_at < sent_at, sa.and_(messages.c.sent_at == sent_at, messages.c.id < row_id))
        )
    query = query.order_by(messages.c.sent_at.desc(), messages.c.id.desc()).limit(limit)
    return [dict(row) for row in (await conn.execute(query)).mappings()]


def time_bounds(query: sa.Select, since: int | None, until: int | None) -> sa.Select:
    if since is not None:
        query = query.where(messages.c.sent_at >= since)
    if until is not None:
        query = query.where(messages.c.sent_at < until)
    return query


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
