"""Storage module (/api/storage/*): what a person's data takes on disk, cleanup, and sessions.

A *session* (task) here is long-running work the hub tracks for a person, listed from where it
is tracked (no extra table):
- `rag-upload`: a resumable chunked RAG upload (`rag_uploads` and its parts on disk) while it
  waits for chunks; DELETE abandons it (row and parts go, its quota room is freed).
- `rag-job`: an async RAG upload (`rag_documents.job_id`) and its extraction/embedding status;
  DELETE cancels one still running (the document, its chunks and vectors go); a finished job
  answers 409 (delete the document at /api/rag/documents/{id} instead).

Cleanup removes only the caller's data, and only: chunked upload sessions older than
`olderThanHours` (default 24); orphaned bytes (a stored file, RAG document or upload folder
with no row) and temporary `.*.tmp` files, both untouched for ORPHAN_GRACE_S (an upload in
flight writes its bytes before its row); and file rows whose bytes are gone. `dryRun` lists
the same without removing anything.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import Field
from starlette.requests import Request
from starlette.routing import Route

from ai import ann
from ai.rag import files as rag_files
from ai.rag import store as rag_store
from ai.uploads import upload_dir as ai_upload_dir
from ai.workspace import paths as ws_paths
from api.auth import Principal, hub_of
from api.endpoint import endpoint
from api.errors import ApiError, not_found
from api.routes.files import file_path, files_root
from api.routes.messages import iso
from api.schemas import Body
from loomi.hub import Hub
from store.ids import now_ms
from store.schema import files as files_table
from store.schema import rag_documents, rag_uploads, skills

ORPHAN_GRACE_S = 3600
_ID = re.compile(r"^[a-z]+_[A-Za-z0-9]+$")
RULES = [
    "chunked RAG upload sessions older than olderThanHours (rows and parts)",
    f"orphaned bytes (stored files, RAG documents, upload folders with no row) untouched for {ORPHAN_GRACE_S} s",
    f"temporary .*.tmp files untouched for {ORPHAN_GRACE_S} s",
    "file records whose bytes are missing",
]


def skills_dir(hub: Hub, user_id: str) -> Path:
    return Path(hub.settings.home) / "skills" / user_id


def tree_size(path: Path) -> tuple[int, int]:
    """(bytes, files) under a folder, links not followed."""
    return ws_paths.used_bytes(path)


async def database_bytes(hub: Hub) -> dict[str, Any]:
    async with hub.engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            size = (await conn.execute(sa.text("SELECT pg_database_size(current_database())"))).scalar_one()
        else:
            pages = (await conn.execute(sa.text("PRAGMA page_count"))).scalar_one()
            page = (await conn.execute(sa.text("PRAGMA page_size"))).scalar_one()
            size = int(pages) * int(page)
        return {"dialect": conn.dialect.name, "bytes": int(size)}


@endpoint()
async def disk_usage(request: Request, user: Principal):
    """Bytes the person's data takes: files, RAG, AI uploads, workspace, skills (database size for the owner)."""
    hub = hub_of(request)
    home = Path(hub.settings.home)

    def measure() -> dict[str, tuple[int, int]]:
        return {
            "files": tree_size(files_root(hub) / user.id),
            "rag": tree_size(rag_files.user_dir(home, user.id)),
            "uploads": tree_size(ai_upload_dir(hub, user.id)),
            "workspace": tree_size(ws_paths.root_of(home, user.id)),
            "skills": tree_size(skills_dir(hub, user.id)),
        }

    sizes = await asyncio.to_thread(measure)
    async with hub.engine.connect() as conn:
        docs = (await conn.execute(sa.select(sa.func.count()).where(rag_documents.c.user_id == user.id))).scalar_one()
        skill_rows = (await conn.execute(sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(sa.func.length(skills.c.content)), 0))
                                         .where(skills.c.user_id == user.id))).one()
    out: dict[str, Any] = {key: {"bytes": size, "count": count} for key, (size, count) in sizes.items()}
    out["rag"]["documents"] = int(docs)
    out["skills"]["skills"] = int(skill_rows[0])
    out["skills"]["contentBytes"] = int(skill_rows[1])
    total = sum(size for size, _c in sizes.values())
    database = await database_bytes(hub) if user.user.get("is_owner") else None
    return {"success": True, "usage": out, "totalBytes": total, "quotaBytes": hub.settings.user_quota_bytes, "database": database}


class CleanupBody(Body):
    dry_run: bool = Field(default=False, alias="dryRun")
    older_than_hours: int = Field(default=24, ge=1, le=24 * 365, alias="olderThanHours")


