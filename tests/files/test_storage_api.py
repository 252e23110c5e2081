"""/api/storage/* through the real app on SQLite and PostgreSQL: disk usage per area (database
size for the owner only), cleanup of exactly what it says (dry run changes nothing), and
sessions: chunked RAG uploads and async RAG jobs, listed, read, abandoned or cancelled, and
never visible to anyone else."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from ai.rag import files as rag_files
from ai.rag import jobs
from api.routes.files import files_root
from store.schema import files as files_table
from store.schema import rag_documents, rag_uploads
from tests.api.test_bad_input import assert_seed_400
from tests.conftest import register
from tests.rag import docs

OLD = time.time() - 2 * 3600  # older than the cleanup's one-hour grace


async def init_upload(client: httpx.AsyncClient, user: dict[str, Any], data: bytes, name: str = "notes.txt") -> dict[str, Any]:
    r = await client.post("/api/rag/upload/init", json={"fileName": name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                                                        "contentType": "text/plain", "chunkSize": 1024}, headers=user["headers"])
    assert r.status_code == 200, r.text
    return r.json()


async def send_chunk(client: httpx.AsyncClient, user: dict[str, Any], upload_id: str, index: int, data: bytes) -> None:
    r = await client.post("/api/rag/upload/chunk", data={"uploadId": upload_id, "index": str(index)},
                          files={"chunk": ("c", data, "application/octet-stream")}, headers=user["headers"])
    assert r.status_code == 200, r.text


async def test_disk_usage_counts_each_area(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    h = user["headers"]
    empty = (await client.get("/api/storage/disk-usage", headers=h)).json()
    assert empty["totalBytes"] == 0 and empty["database"] is None  # not the owner: no database size
    await client.post("/api/files/save", json={"name": "a.txt", "content": "x" * 100}, headers=h)
    await client.put("/api/workspace/file/notes/a.md", content=b"y" * 40, headers=h)
    r = await client.post("/api/rag/upload", files={"file": ("n.txt", docs.txt("zqword"), "text/plain")}, headers=h)
    assert r.status_code == 200, r.text
    await client.post("/api/workspace/skills", json={"name": "s1", "description": "d", "content": "body"}, headers=h)
    u = (await client.get("/api/storage/disk-usage", headers=h)).json()
    assert u["usage"]["files"] == {"bytes": 100, "count": 1}
    assert u["usage"]["workspace"] == {"bytes": 40, "count": 1}
    assert u["usage"]["rag"]["bytes"] == len(docs.txt("zqword")) and u["usage"]["rag"]["documents"] == 1
    assert u["usage"]["skills"]["skills"] == 1 and u["usage"]["uploads"] == {"bytes": 0, "count": 0}
    assert u["totalBytes"] == 140 + len(docs.txt("zqword")) and u["quotaBytes"] == hub.settings.user_quota_bytes


async def test_owner_sees_the_database_size(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    async with hub.engine.begin() as conn:  # make this test's user the owner (what `loomi serve`'s local owner is)
        await conn.execute(sa.text("UPDATE users SET is_owner = :t WHERE id = :id"), {"t": True, "id": user["user"]["id"]})
    try:
        u = (await client.get("/api/storage/disk-usage", headers=user["headers"])).json()
        assert u["database"]["dialect"] == hub.engine.dialect.name and u["database"]["bytes"] > 10_000
    finally:
        async with hub.engine.begin() as conn:
            await conn.execute(sa.text("UPDATE users SET is_owner = :f WHERE id = :id"), {"f": False, "id": user["user"]["id"]})


async def test_sessions_list_get_and_abandon_a_chunked_upload(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    h = user["headers"]
    data = os.urandom(2500)
    up = await init_upload(client, user, data)
    await send_chunk(client, user, up["uploadId"], 1, data[1024:2048])
    listed = (await client.get("/api/storage/sessions", headers=h)).json()
    (s,) = listed["sessions"]
    assert s["taskId"] == up["uploadId"] and s["kind"] == "rag-upload" and s["progress"] == {"done": 1, "total": 3}
    assert s["name"] == "notes.txt" and s["done"] is False
    got = (await client.get(f"/api/storage/sessions/{up['uploadId']}", headers=h)).json()["session"]
    assert got == s

    other = await register(client)
    assert (await client.get("/api/storage/sessions", headers=other["headers"])).json()["sessions"] == []
    for method in ("GET", "DELETE"):
        r = await client.request(method, f"/api/storage/sessions/{up['uploadId']}", headers=other["headers"])
        assert r.status_code == 404 and r.json()["code"] == "session_not_found"

    folder = rag_files.upload_dir(Path(hub.settings.home), user["user"]["id"], up["uploadId"])
    assert folder.is_dir()
    d = await client.delete(f"/api/storage/sessions/{up['uploadId']}", headers=h)
    assert d.status_code == 200 and d.json()["kind"] == "rag-upload"
    assert not folder.exists()
    async with hub.engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(rag_uploads).where(rag_uploads.c.id == up["uploadId"]))).scalar_one() == 0
    assert (await client.get(f"/api/storage/sessions/{up['uploadId']}", headers=h)).status_code == 404
    for bad in ("x" * 41, "nope", "upl_%2e%2e"):
        assert (await client.get(f"/api/storage/sessions/{bad}", headers=h)).status_code == 404


async def test_async_rag_job_is_a_session_and_can_be_cancelled_until_done(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    h = user["headers"]
    a = await client.post("/api/rag/upload/async", files={"file": ("a.txt", docs.txt("zqone"), "text/plain")}, headers=h)
    b = await client.post("/api/rag/upload/async", files={"file": ("b.txt", docs.txt("zqtwo"), "text/plain")}, headers=h)
    job_a, job_b = a.json()["jobId"], b.json()["jobId"]
    sessions = {s["taskId"]: s for s in (await client.get("/api/storage/sessions", headers=h)).json()["sessions"]}
    assert set(sessions) == {job_a, job_b} and sessions[job_a]["kind"] == "rag-job" and sessions[job_a]["done"] is False

    c = await client.delete(f"/api/storage/sessions/{job_a}", headers=h)  # cancelled before the worker ran it
    assert c.status_code == 200 and c.json()["kind"] == "rag-job"
    doc_a = c.json()["documentId"]
    assert (await client.get(f"/api/rag/documents/{doc_a}", headers=h)).status_code == 404
    assert not rag_files.document_path(Path(hub.settings.home), user["user"]["id"], doc_a).exists()

    await jobs.drain(hub)
    done = (await client.get(f"/api/storage/sessions/{job_b}", headers=h)).json()["session"]
    assert done["done"] is True and done["status"] == "ready" and done["progress"]["done"] == done["progress"]["total"] >= 1
    finished = await client.delete(f"/api/storage/sessions/{job_b}", headers=h)
    assert finished.status_code == 409 and finished.json()["code"] == "session_finished"
    assert (await client.get(f"/api/rag/documents/{done['documentId']}", headers=h)).status_code == 200  # untouched


async def test_cleanup_removes_exactly_what_it_says(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    h, uid = user["headers"], user["user"]["id"]
    home = Path(hub.settings.home)
    keep = (await client.post("/api/files/save", json={"name": "keep.txt", "content": "keep"}, headers=h)).json()["file"]
    gone = (await client.post("/api/files/save", json={"name": "gone.txt", "content": "gone"}, headers=h)).json()["file"]
    (files_root(hub) / uid / gone["id"]).unlink()  # its bytes vanished: the row is dangling
    orphan = files_root(hub) / uid / "file_0000orphan"
    orphan.write_bytes(b"o" * 10)
    fresh_orphan = files_root(hub) / uid / "file_0000fresh"  # an upload in flight: within the grace
    fresh_orphan.write_bytes(b"f")
    temp = files_root(hub) / uid / ".file_x.abc.tmp"
    temp.write_bytes(b"t" * 7)
    await client.put("/api/workspace/file/a.txt", content=b"ws", headers=h)
    ws_temp = home / "workspace" / uid / ".deadbeef.tmp"
    ws_temp.write_bytes(b"w" * 3)
    for path in (orphan, temp, ws_temp):
        os.utime(path, (OLD, OLD))
    stale = await init_upload(client, user, os.urandom(1500), "stale.txt")
    live = await init_upload(client, user, os.urandom(1500), "live.txt")
    await send_chunk(client, user, stale["uploadId"], 0, b"\0" * 1024)
    async with hub.engine.begin() as conn:
        await conn.execute(rag_uploads.update().where(rag_uploads.c.id == stale["uploadId"]).values(created_at=1))

    other = await register(client)  # another person's stale upload is never touched
    theirs = await init_upload(client, other, os.urandom(1500), "theirs.txt")
    async with hub.engine.begin() as conn:
        await conn.execute(rag_uploads.update().where(rag_uploads.c.id == theirs["uploadId"]).values(created_at=1))

    dry = (await client.post("/api/storage/cleanup", json={"dryRun": True}, headers=h)).json()
    expected = {"expiredUploadSession": 1, "orphanedFile": 1, "tempFile": 2, "missingFileRecord": 1}
    assert dry["dryRun"] is True and dry["removed"] == expected and dry["freedBytes"] == 1024 + 10 + 7 + 3
    assert len(dry["removes"]) == 4
    assert orphan.exists() and temp.exists() and ws_temp.exists()  # a dry run changes nothing
    assert (await client.get(f"/api/storage/sessions/{stale['uploadId']}", headers=h)).status_code == 200

    real = (await client.post("/api/storage/cleanup", json={}, headers=h)).json()
    assert real["dryRun"] is False and real["removed"] == expected
    assert sorted(i["id"] for i in real["items"]) == sorted(i["id"] for i in dry["items"])
    assert not orphan.exists() and not temp.exists() and not ws_temp.exists()
    assert fresh_orphan.exists() and (home / "workspace" / uid / "a.txt").exists()
    assert (await client.get(f"/api/files/{keep['id']}", headers=h)).content == b"keep"
    assert (await client.get(f"/api/files/{gone['id']}", params={"meta": "true"}, headers=h)).status_code == 404
    assert (await client.get(f"/api/storage/sessions/{stale['uploadId']}", headers=h)).status_code == 404
    assert (await client.get(f"/api/storage/sessions/{live['uploadId']}", headers=h)).status_code == 200
    assert (await client.get(f"/api/storage/sessions/{theirs['uploadId']}", headers=other["headers"])).status_code == 200
    again = (await client.post("/api/storage/cleanup", json={}, headers=h)).json()
    assert sum(again["removed"].values()) == 0


@pytest.mark.parametrize("body", [{"dryRun": "maybe"}, {"olderThanHours": 0}, {"olderThanHours": 10**30}, {"dryRun": True, "x": "\x00"}])
async def test_cleanup_bad_input_is_400_and_removes_nothing(hub: Any, client: httpx.AsyncClient, user: dict[str, Any], body: dict[str, Any]) -> None:
    orphan = files_root(hub) / user["user"]["id"] / "file_0000orphan"
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"o")
    os.utime(orphan, (OLD, OLD))
    assert_seed_400(await client.post("/api/storage/cleanup", json=body, headers=user["headers"]))
    assert orphan.exists()


async def test_storage_needs_a_login(client: httpx.AsyncClient) -> None:
    for method, path in (("GET", "/api/storage/disk-usage"), ("POST", "/api/storage/cleanup"), ("GET", "/api/storage/sessions"),
                         ("GET", "/api/storage/sessions/upl_x"), ("DELETE", "/api/storage/sessions/upl_x")):
        assert (await client.request(method, path)).status_code == 401
