"""The per-person vector index (ai/ann.py): HNSW recall against exact search, the move from
exact to HNSW at the threshold, deletes and updates, a saved graph loaded and brought up to
date from the database, and grounding reaching messages older than the scan bound.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import sqlalchemy as sa

from ai import ann, search
from ai.search import Scope
from ai.vectors import pack
from store.ids import new_id, now_ms
from store.schema import message_embeddings, rag_chunks, rag_documents
from tests.ai.test_grounding import add_account, add_message
from tests.conftest import register


def unit_rows(n: int, dims: int, seed: int) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((n, dims)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def exact_top(rows: np.ndarray, q: np.ndarray, k: int) -> list[int]:
    return list(np.argsort(-(rows @ q))[:k])


def test_hnsw_recall_at_10_against_exact() -> None:
    rows, queries = unit_rows(4000, 64, 1), unit_rows(100, 64, 2)
    index = ann.PersonIndex(ann.RAG, "user_x", "m", threshold=1000)
    ids = [f"c{i}" for i in range(len(rows))]
    index.upsert(ids, rows)
    assert index.mode == "hnsw" and index.live == 4000
    hits = 0
    for q in queries:
        got = {item for item, _ in index.search(q, 10)}
        hits += len(got & {ids[i] for i in exact_top(rows, q, 10)})
    recall = hits / (10 * len(queries))
    assert recall >= 0.95, recall


def test_exact_below_threshold_then_hnsw_deletes_and_updates() -> None:
    rows = unit_rows(600, 32, 3)
    index = ann.PersonIndex(ann.RAG, "user_x", "m", threshold=500)
    index.upsert([f"c{i}" for i in range(400)], rows[:400])
    assert index.mode == "exact" and index.search(rows[7], 1)[0][0] == "c7"
    index.upsert([f"c{i}" for i in range(400, 600)], rows[400:])
    assert index.mode == "hnsw" and index.search(rows[7], 1)[0][0] == "c7" and index.search(rows[450], 1)[0][0] == "c450"
    assert index.remove(["c7", "c450", "nope"]) == 2
    assert "c7" not in {i for i, _ in index.search(rows[7], 10)} and index.live == 598
    index.upsert(["c8"], rows[450:451])  # c8 re-embedded: now it sits where c450 was
    assert index.search(rows[450], 1)[0][0] == "c8"
    index.upsert(["c7"], rows[7:8])  # a removed id comes back
    assert index.search(rows[7], 1)[0][0] == "c7" and index.live == 599


async def add_chunks(hub: Any, user_id: str, rows: np.ndarray, start: int) -> list[str]:
    now = now_ms()
    doc = new_id("doc")
    ids = [new_id("chk") for _ in range(len(rows))]
    async with hub.engine.begin() as conn:
        await conn.execute(rag_documents.insert().values(
            id=doc, user_id=user_id, name="v", content_type="text/plain", kind="txt", size_bytes=1, sha256="0" * 64,
            status="ready", created_at=now, updated_at=now))
        await conn.execute(rag_chunks.insert(), [
            {"id": cid, "document_id": doc, "user_id": user_id, "position": i, "text": f"t{start + i}", "start_char": 0,
             "model": "m", "dims": rows.shape[1], "vector": pack(row), "embedded_at": now}
            for i, (cid, row) in enumerate(zip(ids, rows))])
    return ids


async def test_saved_index_loads_and_catches_up_with_the_database(hub: Any, client: httpx.AsyncClient, tmp_path: Path) -> None:
    who = await register(client)
    uid = who["user"]["id"]
    rows = unit_rows(900, 32, 4)
    first = await add_chunks(hub, uid, rows[:600], 0)
    writer = ann.PersonIndex(ann.RAG, uid, "m", threshold=300)
    await writer.refresh(hub.engine, tmp_path, force=True)
    assert writer.mode == "hnsw" and writer.live == 600 and writer.save(tmp_path)
    # after the save, another process adds rows and deletes some
    later = await add_chunks(hub, uid, rows[600:], 600)
    async with hub.engine.begin() as conn:
        await conn.execute(rag_chunks.delete().where(rag_chunks.c.id.in_(first[:10])))
    reader = ann.PersonIndex(ann.RAG, uid, "m", threshold=300)
    await reader.refresh(hub.engine, tmp_path, force=True)
    assert reader.from_disk and reader.mode == "hnsw" and reader.live == 890
    assert reader.search(rows[700], 1)[0][0] == later[100]
    assert not set(first[:10]) & {i for i, _ in reader.search(rows[3], 20)}
    assert reader.search(rows[20], 1)[0][0] == first[20]


async def test_grounding_reaches_messages_older_than_the_scan_bound(hub: Any, client: httpx.AsyncClient, monkeypatch: Any) -> None:
    who = await register(client)
    uid = who["user"]["id"]
    account = await add_account(hub, uid)
    model = "all-minilm-l6-v2"
    vecs = unit_rows(60, 384, 5)
    ids = [await add_message(hub, uid, account, f"message {i}", sent_at=1_000_000 + i, chat_id="C9" if i == 0 else "C1")
           for i in range(60)]
    now = now_ms()
    async with hub.engine.begin() as conn:
        await conn.execute(message_embeddings.insert(), [
            {"message_id": mid, "user_id": uid, "model": model, "dims": 384, "vector": pack(v), "created_at": now}
            for mid, v in zip(ids, vecs)])
    monkeypatch.setattr(search, "MAX_VECTOR_CANDIDATES", 10)  # the old scan would read the newest 10 only
    async with hub.engine.connect() as conn:
        found = await search.vector_search(conn, uid, vecs[0], model, Scope(), limit=5)
        assert found[0][0] == ids[0]  # the oldest message, found through the index
        scoped = await search.vector_search(conn, uid, vecs[0], model, Scope(chat_id="C9"), limit=5)
        assert [m for m, _ in scoped] == [ids[0]]
        other = await search.vector_search(conn, uid, vecs[0], model, Scope(chat_id="C1"), limit=5)
        assert ids[0] not in {m for m, _ in other}
    index = ann.registry(hub.engine).get(ann.MESSAGES, uid, model)
    assert index.live == 60


async def test_a_cold_index_is_scanned_while_it_builds(hub: Any, client: httpx.AsyncClient, monkeypatch: Any) -> None:
    who = await register(client)
    uid = who["user"]["id"]
    rows = unit_rows(50, 384, 6)
    ids = await add_chunks(hub, uid, rows, 0)
    async with hub.engine.begin() as conn:
        await conn.execute(rag_chunks.update().where(rag_chunks.c.user_id == uid).values(model="all-minilm-l6-v2"))
    monkeypatch.setattr(ann, "BUILD_WAIT_SECONDS", 0)
    registry = ann.Registry(None, threshold=10)
    from ai.rag import search as rag_search

    async with hub.engine.connect() as conn:
        found = await rag_search.vector_ids(conn, registry, uid, rows[5], "all-minilm-l6-v2")
    assert found[0][0] == ids[5]  # answered by the scan
    index = registry.get(ann.RAG, uid, "all-minilm-l6-v2")
    assert index.task is not None
    await index.task  # the build went on in the background
    assert index.built and index.mode == "hnsw" and index.search(rows[5], 1)[0][0] == ids[5]
