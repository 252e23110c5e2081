"""RAG and grounding search at scale: latency and recall of the per-person vector index
(ai/ann.py) against exact search, measured in the same run.

Usage::

    .venv/bin/python -m bench.rag [--quick] [--sizes 10000,100000] [--million] [--queries 200]

Parts, each printed with the exact baseline beside it:

1. Index alone (synthetic 384-dim vectors in 2,000 clusters, like sentence embeddings of
   many topics): build time, query p50/p99 for exact numpy search (the whole matrix in memory)
   and HNSW, recall@10 of HNSW against exact, at each size (and 1M with --million).
2. RAG search end to end on SQLite (`ai.rag.search.search`: FTS5 BM25 + the real MiniLM query
   embedding + the index, fused by RRF, rows fetched) at 10k and 100k chunks (chunk text from a
   word list, synthetic vectors): p50/p99 with the index exact (threshold above N) and HNSW.
3. Message grounding (`ai.search.vector_search`) at 100k messages: through the index (HNSW)
   vs the scan it replaced (newest 20k vectors read from the database per query), with the
   recall@10 of each against exact search over all messages.
4. Real embeddings, small: 2,000 chunks of generated sentences embedded by MiniLM; recall@10 of
   HNSW against exact, and whether the top hit of each paraphrased query is the same.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# One BLAS thread: on a shared 2-core machine a threaded matrix-vector product mostly waits for
# its other thread; single-threaded is the fastest exact baseline here.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import sqlalchemy as sa  # noqa: E402

from ai import ann, search  # noqa: E402
from ai.rag import search as rag_search  # noqa: E402
from ai.search import Scope  # noqa: E402
from ai.vectors import pack  # noqa: E402
from bench.common import emit  # noqa: E402
from store.db import create_engine, migrate  # noqa: E402
from store.ids import new_id, now_ms  # noqa: E402
from store.schema import accounts, message_embeddings, messages, rag_chunks, rag_documents  # noqa: E402
from store.users import create_user  # noqa: E402

DIMS = 384
MODEL = "all-minilm-l6-v2"
WORDS = ("meeting project deadline review customer invoice server deploy release budget team schedule update report "
         "issue ticket sprint design feedback message channel thread tomorrow morning afternoon database cache queue "
         "worker latency error retry timeout login account password email call notes agenda slides demo launch plan "
         "goal metric growth revenue quarter week contract vendor travel hotel flight lunch hiring interview offer "
         "roadmap migration backup storage network security audit policy compliance training onboarding").split()


def vocabulary(size: int = 30_000) -> tuple[list[str], np.ndarray]:
    """Pseudo-words with Zipf frequencies (s=1.1), as in real text: a few words in every chunk,
    most in few. The first ones are WORDS, so chunk text reads like the domain."""
    rnd = random.Random(11)
    syllables = [a + b for a in "bdfgklmnprstvz" for b in "aeiou"]
    words = list(WORDS)
    seen = set(words)
    while len(words) < size:
        w = "".join(rnd.choice(syllables) for _ in range(rnd.randint(2, 4)))
        if w not in seen:
            seen.add(w)
            words.append(w)
    p = 1.0 / np.arange(1, size + 1) ** 1.1
    return words, p / p.sum()


def texts(n: int, length: int, seed: int) -> list[str]:
    words, p = vocabulary()
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(words), size=(n, length), p=p)
    return [" ".join(words[i] for i in row) for row in picks]


def clustered(n: int, seed: int, clusters: int = 2000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((clusters, DIMS)).astype(np.float32)
    rows = np.empty((n, DIMS), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        rows[start:stop] = centers[rng.integers(0, clusters, stop - start)] + 0.9 * rng.standard_normal((stop - start, DIMS)).astype(np.float32)
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, p))


def line(label: str, times: list[float], base: list[float] | None = None) -> str:
    out = f"  {label:<44} p50 {pct(times, 50):8.3f} ms  p99 {pct(times, 99):8.3f} ms"
    if base is not None:
        out += f"   ({pct(base, 50) / max(pct(times, 50), 1e-9):6.1f}x faster at p50 than exact)"
    return out


def exact_top(rows: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    scores = rows @ q
    best = np.argpartition(-scores, k)[:k]
    return best[np.argsort(-scores[best])]


def part_index(sizes: list[int], queries: int) -> None:
    print("\n1. Vector index alone (synthetic, 384 dims, clustered)")
    for n in sizes:
        rows = clustered(n + queries, seed=n)
        data, qs = rows[:n], rows[n:]
        index = ann.PersonIndex(ann.RAG, "user_bench", MODEL, threshold=0)
        ids = [str(i) for i in range(n)]
        t0 = time.perf_counter()
        for start in range(0, n, 50_000):
            index.upsert(ids[start : start + 50_000], data[start : start + 50_000])
        build = time.perf_counter() - t0
        exact_t, ann_t, hits = [], [], 0
        for q in qs[:10]:  # warm up both
            exact_top(data, q, 10), index.search(q, 10)
        for q in qs:
            t = time.perf_counter()
            truth = exact_top(data, q, 10)
            exact_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            got = index.search(q, 10)
            ann_t.append(time.perf_counter() - t)
            hits += len({int(i) for i, _ in got} & {int(i) for i in truth})
        print(f" {n:>9,} vectors: HNSW build {build:6.1f} s ({n / build:,.0f}/s), {data.nbytes / 2**20:,.0f} MiB of vectors")
        print(line("exact (numpy matmul + argpartition)", exact_t))
        print(line("HNSW (hnswlib, M=16, ef=96)", ann_t, exact_t))
        print(f"  recall@10 HNSW vs exact: {hits / (10 * len(qs)):.4f}")
        emit("rag", f"{n:,} vectors: HNSW query p50", pct(ann_t, 50), "ms", baseline=pct(exact_t, 50),
             baseline_label="exact numpy search of the same vectors, p50")
        emit("rag", f"{n:,} vectors: HNSW recall@10", hits / (10 * len(qs)), "recall", baseline=1.0,
             baseline_label="exact search (the truth)")
        del index, rows, data
        gc.collect()


async def new_person(engine: Any) -> str:
    async with engine.begin() as conn:
        user = await create_user(conn, email=f"{new_id('b')}@bench.local", name="Bench", password_hash=None)
    return user["id"]


async def fill_chunks(engine: Any, user_id: str, n: int, vecs: np.ndarray) -> None:
    body = texts(n, 120, seed=n)
    now = now_ms()
    doc = new_id("doc")
    async with engine.begin() as conn:
        await conn.execute(rag_documents.insert().values(id=doc, user_id=user_id, name="bench.txt", content_type="text/plain",
                                                         kind="txt", size_bytes=n, sha256="0" * 64, status="ready",
                                                         chunk_count=n, embedded_count=n, created_at=now, updated_at=now))
        for start in range(0, n, 2000):
            await conn.execute(rag_chunks.insert(), [
                {"id": new_id("chk"), "document_id": doc, "user_id": user_id, "position": i,
                 "text": body[i], "start_char": 0, "model": MODEL, "dims": DIMS,
                 "vector": pack(vecs[i]), "embedded_at": now} for i in range(start, min(n, start + 2000))])


async def timed(fn: Callable[[], Awaitable[Any]], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t)
    return out


async def part_rag(engine: Any, sizes: list[int], queries: int, home: Path) -> None:
    print("\n2. RAG search end to end on SQLite (FTS5 BM25 + MiniLM query embedding + index, RRF, rows fetched)")
    from ai.local.embeddings import get_embedder

    embedder = get_embedder()
    embedder.embed(["warm up"])
    words, _ = vocabulary()
    rnd = random.Random(7)
    qtexts = [" ".join(rnd.choice(words[50:5000]) for _ in range(3)) for _ in range(queries)]
    embed_t = await timed(lambda: asyncio.to_thread(embedder.embed, [rnd.choice(qtexts)]), min(queries, 50))
    print(line("query embedding alone (MiniLM, in every search)", embed_t))
    for n in sizes:
        uid = await new_person(engine)
        await fill_chunks(engine, uid, n, clustered(n, seed=n + 1))
        async with engine.connect() as conn:
            it = iter(qtexts * 2)
            kw = await timed(lambda: rag_search.keyword_ids(conn, uid, next(it)), queries)
        print(line(f"{n:,} chunks: keywords alone (FTS5 BM25, top 50)", kw))
        results: dict[str, list[float]] = {}
        vec: dict[str, list[float]] = {}
        qv = clustered(queries, seed=n + 2)
        for mode, threshold in (("exact", n + 1), ("hnsw", 0)):
            registry = ann.Registry(home, threshold)
            async with engine.connect() as conn:
                t = time.perf_counter()
                await registry.ready(engine, ann.RAG, uid, MODEL, wait=36_000)
                first = time.perf_counter() - t
                vi = iter(qv)
                vec[mode] = await timed(lambda: rag_search.vector_ids(conn, registry, uid, next(vi), MODEL), queries)
                it = iter(qtexts * 2)
                results[mode] = await timed(lambda: rag_search.search(conn, registry, uid, next(it), 10), queries)
            print(f"  {n:,} chunks, index {mode}: first load from the database {first:6.2f} s")
        print(line(f"{n:,} chunks: vectors alone, exact (top 50)", vec["exact"]))
        print(line(f"{n:,} chunks: vectors alone, HNSW (top 50)", vec["hnsw"], vec["exact"]))
        print(line(f"{n:,} chunks: whole search, exact vectors", results["exact"]))
        print(line(f"{n:,} chunks: whole search, HNSW", results["hnsw"], results["exact"]))
        emit("rag", f"{n:,} chunks: RAG search end to end p50", pct(results["hnsw"], 50), "ms",
             baseline=pct(results["exact"], 50), baseline_label="the same search with exact vectors, p50")


async def part_grounding(engine: Any, n: int, queries: int, home: Path) -> None:
    print(f"\n3. Message grounding (ai.search.vector_search) at {n:,} messages")
    uid = await new_person(engine)
    now = now_ms()
    account = new_id("acc")
    vecs = clustered(n + queries, seed=99)
    async with engine.begin() as conn:
        await conn.execute(accounts.insert().values(id=account, user_id=uid, platform="slack", external_id="b", name="b",
                                                    settings={}, resume={}, created_at=now, updated_at=now))
        ids = [new_id("msg") for _ in range(n)]
        for start in range(0, n, 2000):
            part = range(start, min(n, start + 2000))
            await conn.execute(messages.insert(), [
                {"id": ids[i], "user_id": uid, "account_id": account, "platform": "slack", "chat_id": f"C{i % 50}",
                 "chat_name": "c", "chat_type": "channel", "native_id": str(i), "sender_name": "a", "direction": "inbound",
                 "text": "x", "attachments": [], "mentions": [], "reactions": {}, "sent_at": 1_000_000 + i, "seq": i + 1,
                 "created_at": now, "updated_at": now} for i in part])
            await conn.execute(message_embeddings.insert(), [
                {"message_id": ids[i], "user_id": uid, "model": MODEL, "dims": DIMS, "vector": pack(vecs[i]), "created_at": now}
                for i in part])
    data, qs = vecs[:n], vecs[n:]
    # what exact search over all messages returns, with the same score floor grounding applies
    truth = [{ids[i] for i in exact_top(data, q, 10) if float(data[i] @ q) >= search.MIN_VECTOR_SCORE} for q in qs]
    wanted = max(1, sum(len(t) for t in truth))
    ann.registry(engine, home, threshold=5000)
    async with engine.connect() as conn:
        t = time.perf_counter()
        await ann.registry(engine).ready(engine, ann.MESSAGES, uid, MODEL, wait=36_000)
        print(f"  first build of the person's index from the database: {time.perf_counter() - t:6.1f} s")
        measured: dict[str, tuple[float, float]] = {}
        for label, fn in (("scan of the newest 20k (before)", search.scan_search), ("index (HNSW, all messages)", search.vector_search)):
            times, hits = [], 0
            for q, want in zip(qs, truth):
                t = time.perf_counter()
                got = await fn(conn, uid, q, MODEL, Scope(), 10)
                times.append(time.perf_counter() - t)
                hits += len({m for m, _ in got} & want)
            print(line(label, times) + f"   recall@10 vs exact over all: {hits / wanted:.4f}")
            measured[label.split()[0]] = (pct(times, 50), hits / wanted)
    (scan_p50, scan_recall), (index_p50, index_recall) = measured["scan"], measured["index"]
    emit("rag", f"grounding at {n:,} messages: p50", index_p50, "ms", baseline=scan_p50,
         baseline_label="the newest-20k scan it replaced, p50")
    emit("rag", f"grounding at {n:,} messages: recall@10 vs exact over all", index_recall, "recall",
         baseline=scan_recall, baseline_label="the newest-20k scan it replaced")


async def part_real(engine: Any, home: Path, n: int = 2000) -> None:
    print(f"\n4. Real MiniLM embeddings, {n:,} chunks")
    from ai.local.embeddings import get_embedder

    rnd = random.Random(3)
    texts = [" ".join(rnd.choice(WORDS) for _ in range(rnd.randint(8, 30))) for _ in range(n)]
    t = time.perf_counter()
    vecs = get_embedder().embed(texts)
    print(f"  embedded {n} chunks in {time.perf_counter() - t:.1f} s")
    qtexts = [" ".join(rnd.sample(texts[i].split(), min(5, len(texts[i].split())))) for i in rnd.sample(range(n), 200)]
    qv = get_embedder().embed(qtexts)
    index = ann.PersonIndex(ann.RAG, "user_real", MODEL, threshold=0)
    index.upsert([str(i) for i in range(n)], vecs)
    hits = same_top = 0
    for q in qv:
        want = exact_top(vecs, q, 10)
        got = [int(i) for i, _ in index.search(q, 10)]
        hits += len(set(got) & {int(i) for i in want})
        same_top += got[0] == int(want[0])
    print(f"  recall@10 HNSW vs exact: {hits / (10 * len(qv)):.4f}; same top hit: {same_top / len(qv):.3f}")
    emit("rag", f"real MiniLM embeddings, {n:,} chunks: HNSW recall@10", hits / (10 * len(qv)), "recall",
         baseline=1.0, baseline_label="exact search (the truth)")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--million", action="store_true", help="also the index alone at 1,000,000 vectors (~2 GB)")
    parser.add_argument("--grounding", type=int, default=100_000)
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: index,rag,grounding,real")
    parser.add_argument("--real", type=int, default=2000, help="chunks embedded by MiniLM in part 4")
    parser.add_argument("--quick", action="store_true", help="10k vectors and chunks, 10k messages, 50 queries, 300 real chunks")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.queries, args.grounding, args.real = "10000", min(args.queries, 50), 10_000, 300
    sizes = [int(s) for s in args.sizes.split(",") if s]
    skip = set(args.skip.split(","))
    if "index" not in skip:
        part_index(sizes + ([1_000_000] if args.million else []), args.queries)
    with tempfile.TemporaryDirectory(prefix="bench-rag-") as tmp:
        url = f"sqlite+aiosqlite:///{tmp}/hub.db"
        await migrate(url)
        engine = create_engine(url)
        try:
            if "rag" not in skip:
                await part_rag(engine, sizes, args.queries, Path(tmp))
            if "grounding" not in skip:
                await part_grounding(engine, args.grounding, args.queries, Path(tmp))
            if "real" not in skip:
                await part_real(engine, Path(tmp), args.real)
        finally:
            await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
