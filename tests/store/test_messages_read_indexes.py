"""The message reads at scale, on both databases: migration 0010's indexes exist and serve the
filters, and every read path of `list_messages` (plain listing, full-text search from the
hits, in windows with one rowid range or with ranges cut from the candidates, PostgreSQL's
walk/window/GIN choices) pages through exactly what the plain query returns."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.base import AccountSpec, Change, ChangeKind, ChatType, Message
from store import messages as store
from store.accounts import upsert_account
from store.messages import Owned, apply_changes, list_messages
from store.schema import messages
from store.users import create_user

READ_INDEXES = {
    "ix_messages_user_chat_sent": "chat_id",
    "ix_messages_user_account_sent": "account_id",
    "ix_messages_user_platform_sent": "platform",
    "ix_messages_user_sender_sent": "sender_id",
    "ix_messages_user_thread_sent": "thread_id",
}
T0 = 1_700_000_000_000
COMMON, MIDDLING, RARE = "alpha", "bravo", "charlie"


async def _person(hub, name: str, platforms: tuple[str, ...] = ("slack", "telegram")) -> tuple[str, list[str]]:
    async with hub.engine.begin() as conn:
        user = await create_user(conn, email=f"{name}-{asyncio.get_running_loop().time()}@read.test", name=name, password_hash=None)
        accounts = [
            (await upsert_account(conn, hub.vault, user["id"], p, AccountSpec(external_id=f"{p}-{user['id']}", name=p, credentials={"t": "x"})))["id"]
            for p in platforms
        ]
    return user["id"], accounts


def _text(rng: random.Random, i: int) -> str:
    words = [rng.choice(["delta", "echo", "foxtrot", "golf", "hotel"]) for _ in range(4)]
    if i % 2 == 0:
        words.append(COMMON)
    if i % 23 == 0:
        words.append(MIDDLING)
    if i % 401 == 0:
        words.append(RARE)
    return " ".join(words)


async def _seed(hub, user_id: str, accounts: list[str], n: int, seed: int = 1) -> list[dict[str, Any]]:
    """`n` messages over a few chats, senders and threads; the newest half written first and the
    older half after it (a history import), so write order is not time order; a few deleted."""
    rng = random.Random(seed)
    made = []
    for i in range(n):
        account = accounts[i % len(accounts)]
        platform = "slack" if account == accounts[0] else "telegram"
        chat = f"C{rng.choice([0, 0, 0, 1, 1, 2, 3, 4, 5, 6])}" if i % 50 else "C-sparse"
        made.append({
            "account": account, "platform": platform, "chat": chat, "native": str(i), "sent_at": T0 + i * 1000 + rng.randrange(3) * 500,
            "text": _text(rng, i), "sender": f"U{rng.randrange(7)}", "thread": f"T{i % 5}" if chat == "C1" and i % 3 == 0 else None,
        })
    order = made[n // 2:] + made[: n // 2]
    for start in range(0, n, 500):
        batch = [
            Owned(user_id, m["account"], m["platform"], Change(ChangeKind.UPSERT, m["chat"], m["native"], Message(
                chat_id=m["chat"], native_id=m["native"], sent_at=m["sent_at"], text=m["text"], sender_id=m["sender"],
                sender_name=m["sender"], thread_id=m["thread"], chat_type=ChatType.GROUP,
            )), None)
            for m in order[start:start + 500]
        ]
        async with hub.engine.begin() as conn:
            await apply_changes(conn, batch)
    deleted = [m for m in made if int(m["native"]) % 97 == 5]
    async with hub.engine.begin() as conn:
        await apply_changes(conn, [
            Owned(user_id, m["account"], m["platform"], Change(ChangeKind.DELETE, m["chat"], m["native"], at=T0 * 2), None) for m in deleted
        ])
    return made


def _plain(conn, user_id: str, filters: dict[str, Any], q: str | None, before: tuple[int, str] | None, limit: int,
           include_deleted: bool, since: int | None, until: int | None) -> sa.Select[Any]:
    """The obvious query: what every read path must agree with."""
    query = sa.select(messages.c.id).where(messages.c.user_id == user_id, *(messages.c[k] == v for k, v in filters.items()))
    if not include_deleted:
        query = query.where(messages.c.deleted_at.is_(None))
    if since is not None:
        query = query.where(messages.c.sent_at >= since)
    if until is not None:
        query = query.where(messages.c.sent_at < until)
    if q:
        query = query.where(store.text_match(conn, q))
    if before is not None:
        query = query.where(sa.or_(messages.c.sent_at < before[0], sa.and_(messages.c.sent_at == before[0], messages.c.id < before[1])))
    return query.order_by(messages.c.sent_at.desc(), messages.c.id.desc()).limit(limit)


async def _pages_agree(hub, user_id: str, *, limit: int = 7, include_deleted: bool = False, filters: dict[str, Any] | None = None,
                       q: str | None = None, since: int | None = None, until: int | None = None) -> int:
    """Page through with the keyset cursor; every page equals the plain query's. Returns rows seen."""
    filters = filters or {}
    before, seen = None, 0
    async with hub.engine.connect() as conn:
        while True:
            got = await list_messages(conn, user_id, filters=filters, q=q, before=before, limit=limit,
                                      include_deleted=include_deleted, since=since, until=until, with_raw=False)
            want = list((await conn.execute(_plain(conn, user_id, filters, q, before, limit, include_deleted, since, until))).scalars())
            assert [m["id"] for m in got] == want, (filters, q, before)
            seen += len(got)
            if len(got) < limit:
                return seen
            before = (got[-1]["sent_at"], got[-1]["id"])


