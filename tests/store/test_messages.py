"""Exactly-once writes, edits, tombstones and per-owner seq, on both databases."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from connectors.base import AccountSpec, Change, ChangeKind, Message
from store.accounts import upsert_account
from store.messages import Owned, apply_changes, changes_since, insert_outbound, list_messages, mark_sent
from store.schema import messages
from store.users import create_user


async def _owner(hub, name: str) -> tuple[str, str]:
    async with hub.engine.begin() as conn:
        user = await create_user(conn, email=f"{name}-{id(hub)}-{asyncio.get_running_loop().time()}@x.test", name=name, password_hash=None)
        account = await upsert_account(conn, hub.vault, user["id"], "slack", AccountSpec(external_id=f"T-{user['id']}", name="ws", credentials={"bot_token": "xoxb-secret"}))
    return user["id"], account["id"]


def _msg(native: str, text: str, chat: str = "C1", **kw) -> Message:
    return Message(chat_id=chat, native_id=native, sent_at=1_700_000_000_000 + int(float(native) * 1000) % 10_000_000, text=text, **kw)


def _own(user_id: str, account_id: str, change: Change) -> Owned:
    return Owned(user_id, account_id, "slack", change, {"raw": change.native_id})


async def _rows(hub, account_id: str) -> list[dict]:
    async with hub.engine.connect() as conn:
        result = await conn.execute(messages.select().where(messages.c.account_id == account_id).order_by(messages.c.native_id))
        return [dict(r) for r in result.mappings()]


async def test_redelivery_and_overlap_never_duplicate(hub) -> None:
    user_id, account_id = await _owner(hub, "dup")
    batch = [_own(user_id, account_id, Change(ChangeKind.UPSERT, "C1", str(i), _msg(str(i), f"m{i}"))) for i in range(1, 51)]
    async with hub.engine.begin() as conn:
        assert await apply_changes(conn, batch) == 50
    async with hub.engine.begin() as conn:  # the same batch again, plus duplicates inside one batch
        assert await apply_changes(conn, batch + batch[:5]) == 0
    rows = await _rows(hub, account_id)
    assert len(rows) == 50 and len({r["native_id"] for r in rows}) == 50
    assert rows[0]["raw"] == {"raw": rows[0]["native_id"]}  # the payload as received is kept


async def test_edits_keep_first_text_and_older_edits_lose(hub) -> None:
    user_id, account_id = await _owner(hub, "edit")
    async with hub.engine.begin() as conn:
        await apply_changes(conn, [_own(user_id, account_id, Change(ChangeKind.UPSERT, "C1", "1", _msg("1", "first")))])
        await apply_changes(conn, [_own(user_id, account_id, Change(ChangeKind.EDIT, "C1", "1", _msg("1", "second"), at=2000))])
        await apply_changes(conn, [_own(user_id, account_id, Change(ChangeKind.EDIT, "C1", "1", _msg("1", "stale"), at=1999))])
        # an edit for a message never seen creates it
        await apply_changes(conn, [_own(user_id, account_id, Change(ChangeKind.EDIT, "C1", "2", _msg("2", "edited only"), at=5))])
    rows = await _rows(hub, account_id)
    assert (rows[0]["text"], rows[0]["original_text"], rows[0]["edited_at"]) == ("second", "first", 2000)
    assert rows[1]["text"] == "edited only"


async def test_deletes_are_tombstones_that_stay_dead(hub) -> None:
    user_id, account_id = await _owner(hub, "del")
    async with hub.engine.begin() as conn:
        await apply_changes(conn, [_own(user_id, account_id, Change(ChangeKind.UPSERT, "C1", "1", _msg("1", "doomed")))])
        await apply_changes(conn, [_own(user_id, account_id, Change(ChangeKind.DELETE, "C1", "1", at=3000))])
        await apply_changes(conn, [_own(user_id, account_id, Change(ChangeKind.DELETE, "C1", "9", at=3000))])  # never seen
        await apply_changes(conn, [_own(user_id, account_id, Change(ChangeKind.UPSERT, "C1", "9", _msg("9", "late original")))])
        await apply_changes(conn, [_own(user_id, account_id, Change(ChangeKind.EDIT, "C1", "1", _msg("1", "zombie"), at=4000))])
    rows = await _rows(hub, account_id)
    assert [r["deleted_at"] for r in rows] == [3000, 3000]
    assert rows[0]["text"] == "doomed"  # an edit after the delete does not resurrect it
    async with hub.engine.connect() as conn:
        visible = await list_messages(conn, user_id, filters={}, q=None, before=None, limit=10, include_deleted=False)
    assert visible == []


async def test_seq_is_monotonic_per_owner_and_sync_sees_every_change(hub) -> None:
    user_id, account_id = await _owner(hub, "seq")
    other_user, other_account = await _owner(hub, "other")

    async def writer(start: int) -> None:
        for i in range(start, start + 20):
            async with hub.engine.begin() as conn:
                await apply_changes(
                    conn,
                    [
                        _own(user_id, account_id, Change(ChangeKind.UPSERT, "C1", str(i), _msg(str(i), "x"))),
                        _own(other_user, other_account, Change(ChangeKind.UPSERT, "C1", str(i), _msg(str(i), "y"))),
                    ],
                )

    await asyncio.gather(writer(100), writer(200), writer(300))
    async with hub.engine.connect() as conn:
        seen = await changes_since(conn, user_id, 0, 1000)
        mine_only = {r["user_id"] for r in seen}
        later = await changes_since(conn, user_id, seen[29]["seq"], 1000)
    seqs = [r["seq"] for r in seen]
    assert len(seen) == 60 and seqs == sorted(seqs) and len(set(seqs)) == 60
    assert mine_only == {user_id}
    assert [r["seq"] for r in later] == seqs[30:]


async def test_outbound_echo_merges_into_the_sent_row(hub) -> None:
    user_id, account_id = await _owner(hub, "echo")
    async with hub.engine.begin() as conn:
        pending = await insert_outbound(conn, user_id=user_id, account_id=account_id, platform="slack", chat_id="C1", text="hi", reply_to_id=None, thread_id=None, idempotency_key="k1")
        # the platform's echo of our send is ingested before the send call returns
        await apply_changes(conn, [_own(user_id, account_id, Change(ChangeKind.UPSERT, "C1", "77.1", _msg("77.1", "hi", is_self=True)))])
        await mark_sent(conn, pending, "77.1", 1234, {"ok": True}, None)
        # and a late redelivery of the echo changes nothing
        await apply_changes(conn, [_own(user_id, account_id, Change(ChangeKind.UPSERT, "C1", "77.1", _msg("77.1", "hi", is_self=True)))])
    rows = await _rows(hub, account_id)
    assert len(rows) == 1
    assert (rows[0]["id"], rows[0]["status"], rows[0]["native_id"], rows[0]["direction"]) == (pending["id"], "sent", "77.1", "outbound")


async def test_full_text_search(hub) -> None:
    user_id, account_id = await _owner(hub, "fts")
    texts = {"1": "quarterly budget review tomorrow", "2": "lunch plans", "3": "the BUDGET is approved", "4": 'tricky "quote" OR NOT'}
    async with hub.engine.begin() as conn:
        await apply_changes(conn, [_own(user_id, account_id, Change(ChangeKind.UPSERT, "C1", k, _msg(k, v))) for k, v in texts.items()])
        found = await list_messages(conn, user_id, filters={}, q="budget", before=None, limit=10, include_deleted=False)
        odd = await list_messages(conn, user_id, filters={}, q='"quote" OR', before=None, limit=10, include_deleted=False)
        count = (await conn.execute(sa.select(sa.func.count()).select_from(messages).where(messages.c.user_id == user_id))).scalar()
    assert sorted(r["native_id"] for r in found) == ["1", "3"]
    assert [r["native_id"] for r in odd] == ["4"]
    assert count == 4
