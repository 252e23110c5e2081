"""RAG rows: documents, chunks and chunked uploads, always filtered by owner in SQL."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ai.rag.chunking import Chunk
from store.ids import new_id, now_ms
from store.schema import rag_chunks, rag_documents, rag_uploads

PENDING, EXTRACTING, READY = "pending", "extracting", "ready"


def embedding_status(done: int, total: int) -> str:
    return f"embedding ({done}/{total})"


def failed_status(reason: str) -> str:
    return f"failed: {reason}"[:300]


async def create_document(conn: AsyncConnection, *, user_id: str, document_id: str, name: str, content_type: str,
                          kind: str, size: int, sha256: str, job_id: str | None = None) -> dict[str, Any]:
    now = now_ms()
    row = {"id": document_id, "user_id": user_id, "job_id": job_id, "name": name, "content_type": content_type,
           "kind": kind, "size_bytes": size, "sha256": sha256, "status": PENDING, "chunk_count": 0,
           "embedded_count": 0, "created_at": now, "updated_at": now}
    await conn.execute(rag_documents.insert().values(row))
    return row


async def get_document(conn: AsyncConnection, user_id: str, document_id: str) -> dict[str, Any] | None:
    d = rag_documents
    row = (await conn.execute(sa.select(d).where(d.c.id == document_id, d.c.user_id == user_id))).first()
    return dict(row._mapping) if row else None


async def get_by_job(conn: AsyncConnection, user_id: str, job_id: str) -> dict[str, Any] | None:
    d = rag_documents
    row = (await conn.execute(sa.select(d).where(d.c.job_id == job_id, d.c.user_id == user_id))).first()
    return dict(row._mapping) if row else None


async def list_documents(conn: AsyncConnection, user_id: str, limit: int, offset: int) -> tuple[list[dict[str, Any]], int]:
    d = rag_documents
    rows = await conn.execute(
        sa.select(d).where(d.c.user_id == user_id).order_by(d.c.created_at.desc(), d.c.id.desc()).limit(limit).offset(offset)
    )
    total = (await conn.execute(sa.select(sa.func.count()).where(d.c.user_id == user_id))).scalar_one()
    return [dict(r._mapping) for r in rows], int(total)


async def delete_document(conn: AsyncConnection, user_id: str, document_id: str) -> list[str] | None:
    """Delete the document and its chunks (their vectors with them); the chunk ids, or None."""
    d, c = rag_documents, rag_chunks
    chunk_ids = [r.id for r in await conn.execute(sa.select(c.c.id).where(c.c.document_id == document_id, c.c.user_id == user_id))]
    await conn.execute(c.delete().where(c.c.document_id == document_id, c.c.user_id == user_id))
    gone = await conn.execute(d.delete().where(d.c.id == document_id, d.c.user_id == user_id))
    return chunk_ids if gone.rowcount else None


async def set_status(conn: AsyncConnection, document_id: str, status: str, *, expect: str | None = None, **extra: Any) -> bool:
    d = rag_documents
    stmt = d.update().where(d.c.id == document_id).values(status=status, updated_at=now_ms(), **extra)
    if expect is not None:
        stmt = stmt.where(d.c.status == expect)
    return bool((await conn.execute(stmt)).rowcount)


async def insert_chunks(conn: AsyncConnection, user_id: str, document_id: str, chunks: list[Chunk]) -> None:
    rows = [{"id": new_id("chk"), "document_id": document_id, "user_id": user_id, "position": ch.position,
             "heading": ch.heading, "text": ch.text, "start_char": ch.start_char} for ch in chunks]
    for i in range(0, len(rows), 500):
        await conn.execute(rag_chunks.insert(), rows[i : i + 500])


async def used_bytes(conn: AsyncConnection, user_id: str) -> int:
    """Documents plus the declared size of unfinished chunked uploads: what counts against the quota."""
    d, u = rag_documents, rag_uploads
    docs = (await conn.execute(sa.select(sa.func.coalesce(sa.func.sum(d.c.size_bytes), 0)).where(d.c.user_id == user_id))).scalar_one()
    ups = (await conn.execute(sa.select(sa.func.coalesce(sa.func.sum(u.c.size_bytes), 0)).where(u.c.user_id == user_id))).scalar_one()
    return int(docs) + int(ups)


async def stats(conn: AsyncConnection, user_id: str) -> dict[str, Any]:
    d, c = rag_documents, rag_chunks
    by_status: dict[str, int] = {}
    for row in await conn.execute(sa.select(d.c.status, sa.func.count()).where(d.c.user_id == user_id).group_by(d.c.status)):
        key = row[0].split(" ")[0].rstrip(":")
        by_status[key] = by_status.get(key, 0) + int(row[1])
    size = (await conn.execute(sa.select(sa.func.coalesce(sa.func.sum(d.c.size_bytes), 0)).where(d.c.user_id == user_id))).scalar_one()
    chunks, embedded = (await conn.execute(
        sa.select(sa.func.count(), sa.func.count(c.c.vector)).where(c.c.user_id == user_id)
    )).one()
    return {"documents": sum(by_status.values()), "byStatus": by_status, "totalBytes": int(size),
            "chunks": int(chunks), "embeddedChunks": int(embedded)}
