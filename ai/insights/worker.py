"""The worker side: follow each owner's message `seq` and refresh the insights of chats that
changed, once they have been quiet for DEBOUNCE_MS (a burst of messages makes one
recomputation, not one per message).

The per-owner cursor lives in Redis (`CURSOR`); it only moves past a chat's changes once that
chat was generated, so a chat still inside its debounce window is seen again next round. A
chat whose insight already folded in its newest seq (e.g. `POST /api/insights/generate` ran) is
skipped. Workers call `run_once` under a Redis lock: one generator at a time.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa

from ai.insights.engine import generate_chat
from loomi.hub import Hub
from store import insights as insight_store
from store.ids import now_ms
from store.schema import users

log = logging.getLogger("loomi.insights")
CURSOR = "loomi:insights:cursor"  # hash: user id -> seq folded in
LOCK = "loomi:insights:lock"
DEBOUNCE_MS = 5_000


async def run_once(hub: Hub, debounce_ms: int | None = None, max_chats: int = 50) -> int:
    """One round over every owner with new messages; returns how many insights were made."""
    debounce_ms = DEBOUNCE_MS if debounce_ms is None else debounce_ms
    cursors = {k.decode() if isinstance(k, bytes) else k: int(v) for k, v in (await hub.redis.hgetall(CURSOR)).items()}
    async with hub.engine.connect() as conn:
        owners = (await conn.execute(sa.select(users.c.id, users.c.seq))).all()
    made = 0
    now = now_ms()
    for user_id, seq in owners:
        cursor = cursors.get(user_id, 0)
        if seq <= cursor:
            continue
        async with hub.engine.connect() as conn:
            changed = await insight_store.chats(conn, user_id, after_seq=cursor)
            folded = await insight_store.last_seqs(conn, user_id)
        upto = int(seq)
        for chat in changed:
            key = insight_store.dedupe_key(chat["account_id"], chat["chat_id"])
            if folded.get(key, -1) >= chat["max_seq"]:
                continue
            if now - int(chat["arrived"]) < debounce_ms or made >= max_chats:
                upto = min(upto, int(chat["min_seq"]) - 1)  # not yet: this chat is seen again next round
                continue
            try:
                await generate_chat(hub, user_id, chat["account_id"], chat["chat_id"], "auto")
                made += 1
            except Exception:  # noqa: BLE001 - one bad chat must not stop the others, nor be retried
                log.exception("insights: generating %s failed; retried on its next message", key)
        await hub.redis.hset(CURSOR, user_id, max(upto, cursor))
    return made
