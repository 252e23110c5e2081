"""The background half of RAG: extract and chunk pending documents, then embed their chunks.

The worker (workers/process.py) calls `run_once` in its loop, under one Redis lock across
workers, as it does for message embeddings. Progress is the document's `status`:
pending -> extracting -> embedding (n/m) -> ready | failed: reason. A document claimed for
extraction by a worker that died is put back to pending after STUCK_MS. The vectors go into
the chunk rows (the source of truth), then the person's loaded vector index catches up (ai/ann.py).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import sqlalchemy as sa

from ai import ann
from ai.rag import files, store
from ai.rag.chunking import chunk
from ai.rag.extract import ExtractError, extract
from ai.vectors import pack
from loomi.hub import Hub
from store.ids import now_ms
from store.schema import rag_chunks, rag_documents

log = logging.getLogger("loomi.ai.rag")
LOCK = "loomi:rag:lock"
WAKE = "loomi:rag:wake"  # set by uploads so an idle worker looks again at once
STUCK_MS = 10 * 60_000
EMBED_BATCH = 64
EMBED_TEXT_CHARS = 2000


async def extract_document(hub: Hub, document: dict) -> bool:
    """Read the stored file, cut it into chunks, store them: `embedding (0/m)`, or `failed: …`."""
    path = files.document_path(Path(hub.settings.home), document["user_id"], document["id"])
    try:
        data = await asyncio.to_thread(path.read_bytes)
        chunks = await asyncio.to_thread(lambda: chunk(extract(data, document["kind"])))
    except (ExtractError, OSError) as err:
        async with hub.engine.begin() as conn:
            await store.set_status(conn, document["id"], store.failed_status(str(err)))
        return False
    async with hub.engine.begin() as conn:
        await conn.execute(rag_chunks.delete().where(rag_chunks.c.document_id == document["id"]))  # a retried claim
        await store.insert_chunks(conn, document["user_id"], document["id"], chunks)
        await store.set_status(conn, document["id"], store.embedding_status(0, len(chunks)), chunk_count=len(chunks), embedded_count=0)
    return True


async def _claim_pending(hub: Hub) -> dict | None:
    d = rag_documents
    async with hub.engine.begin() as conn:
        await conn.execute(  # a worker that died mid-extraction
            d.update().where(d.c.status == store.EXTRACTING, d.c.updated_at < now_ms() - STUCK_MS).values(status=store.PENDING)
        )
        row = (await conn.execute(sa.select(d).where(d.c.status == store.PENDING).order_by(d.c.created_at).limit(1))).first()
        if row is None:
            return None
        claimed = await store.set_status(conn, row.id, store.EXTRACTING, expect=store.PENDING)
    return dict(row._mapping) if claimed else None


def _embedder():  # noqa: ANN202
    from ai.local.embeddings import ModelNotInstalledError, get_embedder

    try:
        return get_embedder()
    except ModelNotInstalledError:
        return None


async def embed_batch(hub: Hub, limit: int = EMBED_BATCH) -> int:
    """Embed up to `limit` chunks of documents in `embedding (…)`; update their progress."""
    c, d = rag_chunks, rag_documents
    async with hub.engine.connect() as conn:
        # documents first (few rows), then their chunks by (document_id, position): never a
        # scan of every chunk looking for the ones without a vector
        docs = [r.id for r in await conn.execute(
            sa.select(d.c.id).where(d.c.status.like("embedding%")).order_by(d.c.created_at).limit(8)
        )]
        if not docs:
            return 0
        batch = (await conn.execute(
            sa.select(c.c.id, c.c.document_id, c.c.user_id, c.c.heading, c.c.text)
            .where(c.c.document_id.in_(docs), c.c.model.is_(None))
            .order_by(c.c.document_id, c.c.position)
            .limit(limit)
        )).all()
    if not batch:
        return 0
    embedder = await asyncio.to_thread(_embedder)
    if embedder is None:
        async with hub.engine.begin() as conn:
            for doc_id in {row.document_id for row in batch}:
                await store.set_status(conn, doc_id, store.failed_status("no embedding model installed (keyword search still works)"))
        return 0
    texts = [(f"{row.heading}\n{row.text}" if row.heading else row.text)[:EMBED_TEXT_CHARS] for row in batch]
    matrix = await asyncio.to_thread(embedder.embed, texts)
    now = now_ms()
    async with hub.engine.begin() as conn:
        for row, vector in zip(batch, matrix, strict=True):
            await conn.execute(c.update().where(c.c.id == row.id).values(
                model=embedder.model, dims=int(matrix.shape[1]), vector=pack(vector), embedded_at=now))
        for doc_id in {row.document_id for row in batch}:
            done, total = (await conn.execute(
                sa.select(sa.func.count(c.c.vector), sa.func.count()).where(c.c.document_id == doc_id)
            )).one()
            status = store.READY if done >= total else store.embedding_status(int(done), int(total))
            await conn.execute(d.update().where(d.c.id == doc_id, d.c.status.like("embedding%"))
                               .values(status=status, embedded_count=int(done), updated_at=now))
    await ann.attach(hub).touched(hub.engine, ann.RAG, [row.user_id for row in batch])
    return len(batch)


async def run_once(hub: Hub) -> int:
    """One step of work: extract one pending document, or embed one batch. How much was done."""
    document = await _claim_pending(hub)
    if document is not None:
        await extract_document(hub, document)
        return 1
    return await embed_batch(hub)


async def drain(hub: Hub, max_steps: int = 10_000) -> int:
    """Run until nothing is left (tests, `loomi` tools): the worker's work, in the caller's loop."""
    done = 0
    for _ in range(max_steps):
        step = await run_once(hub)
        if not step:
            break
        done += step
    return done
