"""Hybrid search over one person's messages: full-text keywords + vectors, fused by rank.

Keywords find exact names, numbers and rare words that embeddings blur; vectors find
paraphrases keywords miss. Reciprocal rank fusion (k=60) merges the two rankings without
having to calibrate BM25 against cosine. Every query is filtered by `user_id` first and the
scope second, in SQL, so another user's messages are never even read.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ai import vectors
from store.schema import message_embeddings, messages

RRF_K = 60
MAX_TERMS = 16
MIN_VECTOR_SCORE = 0.25  # below this MiniLM cosine, a hit is noise (unrelated pairs ~0.0-0.2)
MAX_VECTOR_CANDIDATES = 20_000  # newest vectors scanned per query in a narrow scope (scan_search)
MAX_ANN_K = 4096  # neighbours asked of the vector index before a narrow scope falls back to a scan

STOPWORDS = frozenset(
    "a an and are as at be been but by can could did do does for from had has have he her him his how i if in "
    "into is it its me my no not of on or our she so than that the their them then there these they this to "
    "was we were what when where which who why will with would you your about any all also just me please tell "
    "said say says".split()
)
_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class Scope:
    """Which of the person's messages a question is about (all of them by default)."""

    chat_id: str | None = None
    platform: str | None = None
    account_id: str | None = None
    since: int | None = None  # milliseconds since the epoch

    def filters(self, user_id: str) -> list[Any]:
        m = messages
        where: list[Any] = [m.c.user_id == user_id, m.c.deleted_at.is_(None)]
        if self.chat_id is not None:
            where.append(m.c.chat_id == self.chat_id)
        if self.platform is not None:
            where.append(m.c.platform == self.platform)
        if self.account_id is not None:
            where.append(m.c.account_id == self.account_id)
        if self.since is not None:
            where.append(m.c.sent_at >= self.since)
        return where

    def matches(self, row: Any, user_id: str) -> bool:
        """`filters` for one fetched row (its user_id, deleted_at, chat_id, platform, account_id,
        sent_at): candidates from the vector index are fetched by primary key alone, because a
        `user_id = ?` beside `id IN (…)` lets SQLite pick the owner index and read every message."""
        return (
            row.user_id == user_id
            and row.deleted_at is None
            and (self.chat_id is None or row.chat_id == self.chat_id)
            and (self.platform is None or row.platform == self.platform)
            and (self.account_id is None or row.account_id == self.account_id)
            and (self.since is None or row.sent_at >= self.since)
        )


def terms(query: str) -> list[str]:
    seen: list[str] = []
    for word in _WORD.findall(query.lower()):
        if word not in STOPWORDS and word not in seen and (len(word) > 1 or word.isdigit()):
            seen.append(word)
    return seen[:MAX_TERMS]


def fts5_query(words: list[str]) -> str:
    """OR of quoted terms (quoting neutralises FTS5 syntax); prefix match from 3 letters."""
    return " OR ".join(f'"{w}"*' if len(w) >= 3 else f'"{w}"' for w in words)


def tsquery(words: list[str]) -> str:
    return " | ".join(f"{w}:*" if len(w) >= 3 else w for w in words)


async def keyword_search(conn: AsyncConnection, user_id: str, query: str, scope: Scope, limit: int = 50) -> list[str]:
    words = terms(query)
    if not words:
        return []
    m = messages
    if conn.dialect.name == "postgresql":
        vector = sa.func.to_tsvector(sa.literal_column("'simple'"), m.c.text)
        parsed = sa.func.to_tsquery(sa.literal_column("'simple'"), tsquery(words))
        stmt = (
            sa.select(m.c.id)
            .where(*scope.filters(user_id), vector.op("@@")(parsed))
            .order_by(sa.func.ts_rank(vector, parsed).desc(), m.c.sent_at.desc())
            .limit(limit)
        )
    else:
        stmt = (
            sa.select(m.c.id)
            .select_from(m.join(sa.table("messages_fts"), sa.text("messages_fts.rowid = messages.rowid")))
            .where(*scope.filters(user_id), sa.text("messages_fts MATCH :fts").bindparams(fts=fts5_query(words)))
            .order_by(sa.text("bm25(messages_fts)"), m.c.sent_at.desc())
            .limit(limit)
        )
    return [row.id for row in await conn.execute(stmt)]


