"""One vector index per person and kind (message embeddings, RAG chunks): exact below a
threshold, HNSW (hnswlib) above it.

The database stays the source of truth; an index is a cache that any process can rebuild from
it or load from LOOMI_HOME and bring up to date. That is what several worker processes or
machines need: nobody owns the index, nobody has to tell anybody else. Each process keeps its
own copy, and before answering a query (at most every SYNC_SECONDS) compares it with the
database: one `count(*), max(written_at)` over the person's rows. New or re-embedded rows
(written after the index's watermark, less SLACK_MS for commits that land late or clocks that
differ between machines) are added; when the counts still differ, rows were deleted, and a
pass over the ids alone finds which. The writers in this process (ai/indexer.py, the RAG
embedding job) refresh the loaded indexes they touched right after committing.

Below `LOOMI_VECTOR_ANN_THRESHOLD` vectors a person's index is an exact matrix (one matmul;
a graph is not worth building), above it an HNSW graph; it moves across when it grows. HNSW
graphs are saved under `$LOOMI_HOME/vector-index/<user>/` (written to a fresh name, then the
metadata renamed over, so a reader never sees half a file); a load is followed by the same
catch-up as above, so a file written by another process is as good as one's own.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from ai import vectors
from store.schema import message_embeddings, rag_chunks

log = logging.getLogger("loomi.ai.ann")

SYNC_SECONDS = 1.0
SLACK_MS = 5 * 60_000
PAGE = 20_000
M = 16
EF_CONSTRUCTION = 100
EF_SEARCH = 96
DEFAULT_THRESHOLD = 5000
MAX_LOADED = 32
BUILD_WAIT_SECONDS = 2.0  # how long a query waits for a cold index before scanning instead


@dataclass(frozen=True)
class Source:
    """Where one kind of vector lives: table and column names."""

    kind: str
    table: sa.Table
    id: str
    written: str  # when the vector was (re)written, ms

    def cols(self) -> Any:
        return self.table.c

    def where(self, user_id: str, model: str) -> list[Any]:
        """The person's vectors of one model (a chunk has a model once it is embedded); the
        (user_id, model, written) index answers count and max without reading a row."""
        c = self.table.c
        return [c.user_id == user_id, c.model == model]


MESSAGES = Source("messages", message_embeddings, "message_id", "created_at")
RAG = Source("rag", rag_chunks, "id", "embedded_at")


class PersonIndex:
    """The vectors of one (kind, person, model); thread-safe: search runs in worker threads."""

    def __init__(self, source: Source, user_id: str, model: str, threshold: int) -> None:
        self.source, self.user_id, self.model, self.threshold = source, user_id, model, threshold
        self.lock = threading.Lock()
        self.refreshing = asyncio.Lock()
        self.ids: list[str | None] = []  # label -> id (None: removed)
        self.labels: dict[str, int] = {}
        self.dims = 0
        self.matrix = np.zeros((0, 0), dtype=np.float32)  # exact mode rows (by label)
        self.alive = np.zeros(0, dtype=bool)
        self.hnsw: Any = None
        self.removed = 0  # labels marked deleted in the graph
        self.watermark = -1
        self.checked_at = 0.0
        self.loaded = False
        self.task: asyncio.Task[None] | None = None  # the refresh under way, shared by concurrent queries
        self.from_disk = False  # the graph came from a saved file, not built from the database
        self.saved_changes = 0  # changes since the last save

    @property
    def live(self) -> int:
        return len(self.labels)

    @property
    def mode(self) -> str:
        return "hnsw" if self.hnsw is not None else "exact"

    # -- changes ------------------------------------------------------------------

    def upsert(self, ids: list[str], rows: np.ndarray) -> None:
        if not ids:
            return
        with self.lock:
            if self.dims == 0:
                self.dims = int(rows.shape[1])
                self.matrix = np.zeros((0, self.dims), dtype=np.float32)
            if rows.shape[1] != self.dims:
                raise ValueError(f"vectors of {rows.shape[1]} dims in an index of {self.dims}")
            labels = np.empty(len(ids), dtype=np.int64)
            for i, item in enumerate(ids):
                label = self.labels.get(item)
                if label is None:
                    label = len(self.ids)
                    self.ids.append(item)
                    self.labels[item] = label
                labels[i] = label
            self.saved_changes += len(ids)
            if self.hnsw is not None:
                self._hnsw_add(labels, rows)
            else:
                self._exact_put(labels, rows)
                if self.live >= self.threshold:
                    self._build_hnsw()

    def remove(self, ids: Iterable[str]) -> int:
        gone = 0
        with self.lock:
            for item in ids:
                label = self.labels.pop(item, None)
                if label is None:
                    continue
                self.ids[label] = None
                gone += 1
                if self.hnsw is not None:
                    self.hnsw.mark_deleted(label)
                    self.removed += 1
                else:
                    self.alive[label] = False
            self.saved_changes += gone
        return gone

    def _exact_put(self, labels: np.ndarray, rows: np.ndarray) -> None:
        need = int(labels.max()) + 1
        if need > self.matrix.shape[0]:
            capacity = max(need, 2 * self.matrix.shape[0], 1024)
            grown = np.zeros((capacity, self.dims), dtype=np.float32)
            grown[: self.matrix.shape[0]] = self.matrix
            alive = np.zeros(capacity, dtype=bool)
            alive[: self.alive.shape[0]] = self.alive
            self.matrix, self.alive = grown, alive
        self.matrix[labels] = rows
        self.alive[labels] = True

    def _hnsw_add(self, labels: np.ndarray, rows: np.ndarray) -> None:
        h = self.hnsw
        need = int(labels.max()) + 1
        if need > h.get_max_elements():
            h.resize_index(max(need, 2 * h.get_max_elements()))
        for label in labels:
            try:
                h.unmark_deleted(int(label))  # a re-added id: its old node comes back, updated
                self.removed -= 1
            except RuntimeError:
                pass
        h.add_items(rows, labels, num_threads=_threads() if len(labels) >= 1000 else 1)

    def _build_hnsw(self) -> None:
        import hnswlib

        live = np.flatnonzero(self.alive)
        h = hnswlib.Index(space="ip", dim=self.dims)
        h.init_index(max_elements=max(len(self.ids) * 2, 1024), ef_construction=EF_CONSTRUCTION, M=M)
        h.set_ef(EF_SEARCH)
        if len(live):
            h.add_items(self.matrix[live], live, num_threads=_threads())
        self.hnsw = h
        self.matrix = np.zeros((0, self.dims), dtype=np.float32)
        self.alive = np.zeros(0, dtype=bool)
        self.removed = 0

    # -- queries ------------------------------------------------------------------

    def search(self, query: np.ndarray, k: int) -> list[tuple[str, float]]:
        """The k nearest ids by cosine (vectors are normalized), best first."""
        with self.lock:
            k = min(k, self.live)
            if k <= 0:
                return []
            q = np.asarray(query, dtype=np.float32)
            if self.hnsw is None:
                rows = self.matrix[: len(self.ids)]
                found = vectors.top_k(q, rows, k + int((~self.alive[: len(self.ids)]).sum()))
                out = [(self.ids[i], s) for i, s in found if self.alive[i]]
                return [(item, s) for item, s in out if item is not None][:k]
            ef = max(EF_SEARCH, k)
            while True:
                self.hnsw.set_ef(ef)
                try:
                    labels, distances = self.hnsw.knn_query(q.reshape(1, -1), k=k, num_threads=1)
                    break
                except RuntimeError:  # fewer than k reachable (many deleted nodes): look wider, then ask less
                    if ef < 8 * max(k, EF_SEARCH):
                        ef *= 2
                    elif k > 1:
                        k //= 2
                    else:
                        return []
        return [(self.ids[int(l)], 1.0 - float(d)) for l, d in zip(labels[0], distances[0]) if self.ids[int(l)] is not None]  # type: ignore[misc]

    # -- persistence --------------------------------------------------------------

    def files(self, home: Path) -> tuple[Path, Path]:
        folder = home / "vector-index" / self.user_id
        stem = f"{self.source.kind}-{self.model}".replace("/", "_")
        return folder, folder / f"{stem}.json"

    def save(self, home: Path) -> bool:
        """Write the HNSW graph and its ids; exact-mode indexes are cheaper to rebuild than to read."""
        with self.lock:
            if self.hnsw is None:
                return False
            folder, meta_path = self.files(home)
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            graph = f"{meta_path.stem}.{secrets.token_hex(6)}.hnsw"
            self.hnsw.save_index(str(folder / graph))
            meta = {"v": 1, "dims": self.dims, "ids": self.ids, "watermark": self.watermark,
                    "removed": self.removed, "graph": graph, "capacity": self.hnsw.get_max_elements()}
            self.saved_changes = 0
        tmp = meta_path.with_suffix(f".{secrets.token_hex(6)}.tmp")
        tmp.write_bytes(orjson.dumps(meta))
        os.replace(tmp, meta_path)
        for old in folder.glob(f"{meta_path.stem}.*.hnsw"):
            if old.name != graph:
                old.unlink(missing_ok=True)
        return True

    def load(self, home: Path) -> bool:
        import hnswlib

        folder, meta_path = self.files(home)
        try:
            meta = orjson.loads(meta_path.read_bytes())
            h = hnswlib.Index(space="ip", dim=int(meta["dims"]))
            h.load_index(str(folder / meta["graph"]), max_elements=int(meta["capacity"]))
        except (OSError, ValueError, KeyError, RuntimeError, orjson.JSONDecodeError):
            return False
        h.set_ef(EF_SEARCH)
        with self.lock:
            self.hnsw, self.dims, self.ids = h, int(meta["dims"]), list(meta["ids"])
            self.labels = {item: label for label, item in enumerate(self.ids) if item is not None}
            self.removed, self.watermark = int(meta["removed"]), int(meta["watermark"])
        return True

    # -- keeping in step with the database ----------------------------------------

    @property
    def built(self) -> bool:
        """It has been brought in step with the database at least once."""
        return self.checked_at > 0

    async def refresh(self, engine: AsyncEngine, home: Path | None, force: bool = False) -> None:
        """Catch up with the database (on its own connection: it may outlive a request)."""
        if not force and self.built and time.monotonic() - self.checked_at < SYNC_SECONDS:
            return
        async with self.refreshing:
            if not force and self.built and time.monotonic() - self.checked_at < SYNC_SECONDS:
                return
            started = time.monotonic()
            s = self.source
            c = s.table.c
            where = s.where(self.user_id, self.model)
            async with engine.connect() as conn:
                count, newest = (await conn.execute(sa.select(sa.func.count(), sa.func.max(c[s.written])).where(*where))).one()
                count, newest = int(count or 0), int(newest or -1)
                if not self.loaded:
                    self.loaded = True
                    if home is not None and count >= self.threshold:
                        self.from_disk = await asyncio.to_thread(self.load, home)
                if count != self.live or newest > self.watermark:
                    await self._catch_up(conn, where, count)
                    self.watermark = max(self.watermark, newest)
                    if self.hnsw is not None and self.removed > max(1000, self.live):
                        await self._rebuild(conn, where)
            self.checked_at = max(started, 1e-9)

    async def _catch_up(self, conn: AsyncConnection, where: list[Any], count: int) -> None:
        s = self.source
        c = s.table.c
        since = self.watermark - SLACK_MS if self.live else None
        last = ""
        while True:  # pages in id order: bounded memory for a first build of a million rows
            cond = [*where, c[s.id] > last]
            if since is not None:
                cond.append(c[s.written] >= since)
            rows = (await conn.execute(sa.select(c[s.id], c.dims, c.vector).where(*cond).order_by(c[s.id]).limit(PAGE))).all()
            if not rows:
                break
            await asyncio.to_thread(self._absorb, rows)  # a graph insert is CPU work: off the event loop
            last = rows[-1][0]
        if count != self.live:  # deletions, or rows the watermark missed: compare ids
            present = {row[0] for row in await conn.execute(sa.select(c[s.id]).where(*where))}
            self.remove([item for item in list(self.labels) if item not in present])
            missing = [item for item in present if item not in self.labels]
            for i in range(0, len(missing), 500):
                part = missing[i : i + 500]
                found = (await conn.execute(sa.select(c[s.id], c.dims, c.vector).where(*where, c[s.id].in_(part)))).all()
                await asyncio.to_thread(self._absorb, found)

    def _absorb(self, rows: list[Any]) -> None:
        if not rows:
            return
        dims = self.dims or int(rows[0][1])
        rows = [r for r in rows if int(r[1]) == dims]
        self.upsert([r[0] for r in rows], vectors.matrix([r[2] for r in rows], dims))

    async def _rebuild(self, conn: AsyncConnection, where: list[Any]) -> None:
        """Too many deleted nodes in the graph: start again from the database."""
        with self.lock:
            self.ids, self.labels, self.hnsw, self.removed, self.dims = [], {}, None, 0, 0
            self.matrix, self.alive = np.zeros((0, 0), dtype=np.float32), np.zeros(0, dtype=bool)
        self.watermark = -1
        await self._catch_up(conn, where, -1)


def _threads() -> int:
    return max(1, min(4, (os.cpu_count() or 1)))


class Registry:
    """This process's indexes, most recently used kept (MAX_LOADED), persisted under `home`."""

    def __init__(self, home: Path | None = None, threshold: int = DEFAULT_THRESHOLD) -> None:
        self.home, self.threshold = home, threshold
        self.indexes: OrderedDict[tuple[str, str, str], PersonIndex] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, source: Source, user_id: str, model: str) -> PersonIndex:
        key = (source.kind, user_id, model)
        with self.lock:
            index = self.indexes.get(key)
            if index is None:
                index = self.indexes[key] = PersonIndex(source, user_id, model, self.threshold)
                while len(self.indexes) > MAX_LOADED:
                    self.indexes.popitem(last=False)
            self.indexes.move_to_end(key)
            return index

    def loaded(self, source: Source, user_id: str) -> list[PersonIndex]:
        with self.lock:
            return [ix for (kind, user, _), ix in self.indexes.items() if kind == source.kind and user == user_id]

    async def ready(self, engine: AsyncEngine, source: Source, user_id: str, model: str,
                    wait: float | None = None) -> PersonIndex | None:
        """The person's index, in step with the database; None while its first build (a cold
        cache of many vectors) takes longer than `wait`: the caller scans instead, and the build
        goes on in the background. A refresh that runs long leaves the index one step behind."""
        index = self.get(source, user_id, model)
        if index.task is None or index.task.done():
            if index.built and time.monotonic() - index.checked_at < SYNC_SECONDS:
                return index
            index.task = asyncio.create_task(index.refresh(engine, self.home), name=f"vector-index-{source.kind}")
        try:
            await asyncio.wait_for(asyncio.shield(index.task), BUILD_WAIT_SECONDS if wait is None else wait)
        except asyncio.TimeoutError:
            pass
        except Exception:  # noqa: BLE001 - a cache: a failed refresh leaves the last good state
            log.warning("vector index refresh failed for %s", source.kind, exc_info=True)
        return index if index.built else None

    async def touched(self, engine: AsyncEngine, source: Source, user_ids: Iterable[str]) -> None:
        """Writers call this after committing: loaded indexes catch up now, and are saved when
        they changed a lot since their last save."""
        for user_id in set(user_ids):
            for index in self.loaded(source, user_id):
                if not index.built:
                    continue  # its first build (running or to come) reads the new rows anyway
                await index.refresh(engine, self.home, force=True)
                if self.home is not None and index.mode == "hnsw" and index.saved_changes >= max(1000, index.live // 10):
                    await asyncio.to_thread(index.save, self.home)

    async def save_all(self) -> None:
        if self.home is None:
            return
        for index in list(self.indexes.values()):
            if index.saved_changes:
                await asyncio.to_thread(index.save, self.home)


_registries: dict[str, Registry] = {}


def registry(engine: AsyncEngine, home: Path | None = None, threshold: int | None = None) -> Registry:
    """The registry of the database behind `engine`; the hub's settings, once given, stick."""
    key = engine.url.render_as_string(hide_password=True)
    found = _registries.get(key)
    if found is None:
        found = _registries[key] = Registry(home, DEFAULT_THRESHOLD if threshold is None else threshold)
    else:
        if home is not None and found.home is None:
            found.home = home
        if threshold is not None:
            found.threshold = threshold
    return found


def attach(hub: Any) -> Registry:
    """The hub's registry, persisted under its LOOMI_HOME with its threshold."""
    return registry(hub.engine, Path(hub.settings.home), hub.settings.vector_ann_threshold)
