"""History backfill and gap recovery, as ARQ jobs, checkpointed per chat.

`history`: page back through each chat from the last saved cursor (resumes after a crash).
`gaps`: after a reconnect, fetch what arrived while we were away: everything newer than the
newest message stored for that chat. Both only queue envelopes; ingest writes them, and the
database's uniqueness makes overlap with live events harmless.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from connectors.base import Backfiller
from loomi.hub import Hub
from store import accounts as account_store
from store.messages import latest_sent_at
from workers import keys
from workers.stream import append

log = logging.getLogger("loomi.backfill")

MAX_PAGES_PER_CHAT = 50
Progress = Callable[[dict[str, Any]], None]  # {chat, index, chats, pages, queued, done}: `loomi backfill`'s bar


async def backfill_account(
    hub: Hub, account_id: str, mode: str = "history", newest: dict[str, str] | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """`newest` (gaps mode): chat -> epoch ms to fetch after (exclusive), taken when the
    connection came back. `progress` hears of every page and of every chat finished."""
    async with hub.engine.connect() as conn:
        account = await account_store.load_account(conn, hub.vault, account_id)
        if mode == "gaps" and newest is None:
            newest = {chat: str(ms) for chat, ms in (await latest_sent_at(conn, account_id)).items()}
    newest = newest or {}
    if account is None:
        return {"queued": 0, "skipped": "no such account"}
    connector = hub.connector(account.platform)
    if not isinstance(connector, Backfiller):
        return {"queued": 0, "skipped": "platform has no history API"}
    queued = 0
    chats = await connector.list_chats(account)
    for index, chat_id in enumerate(chats):
        pages = in_chat = 0
        cursor_key = keys.backfill_cursor(account_id, chat_id)
        if mode == "history":
            saved = await hub.redis.get(cursor_key)
            if saved == b"done":
                if progress:
                    progress({"chat": chat_id, "index": index, "chats": len(chats), "pages": 0, "queued": 0, "done": True})
                continue
            cursor, oldest = (saved.decode() if saved else None), None
        else:
            cursor, oldest = None, newest.get(chat_id)
            if oldest is None:
                if progress:
                    progress({"chat": chat_id, "index": index, "chats": len(chats), "pages": 0, "queued": 0, "done": True})
                continue  # nothing stored yet for this chat: the history job covers it
        for _ in range(MAX_PAGES_PER_CHAT):
            page = await connector.backfill(account, chat_id, cursor, oldest)
            added = await append(hub.redis, page.envelopes)
            queued, in_chat, pages = queued + added, in_chat + added, pages + 1
            cursor = page.cursor
            if mode == "history":
                await hub.redis.set(cursor_key, cursor or "done")
            if progress:
                progress({"chat": chat_id, "index": index, "chats": len(chats), "pages": pages, "queued": in_chat, "done": cursor is None})
            if cursor is None:
                break
    log.info("%s backfill of %s queued %d envelopes", mode, account_id, queued)
    await hub.redis.hset(keys.status(account_id), f"{mode}_backfill_at", int(time.time() * 1000))
    return {"queued": queued, "chats": len(chats)}