async def vector_search(
    conn: AsyncConnection, user_id: str, query_vector: Any, model: str, scope: Scope, limit: int = 50
) -> list[tuple[str, float]]:
    """Nearest messages in scope through the person's vector index (ai/ann.py), which holds all
    of their messages. The neighbours are checked against the scope in SQL (deleted messages,
    chat, platform, time); a narrow scope that the nearest overall miss is searched exactly, and
    so is everything while a cold index is still being built."""
    from ai import ann

    index = await ann.registry(conn.engine).ready(conn.engine, ann.MESSAGES, user_id, model)
    k = max(4 * limit, 100)
    while index is not None and index.live:
        found = [(mid, s) for mid, s in await asyncio.to_thread(index.search, query_vector, k) if s >= MIN_VECTOR_SCORE]
        if not found:
            return []
        m = messages
        fetched = await conn.execute(
            sa.select(m.c.id, m.c.user_id, m.c.deleted_at, m.c.chat_id, m.c.platform, m.c.account_id, m.c.sent_at)
            .where(m.c.id.in_([mid for mid, _ in found]))
        )
        allowed = {row.id for row in fetched if scope.matches(row, user_id)}
        hits = [(mid, s) for mid, s in found if mid in allowed]
        if len(hits) >= limit or len(found) < k or k >= index.live:
            return hits[:limit]
        if k >= MAX_ANN_K:
            break
        k = min(4 * k, MAX_ANN_K)
    return await scan_search(conn, user_id, query_vector, model, scope, limit)


async def scan_search(
    conn: AsyncConnection, user_id: str, query_vector: Any, model: str, scope: Scope, limit: int = 50
) -> list[tuple[str, float]]:
    """Exact search over the newest MAX_VECTOR_CANDIDATES vectors in scope: for narrow scopes."""
    e, m = message_embeddings, messages
    stmt = (
        sa.select(e.c.message_id, e.c.dims, e.c.vector)
        .select_from(e.join(m, m.c.id == e.c.message_id))
        .where(e.c.user_id == user_id, e.c.model == model, *scope.filters(user_id))
        .order_by(m.c.sent_at.desc())
        .limit(MAX_VECTOR_CANDIDATES)
    )
    rows = (await conn.execute(stmt)).all()
    if not rows:
        return []
    dims = int(rows[0].dims)
    rows = [row for row in rows if int(row.dims) == dims]
    found = vectors.top_k(query_vector, vectors.matrix([row.vector for row in rows], dims), limit, MIN_VECTOR_SCORE)
    return [(rows[i].message_id, score) for i, score in found]


def rrf(rankings: list[list[str]], k: int = RRF_K) -> list[tuple[str, float]]:
    """Reciprocal rank fusion: score(d) = sum over rankings of 1 / (k + rank), rank from 1."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))


def _query_vector(query: str) -> tuple[Any, str] | None:
    from ai.local.embeddings import ModelNotInstalledError, get_embedder

    try:
        embedder = get_embedder()
    except ModelNotInstalledError:
        return None
    return embedder.embed([query])[0], embedder.model


async def hybrid_search(conn: AsyncConnection, user_id: str, query: str, scope: Scope, limit: int = 8) -> list[dict[str, Any]]:
    """The `limit` most relevant of the user's messages in scope, best first, with their rows."""
    if not query.strip():
        return []
    keyword_ids = await keyword_search(conn, user_id, query, scope)
    embedded = await asyncio.to_thread(_query_vector, query)
    vector_ids: list[str] = []
    if embedded is not None:
        vector_ids = [mid for mid, _ in await vector_search(conn, user_id, embedded[0], embedded[1], scope)]
    fused = rrf([keyword_ids, vector_ids])[:limit]
    if not fused:
        return []
    m = messages
    rows = await conn.execute(sa.select(m).where(m.c.id.in_([mid for mid, _ in fused])))  # by primary key alone (Scope.matches)
    by_id = {row.id: dict(row._mapping) for row in rows if row.user_id == user_id}
    return [{**by_id[mid], "score": score} for mid, score in fused if mid in by_id]