def _old(path: Path, now: float) -> bool:
    try:
        return now - path.lstat().st_mtime > ORPHAN_GRACE_S
    except FileNotFoundError:
        return False


def _size(path: Path) -> int:
    if path.is_dir() and not path.is_symlink():
        return tree_size(path)[0]
    try:
        return path.lstat().st_size
    except FileNotFoundError:
        return 0


def find_orphans(hub: Hub, user_id: str, file_ids: set[str], doc_ids: set[str], upload_ids: set[str]) -> list[tuple[str, Path]]:
    """(kind, path) of orphaned bytes and stale temp files in the person's folders."""
    now = time.time()
    home = Path(hub.settings.home)
    found: list[tuple[str, Path]] = []
    folders = [(files_root(hub) / user_id, file_ids), (rag_files.user_dir(home, user_id), doc_ids),
               (rag_files.user_dir(home, user_id) / "uploads", upload_ids)]
    for folder, known in folders:
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder):
            path = Path(entry.path)
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                if _old(path, now):
                    found.append(("tempFile", path))
            elif _ID.match(entry.name) and entry.name not in known and not entry.is_symlink() and _old(path, now):
                if entry.is_file() or (entry.is_dir() and folder.name == "uploads"):
                    found.append(("orphanedFile", path))
    workspace = ws_paths.root_of(home, user_id)
    for folder, _dirs, names in os.walk(workspace, followlinks=False):
        for name in names:
            path = Path(folder) / name
            if name.startswith(".") and name.endswith(".tmp") and _old(path, now):
                found.append(("tempFile", path))
    return found


