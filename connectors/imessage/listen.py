"""The poller: new chat.db rows by ROWID, emitted with the last ROWID as the resume state (one
atomic write with the queue), so a restart continues exactly where the queue ends: nothing
read twice, nothing skipped. The first run starts at ROWID 0, i.e. reads the whole history.
Edits and unsends change an existing row (`date_edited`, `date_retracted`): each poll also
looks at the recent rows (Apple allows both only for minutes) changed since the newest change
it has seen, saved with the ROWID.

Only the machine holding the file can read it: on a hub with workers on several machines, a
worker elsewhere that takes the account fails to open it and backs off (reported on the
account), and the account is read only while a worker on the Mac holds it.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import time

from connectors.base import AccountState, Envelope, ListenContext
from connectors.imessage.chatdb import open_readonly, read_after, read_edited

APPLE_EPOCH_NS = 978_307_200 * 1_000_000_000
JOIN_GRACE_NS = 10 * 1_000_000_000


async def poll(ctx: ListenContext, *, interval: float, batch: int) -> None:
    path = ctx.account.settings.get("db_path")
    if not path:
        raise ValueError("this iMessage account has no db_path")
    try:
        db = await asyncio.to_thread(open_readonly, path)
    except ValueError as err:
        host = socket.gethostname()
        await ctx.report(AccountState.BACKOFF, f"{err} (worker on {host}; the account is on {ctx.account.settings.get('host')})")
        raise
    try:
        rowid = int(ctx.resume.get("rowid") or 0)
        # first run: the history read from ROWID 0 already shows every edit made so far
        edited = int(ctx.resume["edited"]) if "edited" in ctx.resume else apple_now()
        await ctx.report(AccountState.CONNECTED, f"polling {path}")
        while True:
            try:
                read = await asyncio.to_thread(read_after, db, rowid, batch)
                rows = settled(read, apple_now())
                last = max((r["rowid"] for r in rows), default=rowid)
                changed = await asyncio.to_thread(read_edited, db, last, edited, batch) if len(rows) < batch else []
            except sqlite3.OperationalError as err:  # "database is locked" while Messages checkpoints: next poll
                if "locked" not in str(err) and "busy" not in str(err):
                    raise
                read, rows, changed, last = [], [], [], rowid
            newest_edit = max((_changed_at(r) for r in changed), default=edited)
            if rows or changed:
                now = int(time.time() * 1000)
                envelopes = [Envelope("imessage", ctx.account.id, str(r["guid"]), now, r, "listen") for r in rows]
                envelopes += [Envelope("imessage", ctx.account.id, f"{r['guid']}:edit:{_changed_at(r)}", now, r, "listen")
                              for r in changed]
                await ctx.emit(envelopes, resume={"rowid": last, "edited": newest_edit})
            rowid, edited = last, newest_edit  # only once the queue has them
            if len(rows) < batch or len(rows) < len(read):
                await asyncio.sleep(interval)
    finally:
        db.close()


def settled(rows: list[dict], now: int) -> list[dict]:
    """The rows up to the first one that is not in a chat yet and was written in the last
    JOIN_GRACE_NS: its chat_message_join row may still be on its way (read it next poll, not
    without its chat). An older chatless row is an orphan and passes (normalize skips it)."""
    for i, row in enumerate(rows):
        if row.get("chat_guid") is None and now - int(row.get("date") or 0) < JOIN_GRACE_NS:
            return rows[:i]
    return rows


def _changed_at(row: dict) -> int:
    return max(row.get("date_edited") or 0, row.get("date_retracted") or 0)


def apple_now() -> int:
    """Now in Apple's time (nanoseconds since 2001-01-01), what `date_edited` is written in."""
    return time.time_ns() - APPLE_EPOCH_NS
