"""Background embedding of messages: what makes vector search over the store possible.

Workers call `index_pending` in their loop; it embeds a batch of messages that have no vector
yet (or whose vector is stale: the text was edited after, or the embedding model changed),
newest first so recent conversations are searchable soonest. Writes are upserts, so two
workers racing on the same batch do no harm.
"""

from __future__ import annotations

import asyncio
import logging

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from ai import ann
from ai.vectors import pack
from loomi.hub import Hub
from store.ids import now_ms
from store.schema import message_embeddings, messages

log = logging.getLogger("loomi.ai")
MAX_TEXT_CHARS = 2000  # the model reads 256 word pieces; more text is wasted tokenizer work


def _embedder():  # noqa: ANN202
    from ai.local.embeddings import ModelNotInstalledError, get_embedder

    try:
        return get_embedder()
    except ModelNotInstalledError as err:
        log.warning("message embeddings disabled: %s", err)
        return None


def pending_query(model: str, limit: int) -> sa.Select:
    m, e = messages, message_embeddings
    stale = sa.or_(
        e.c.message_id.is_(None),
        e.c.model != model,
        sa.and_(m.c.edited_at.is_not(None), e.c.created_at < m.c.edited_at),
    )
    return (
        sa.select(m.c.id, m.c.user_id, m.c.text)
        .select_from(m.outerjoin(e, e.c.message_id == m.c.id))
        .where(m.c.deleted_at.is_(None), m.c.text != "", stale)
        .order_by(m.c.id.desc())
        .limit(limit)
    )


def _upsert(dialect: str, rows: list[dict]) -> sa.Insert:
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(message_embeddings).values(rows)
    return stmt.on_conflict_do_update(
        index_elements=[message_embeddings.c.message_id],
        set_={c: stmt.excluded[c] for c in ("model", "dims", "vector", "created_at")},
    )


async def index_pending(hub: Hub, limit: int = 500) -> int:
    """Embed up to `limit` messages lacking a current vector; returns how many were embedded."""
    embedder = await asyncio.to_thread(_embedder)
    if embedder is None:
        return 0
    async with hub.engine.connect() as conn:
        batch = (await conn.execute(pending_query(embedder.model, limit))).all()
    if not batch:
        return 0
    vectors = await asyncio.to_thread(embedder.embed, [row.text[:MAX_TEXT_CHARS] for row in batch])
    now = now_ms()
    rows = [
        {"message_id": row.id, "user_id": row.user_id, "model": embedder.model, "dims": int(vectors.shape[1]),
         "vector": pack(vector), "created_at": now}
        for row, vector in zip(batch, vectors, strict=True)
    ]
    dialect = hub.engine.dialect.name
    written = len(rows)
    try:
        async with hub.engine.begin() as conn:
            await conn.execute(_upsert(dialect, rows))
    except IntegrityError:
        # A message was deleted while we embedded it: write the others one by one.
        written = 0
        for row in rows:
            try:
                async with hub.engine.begin() as conn:
                    await conn.execute(_upsert(dialect, [row]))
                written += 1
            except IntegrityError:
                continue
    # the people's vector indexes loaded in this process catch up now (others on their next query)
    await ann.attach(hub).touched(hub.engine, ann.MESSAGES, [row["user_id"] for row in rows])
    return written