async def _index_names(hub) -> dict[str, str]:
    async with hub.engine.connect() as conn:
        if hub.engine.dialect.name == "sqlite":
            rows = await conn.execute(sa.text("SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages'"))
        else:
            rows = await conn.execute(sa.text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'messages'"))
        return {name: sql or "" for name, sql in rows}


async def test_migration_creates_the_read_indexes(hub) -> None:
    found = await _index_names(hub)
    for name, column in READ_INDEXES.items():
        assert name in found, name
        assert column in found[name] and "sent_at" in found[name]
    assert "thread_id IS NOT NULL" in found["ix_messages_user_thread_sent"]  # partial: most messages are in no thread


async def test_each_filter_reads_its_own_index(hub) -> None:
    user_id, accounts = await _person(hub, "explain")
    await _seed(hub, user_id, accounts, 600)
    async with hub.engine.begin() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if not sqlite:
            await conn.execute(sa.text("ANALYZE messages"))
            # a small table: make the planner show the index scan it chooses at scale
            await conn.execute(sa.text("SET LOCAL enable_seqscan = off"))
            await conn.execute(sa.text("SET LOCAL enable_bitmapscan = off"))
        for name, column in READ_INDEXES.items():
            value = {"thread_id": "T0", "account_id": accounts[1], "platform": "telegram", "chat_id": "C3", "sender_id": "U3"}[column]
            # a second, less selective filter too: the more selective one must still lead (here an
            # account is all of its platform's rows, so neither leads the other)
            extra = {} if column in ("platform", "account_id") else {"platform": "telegram" if column != "thread_id" else "slack"}
            sql, args = store.listing_query(conn.dialect, user_id, filters={column: value, **extra}, before=(T0 * 2, "msg_z"),
                                            limit=51, include_deleted=False)
            driver = (await conn.get_raw_connection()).driver_connection
            if sqlite:
                plan = " ".join(str(r[-1]) for r in await driver.execute_fetchall("EXPLAIN QUERY PLAN " + sql, args))
            else:
                plan = " ".join(r[0] for r in await driver.fetch("EXPLAIN " + sql, *args))
            assert name in plan, (column, plan)
            assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan  # the index gives the order


async def test_listing_pages_agree_with_the_plain_query(hub) -> None:
    user_id, accounts = await _person(hub, "pages")
    other, other_accounts = await _person(hub, "neighbour")
    await _seed(hub, user_id, accounts, 900)
    await _seed(hub, other, other_accounts, 300, seed=2)  # someone else's rows are never listed
    assert await _pages_agree(hub, user_id, limit=50) == 900 - len([i for i in range(900) if i % 97 == 5])
    assert await _pages_agree(hub, user_id, include_deleted=True, limit=101) == 900
    for filters in ({"chat_id": "C1"}, {"chat_id": "C-sparse"}, {"account_id": accounts[1]}, {"platform": "slack"},
                    {"sender_id": "U2"}, {"thread_id": "T3"}, {"chat_id": "C1", "sender_id": "U1", "platform": "slack"}):
        assert await _pages_agree(hub, user_id, filters=filters) > 0, filters
    assert await _pages_agree(hub, user_id, since=T0 + 100_000, until=T0 + 400_000) > 0
    assert await _pages_agree(hub, user_id, until=T0 + 50_000, limit=3) > 0  # until below where the cursor starts


@pytest.mark.parametrize("dense_slack", [1000, 0])
async def test_search_pages_agree_with_the_plain_query(hub, monkeypatch, dense_slack: int) -> None:
    """Every term class on SQLite: COMMON (every other message) and MIDDLING (1 in 23) go
    through windows (with DENSE_SLACK 0, always through rowid ranges cut from the candidates),
    RARE is read from its hits; PostgreSQL: after ANALYZE, the index statistics choose."""
    monkeypatch.setattr(store, "DENSE_SLACK", dense_slack)
    user_id, accounts = await _person(hub, f"search{dense_slack}")
    await _seed(hub, user_id, accounts, 2500, seed=3)
    if hub.engine.dialect.name == "postgresql":
        async with hub.engine.begin() as conn:
            await conn.execute(sa.text("ANALYZE messages"))
        store._TERM_STATS.clear()
    seen = {}
    for q in (COMMON, MIDDLING, RARE, f"{COMMON} {MIDDLING}", "nowhere", "ECHO"):
        seen[q] = await _pages_agree(hub, user_id, q=q, limit=9)
    assert seen[COMMON] > 1000 and 50 < seen[MIDDLING] < 150 and 0 < seen[RARE] < 10 and seen["nowhere"] == 0
    for filters in ({"chat_id": "C-sparse"}, {"chat_id": "C2"}, {"platform": "telegram"}, {"thread_id": "T1"}):
        await _pages_agree(hub, user_id, q=COMMON, filters=filters, limit=5)
        await _pages_agree(hub, user_id, q=MIDDLING, filters=filters, limit=5)
    await _pages_agree(hub, user_id, q=COMMON, since=T0 + 200_000, until=T0 + 900_000, limit=11)
    await _pages_agree(hub, user_id, q=MIDDLING, include_deleted=True, limit=4)


@pytest.mark.only_backend("postgresql")
async def test_postgres_windows_without_statistics(hub, monkeypatch) -> None:
    """Before ANALYZE has seen the table: the fixed ladder of windows, then the plain query."""
    assert hub.engine.dialect.name == "postgresql"

    async def unknown(conn, q):  # noqa: ANN001, ANN202
        return None, 0.0

    monkeypatch.setattr(store, "_term_share", unknown)
    monkeypatch.setattr(store, "PG_WINDOWS", (5, 40))
    user_id, accounts = await _person(hub, "ladder")
    await _seed(hub, user_id, accounts, 700, seed=4)
    for q in (COMMON, MIDDLING, RARE):
        await _pages_agree(hub, user_id, q=q, limit=6)


@pytest.mark.only_backend("sqlite")
async def test_sqlite_millisecond_full_of_candidates(hub, monkeypatch) -> None:
    """A window whose candidates all share one millisecond widens instead of looping."""
    assert hub.engine.dialect.name == "sqlite"
    monkeypatch.setattr(store, "DIRECT_COST_RATIO", 10**9)  # never read from the hits: windows only
    user_id, accounts = await _person(hub, "samems")
    batch = [
        Owned(user_id, accounts[0], "slack", Change(ChangeKind.UPSERT, "C1", str(i), Message(
            chat_id="C1", native_id=str(i), sent_at=T0 if i < 400 else T0 - i, text=f"{COMMON} {i}", chat_type=ChatType.GROUP)), None)
        for i in range(600)
    ]
    async with hub.engine.begin() as conn:
        await apply_changes(conn, batch)
    assert await _pages_agree(hub, user_id, q=COMMON, limit=300) == 600