@endpoint(body=CleanupBody)
async def cleanup(request: Request, user: Principal, body: CleanupBody):
    """Remove stale upload sessions, orphaned bytes, temp files, dangling file rows (`dryRun` only lists): what went, and how much."""
    hub = hub_of(request)
    home = Path(hub.settings.home)
    cutoff = now_ms() - body.older_than_hours * 3_600_000
    async with hub.engine.connect() as conn:
        uploads = (await conn.execute(sa.select(rag_uploads.c.id, rag_uploads.c.created_at).where(rag_uploads.c.user_id == user.id))).all()
        doc_ids = set((await conn.execute(sa.select(rag_documents.c.id).where(rag_documents.c.user_id == user.id))).scalars())
        file_rows = (await conn.execute(sa.select(files_table.c.id).where(files_table.c.user_id == user.id))).scalars().all()
    upload_ids = {row.id for row in uploads}
    expired = [row.id for row in uploads if row.created_at < cutoff]
    items: list[dict[str, Any]] = []
    for upload_id in expired:
        folder = rag_files.upload_dir(home, user.id, upload_id)
        items.append({"kind": "expiredUploadSession", "id": upload_id, "bytes": await asyncio.to_thread(_size, folder)})
    orphans = await asyncio.to_thread(find_orphans, hub, user.id, set(file_rows), doc_ids, upload_ids)
    for kind, path in orphans:
        items.append({"kind": kind, "id": path.name, "bytes": await asyncio.to_thread(_size, path)})
    missing = [fid for fid in file_rows if not file_path(hub, user.id, fid).exists()]
    items += [{"kind": "missingFileRecord", "id": fid, "bytes": 0} for fid in missing]
    if not body.dry_run:
        async with hub.engine.begin() as conn:
            if expired:
                await conn.execute(rag_uploads.delete().where(rag_uploads.c.user_id == user.id, rag_uploads.c.id.in_(expired)))
            if missing:
                await conn.execute(files_table.delete().where(files_table.c.user_id == user.id, files_table.c.id.in_(missing)))
        for upload_id in expired:
            await asyncio.to_thread(rag_files.remove_tree, rag_files.upload_dir(home, user.id, upload_id))
        for _kind, path in orphans:
            await asyncio.to_thread(_remove, path)
    counts = {kind: 0 for kind in ("expiredUploadSession", "orphanedFile", "tempFile", "missingFileRecord")}
    for item in items:
        counts[item["kind"]] += 1
    return {
        "success": True,
        "dryRun": body.dry_run,
        "removes": RULES,
        "removed": counts,
        "freedBytes": sum(item["bytes"] for item in items),
        "items": items,
    }


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _upload_session(row: Any, received: list[int]) -> dict[str, Any]:
    total = max(1, -(-row.size_bytes // row.chunk_size))
    return {"taskId": row.id, "kind": "rag-upload", "status": "receiving", "done": False, "name": row.file_name,
            "progress": {"done": len(received), "total": total}, "sizeBytes": row.size_bytes,
            "createdAt": iso(row.created_at), "updatedAt": iso(row.created_at)}


def _job_session(row: Any) -> dict[str, Any]:
    done = row.status == rag_store.READY or row.status.startswith("failed")
    return {"taskId": row.job_id, "kind": "rag-job", "status": row.status, "done": done, "name": row.name,
            "progress": {"done": row.embedded_count, "total": row.chunk_count}, "sizeBytes": row.size_bytes,
            "documentId": row.id, "createdAt": iso(row.created_at), "updatedAt": iso(row.updated_at)}


def _sizes(row: Any) -> list[int]:
    count = max(1, -(-row.size_bytes // row.chunk_size))
    return [min(row.chunk_size, row.size_bytes - i * row.chunk_size) for i in range(count)]


async def _upload_json(hub: Hub, user_id: str, row: Any) -> dict[str, Any]:
    folder = rag_files.upload_dir(Path(hub.settings.home), user_id, row.id)
    return _upload_session(row, await asyncio.to_thread(rag_files.received_parts, folder, _sizes(row)))


@endpoint()
async def list_sessions(request: Request, user: Principal):
    """The person's tasks (chunked RAG uploads, async RAG jobs), newest first: `{sessions, total}`."""
    hub = hub_of(request)
    async with hub.engine.connect() as conn:
        uploads = (await conn.execute(rag_uploads.select().where(rag_uploads.c.user_id == user.id))).all()
        jobs = (await conn.execute(rag_documents.select().where(rag_documents.c.user_id == user.id, rag_documents.c.job_id.is_not(None))
                                   .order_by(rag_documents.c.created_at.desc()).limit(500))).all()
    sessions = [await _upload_json(hub, user.id, row) for row in uploads] + [_job_session(row) for row in jobs]
    sessions.sort(key=lambda s: (s["createdAt"] or "", s["taskId"]), reverse=True)
    return {"success": True, "sessions": sessions, "total": len(sessions)}


def session_not_found() -> ApiError:
    return not_found("Session not found", "session_not_found")


async def _find(hub: Hub, user_id: str, task_id: str) -> tuple[str, Any]:
    if len(task_id) > 40 or not _ID.match(task_id):
        raise session_not_found()
    async with hub.engine.connect() as conn:
        row = (await conn.execute(rag_uploads.select().where(rag_uploads.c.user_id == user_id, rag_uploads.c.id == task_id))).first()
        if row is not None:
            return "rag-upload", row
        row = (await conn.execute(rag_documents.select().where(rag_documents.c.user_id == user_id, rag_documents.c.job_id == task_id))).first()
    if row is None:
        raise session_not_found()
    return "rag-job", row


@endpoint()
async def get_session(request: Request, user: Principal):
    """One task by id: `{session}`; another person's id is a 404."""
    hub = hub_of(request)
    kind, row = await _find(hub, user.id, request.path_params["taskId"])
    return {"success": True, "session": await _upload_json(hub, user.id, row) if kind == "rag-upload" else _job_session(row)}


@endpoint()
async def delete_session(request: Request, user: Principal):
    """Abandon a chunked upload or cancel a running async job: `{success, deleted, kind}`."""
    hub = hub_of(request)
    task_id = request.path_params["taskId"]
    kind, row = await _find(hub, user.id, task_id)
    home = Path(hub.settings.home)
    if kind == "rag-upload":
        async with hub.engine.begin() as conn:
            await conn.execute(rag_uploads.delete().where(rag_uploads.c.id == row.id, rag_uploads.c.user_id == user.id))
        await asyncio.to_thread(rag_files.remove_tree, rag_files.upload_dir(home, user.id, row.id))
        return {"success": True, "deleted": task_id, "kind": kind}
    if _job_session(row)["done"]:
        raise ApiError(409, "The job has finished", "session_finished",
                       f"its document stays: delete it with DELETE /api/rag/documents/{row.id}")
    async with hub.engine.begin() as conn:
        chunk_ids = await rag_store.delete_document(conn, user.id, row.id)
    for index in ann.attach(hub).loaded(ann.RAG, user.id):
        index.remove(chunk_ids or [])
    await asyncio.to_thread(rag_files.document_path(home, user.id, row.id).unlink, True)
    return {"success": True, "deleted": task_id, "kind": kind, "documentId": row.id}


routes = [
    Route("/api/storage/disk-usage", disk_usage, methods=["GET"]),
    Route("/api/storage/cleanup", cleanup, methods=["POST"]),
    Route("/api/storage/sessions", list_sessions, methods=["GET"]),
    Route("/api/storage/sessions/{taskId}", get_session, methods=["GET"]),
    Route("/api/storage/sessions/{taskId}", delete_session, methods=["DELETE"]),
]
