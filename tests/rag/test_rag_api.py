"""RAG endpoints through the real app on SQLite and PostgreSQL: every file kind extracted and
found, chunked uploads resumed and checked, other people's documents never visible, bad input
refused with nothing stored, deletion taking chunks and vectors with it.

The background work (extraction of async/chunked uploads, embedding) is what the worker runs:
`ai.rag.jobs.drain` runs it to the end in the test's loop instead of waiting for a worker.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from ai import ann
from ai.rag import jobs
from store.schema import rag_chunks, rag_documents, rag_uploads
from tests.conftest import register
from tests.rag import docs


def word() -> str:
    return "zq" + secrets.token_hex(4)


async def upload(client: httpx.AsyncClient, user: dict[str, Any], data: bytes, name: str, ctype: str, path: str = "/api/rag/upload") -> httpx.Response:
    return await client.post(path, files={"file": (name, data, ctype)}, headers=user["headers"])


def rag_files(hub: Any, user: dict[str, Any]) -> list[Path]:
    folder = Path(hub.settings.home) / "rag" / user["user"]["id"]
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


async def count_rows(hub: Any, table: sa.Table, user_id: str) -> int:
    async with hub.engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(table).where(table.c.user_id == user_id))).scalar_one()


@pytest.mark.parametrize("kind", ["txt", "md", "html", "pdf", "docx"])
async def test_each_kind_is_extracted_embedded_and_found(hub: Any, client: httpx.AsyncClient, user: dict[str, Any], kind: str) -> None:
    make, name, ctype = docs.MAKERS[kind]
    secret = word()
    data = make(secret)
    response = await upload(client, user, data, name, ctype)
    assert response.status_code == 200, response.text
    document = response.json()["document"]
    assert document["name"] == name and document["kind"] == kind and document["size"] == len(data)
    assert document["sha256"] == hashlib.sha256(data).hexdigest()
    assert document["status"].startswith("embedding (0/") and document["chunkCount"] >= 1

    await jobs.drain(hub)
    got = (await client.get(f"/api/rag/documents/{document['id']}", headers=user["headers"])).json()["document"]
    assert got["status"] == "ready" and got["embeddedChunks"] == got["chunkCount"]

    found = await client.get("/api/rag/search", params={"query": secret, "limit": 3}, headers=user["headers"])
    assert found.status_code == 200, found.text
    top = found.json()["results"][0]
    assert top["documentId"] == document["id"] and secret in top["text"]
    assert top["document"]["name"] == name and isinstance(top["position"], int) and top["score"] > 0
    if kind == "html":
        assert "secret='nope'" not in top["text"]  # scripts are not text
    if kind in ("md", "docx"):
        assert top["heading"]  # chunks keep the heading they sit under


async def test_seed_curl_search_and_meaning_without_shared_words(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    text = b"# Pets\n\nOur cat sleeps on the sofa all afternoon.\n\n# Money\n\nInvoices are paid within thirty days of receipt.\n"
    assert (await upload(client, user, text, "home.md", "text/markdown")).status_code == 200
    await jobs.drain(hub)
    # seed curl 6: POST {"query", "limit"}
    response = await client.post("/api/rag/search", json={"query": "search term", "limit": 5}, headers=user["headers"])
    assert response.status_code == 200 and isinstance(response.json()["results"], list)
    # no word in common with the text: only the vectors can find it
    response = await client.post("/api/rag/search", json={"query": "kitten napping on a couch", "limit": 1}, headers=user["headers"])
    top = response.json()["results"][0]
    assert "cat sleeps" in top["text"] and top["vectorRank"] == 1 and top["keywordRank"] is None


async def test_binary_is_the_original_bytes_with_its_type(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    data = docs.pdf(word())
    document = (await upload(client, user, data, "r.pdf", "application/pdf")).json()["document"]
    response = await client.get(f"/api/rag/documents/{document['id']}/binary", headers=user["headers"])
    assert response.status_code == 200 and response.content == data
    assert response.headers["content-type"] == "application/pdf"
    stored = rag_files(hub, user)
    assert [p.name for p in stored] == [document["id"]]  # named by id, not "r.pdf"


async def test_other_people_never_see_a_document(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    secret = word()
    document = (await upload(client, user, docs.txt(secret), "a.txt", "text/plain")).json()["document"]
    job = (await upload(client, user, docs.txt(word()), "b.txt", "text/plain", "/api/rag/upload/async")).json()["jobId"]
    init = (await client.post("/api/rag/upload/init", json={"fileName": "c.txt", "size": 5, "sha256": "0" * 64}, headers=user["headers"])).json()
    await jobs.drain(hub)
    other = await register(client)
    h = other["headers"]
    for method, path in [("GET", f"/api/rag/documents/{document['id']}"), ("GET", f"/api/rag/documents/{document['id']}/binary"),
                         ("DELETE", f"/api/rag/documents/{document['id']}")]:
        response = await client.request(method, path, headers=h)
        assert response.status_code == 404 and response.json()["code"] == "document_not_found", path
    assert (await client.get("/api/rag/upload/async/status", params={"jobId": job}, headers=h)).status_code == 404
    chunk = await client.post("/api/rag/upload/chunk", data={"uploadId": init["uploadId"], "index": "0"},
                              files={"chunk": ("c", b"hello")}, headers=h)
    assert chunk.status_code == 404
    assert (await client.post("/api/rag/upload/complete", json={"uploadId": init["uploadId"]}, headers=h)).status_code == 404
    assert (await client.get("/api/rag/documents", headers=h)).json()["documents"] == []
    assert (await client.get("/api/rag/search", params={"query": secret}, headers=h)).json()["results"] == []
    assert (await client.get("/api/rag/stats", headers=h)).json()["stats"]["documents"] == 0
    # and the owner still has it
    assert (await client.get(f"/api/rag/documents/{document['id']}", headers=user["headers"])).status_code == 200


async def test_bad_input_is_a_4xx_and_stores_nothing(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    h = user["headers"]
    assert (await client.get("/api/rag/documents")).status_code == 401
    cases = [
        await client.post("/api/rag/upload", json={"file": "x"}, headers=h),  # not multipart
        await client.post("/api/rag/upload", data={"other": "x"}, files={"nope": ("a.txt", b"x")}, headers=h),
        await upload(client, user, b"MZ\x90\x00", "tool.exe", "application/octet-stream"),
        await upload(client, user, b"", "empty.txt", "text/plain"),
        await upload(client, user, b"%PDF-1.4 this is not really a pdf", "broken.pdf", "application/pdf"),
        await upload(client, user, b"PK\x03\x04 not a zip", "broken.docx", "application/octet-stream"),
        await upload(client, user, b"\x00\x01\x02\x03" * 100, "binary.txt", "text/plain"),
        await client.get("/api/rag/search", params={"query": ""}, headers=h),
        await client.get("/api/rag/search", params={"query": "x", "limit": "0"}, headers=h),
        await client.post("/api/rag/search", json={"limit": 5}, headers=h),
        await client.post("/api/rag/upload/init", json={"fileName": "a.txt", "size": 10, "sha256": "xyz"}, headers=h),
        await client.post("/api/rag/upload/init", json={"fileName": "a.txt", "size": 0, "sha256": "a" * 64}, headers=h),
        await client.post("/api/rag/upload/init", json={"fileName": "a.bin", "size": 10, "sha256": "a" * 64}, headers=h),
        await client.post("/api/rag/upload/complete", json={}, headers=h),
        await client.get("/api/rag/upload/async/status", headers=h),
    ]
    for response in cases:
        assert response.status_code == 400, (response.request.url, response.text)
        body = response.json()
        assert body["error"] and body["code"], body
    assert await count_rows(hub, rag_documents, user["user"]["id"]) == 0
    assert await count_rows(hub, rag_uploads, user["user"]["id"]) == 0
    assert rag_files(hub, user) == []
    unknown = await client.get("/api/rag/documents/doc_nope", headers=h)
    assert unknown.status_code == 404


async def test_size_and_quota_limits_are_413(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    settings = hub.settings
    saved = settings.rag_max_file_bytes, settings.rag_user_quota_bytes
    try:
        settings.rag_max_file_bytes = 100
        big = await upload(client, user, b"a" * 101, "big.txt", "text/plain")
        assert big.status_code == 413 and big.json()["code"] == "file_too_large" and "LOOMI_RAG_MAX_FILE_BYTES" in big.json()["cause"]
        init = await client.post("/api/rag/upload/init", json={"fileName": "big.txt", "size": 101, "sha256": "a" * 64}, headers=user["headers"])
        assert init.status_code == 413
        settings.rag_max_file_bytes, settings.rag_user_quota_bytes = saved[0], 150
        assert (await upload(client, user, b"word " * 20, "one.txt", "text/plain")).status_code == 200
        over = await upload(client, user, b"more " * 20, "two.txt", "text/plain")
        assert over.status_code == 413 and over.json()["code"] == "quota_exceeded"
        init = await client.post("/api/rag/upload/init", json={"fileName": "t.txt", "size": 60, "sha256": "a" * 64}, headers=user["headers"])
        assert init.status_code == 413
    finally:
        settings.rag_max_file_bytes, settings.rag_user_quota_bytes = saved
    assert await count_rows(hub, rag_documents, user["user"]["id"]) == 1
    assert await count_rows(hub, rag_uploads, user["user"]["id"]) == 0
    assert len(rag_files(hub, user)) == 1


async def send_chunk(client: httpx.AsyncClient, user: dict[str, Any], upload_id: str, index: int, data: bytes) -> httpx.Response:
    return await client.post("/api/rag/upload/chunk", data={"uploadId": upload_id, "index": str(index)},
                             files={"chunk": ("blob", data, "application/octet-stream")}, headers=user["headers"])


async def test_interrupted_chunked_upload_resumes(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    secret = word()
    data = (f"# Long notes\n\nThe tag {secret} is here.\n\n".encode() + b"filler text line. " * 160)[:3000]
    parts = [data[i : i + 1024] for i in range(0, len(data), 1024)]
    meta = {"fileName": "notes.md", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "contentType": "text/markdown", "chunkSize": 1024}
    first = (await client.post("/api/rag/upload/init", json=meta, headers=user["headers"])).json()
    assert first["chunkSize"] == 1024 and first["received"] == [] and first["totalChunks"] == 3
    assert (await send_chunk(client, user, first["uploadId"], 2, parts[2])).json()["received"] == [2]
    assert (await send_chunk(client, user, first["uploadId"], 0, parts[0])).json()["received"] == [0, 2]
    assert (await send_chunk(client, user, first["uploadId"], 0, parts[0])).status_code == 200  # a repeat: harmless
    wrong = await send_chunk(client, user, first["uploadId"], 1, parts[1][:10])
    assert wrong.status_code == 400 and wrong.json()["code"] == "invalid_chunk_size"
    out_of_range = await send_chunk(client, user, first["uploadId"], 3, b"x")
    assert out_of_range.status_code == 400
    early = await client.post("/api/rag/upload/complete", json={"uploadId": first["uploadId"]}, headers=user["headers"])
    assert early.status_code == 400 and "[1]" in early.json()["cause"]
    # the connection dropped here; the client starts over with the same file
    again = (await client.post("/api/rag/upload/init", json=meta, headers=user["headers"])).json()
    assert again["uploadId"] == first["uploadId"] and again["received"] == [0, 2]
    await send_chunk(client, user, again["uploadId"], 1, parts[1])
    done = await client.post("/api/rag/upload/complete", json={"uploadId": again["uploadId"]}, headers=user["headers"])
    assert done.status_code == 200, done.text
    document = done.json()["document"]
    assert document["status"] == "pending" and document["sha256"] == meta["sha256"]
    await jobs.drain(hub)
    assert (await client.get(f"/api/rag/documents/{document['id']}", headers=user["headers"])).json()["document"]["status"] == "ready"
    assert (await client.get(f"/api/rag/documents/{document['id']}/binary", headers=user["headers"])).content == data
    assert (await client.get("/api/rag/search", params={"query": secret}, headers=user["headers"])).json()["results"][0]["documentId"] == document["id"]
    assert await count_rows(hub, rag_uploads, user["user"]["id"]) == 0
    assert [p.name for p in rag_files(hub, user)] == [document["id"]]  # the parts are gone


async def test_sha256_mismatch_is_refused(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    data = b"hello world, some text to upload"
    meta = {"fileName": "x.txt", "size": len(data), "sha256": hashlib.sha256(b"something else").hexdigest()}
    init = (await client.post("/api/rag/upload/init", json=meta, headers=user["headers"])).json()
    await send_chunk(client, user, init["uploadId"], 0, data)
    response = await client.post("/api/rag/upload/complete", json={"uploadId": init["uploadId"]}, headers=user["headers"])
    assert response.status_code == 400 and response.json()["code"] == "checksum_mismatch"
    assert await count_rows(hub, rag_documents, user["user"]["id"]) == 0
    assert await count_rows(hub, rag_uploads, user["user"]["id"]) == 0
    assert rag_files(hub, user) == []


async def test_async_upload_reports_progress(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    secret = word()
    response = await upload(client, user, docs.docx(secret), "m.docx", "application/octet-stream", "/api/rag/upload/async")
    assert response.status_code == 200
    job = response.json()["jobId"]
    status = (await client.get("/api/rag/upload/async/status", params={"jobId": job}, headers=user["headers"])).json()
    assert status["status"] == "pending" and status["done"] is False
    assert status["document"]["contentType"].endswith("wordprocessingml.document")  # octet-stream replaced by the kind's type
    assert await jobs.run_once(hub) == 1  # extraction
    status = (await client.get("/api/rag/upload/async/status", params={"jobId": job}, headers=user["headers"])).json()
    assert status["status"].startswith("embedding (0/")
    await jobs.drain(hub)
    status = (await client.get("/api/rag/upload/async/status", params={"jobId": job}, headers=user["headers"])).json()
    assert status["status"] == "ready" and status["done"] is True


async def test_async_upload_of_an_unreadable_file_fails_with_a_reason(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    response = await upload(client, user, b"%PDF-1.7 garbage", "x.pdf", "application/pdf", "/api/rag/upload/async")
    job = response.json()["jobId"]
    await jobs.drain(hub)
    status = (await client.get("/api/rag/upload/async/status", params={"jobId": job}, headers=user["headers"])).json()
    assert status["status"].startswith("failed: not a readable PDF") and status["done"] is True


async def test_delete_removes_chunks_vectors_and_file(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    secret = word()
    document = (await upload(client, user, docs.md(secret), "h.md", "text/markdown")).json()["document"]
    keep = (await upload(client, user, docs.txt(word()), "k.txt", "text/plain")).json()["document"]
    await jobs.drain(hub)
    assert (await client.get("/api/rag/search", params={"query": secret}, headers=user["headers"])).json()["results"]
    uid = user["user"]["id"]
    async with hub.engine.connect() as conn:
        ids = [r.id for r in await conn.execute(sa.select(rag_chunks.c.id).where(rag_chunks.c.document_id == document["id"]))]
    index = ann.attach(hub).get(ann.RAG, uid, "all-minilm-l6-v2")
    assert ids and all(i in index.labels for i in ids)
    response = await client.delete(f"/api/rag/documents/{document['id']}", headers=user["headers"])
    assert response.status_code == 200 and response.json()["chunks"] == len(ids)
    async with hub.engine.connect() as conn:
        left = (await conn.execute(sa.select(sa.func.count()).select_from(rag_chunks).where(rag_chunks.c.document_id == document["id"]))).scalar_one()
    assert left == 0 and not any(i in index.labels for i in ids)
    after = (await client.get("/api/rag/search", params={"query": secret}, headers=user["headers"])).json()["results"]
    assert all(r["documentId"] == keep["id"] for r in after)
    assert (await client.get(f"/api/rag/documents/{document['id']}", headers=user["headers"])).status_code == 404
    assert [p.name for p in rag_files(hub, user)] == [keep["id"]]
    # a process that never saw the delete (a fresh index) rebuilds from the database without them
    fresh = ann.PersonIndex(ann.RAG, uid, "all-minilm-l6-v2", threshold=5000)
    await fresh.refresh(hub.engine, None, force=True)
    assert fresh.live == keep["chunkCount"] and not any(i in fresh.labels for i in ids)


async def test_list_and_stats(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    a = (await upload(client, user, docs.txt(word()), "a.txt", "text/plain")).json()["document"]
    b = (await upload(client, user, docs.md(word()), "b.md", "text/markdown")).json()["document"]
    listed = (await client.get("/api/rag/documents", headers=user["headers"])).json()
    assert [d["id"] for d in listed["documents"]] == [b["id"], a["id"]] and listed["total"] == 2
    assert [d["id"] for d in (await client.get("/api/rag/documents", params={"limit": 1, "offset": 1}, headers=user["headers"])).json()["documents"]] == [a["id"]]
    await jobs.drain(hub)
    stats = (await client.get("/api/rag/stats", headers=user["headers"])).json()["stats"]
    assert stats["documents"] == 2 and stats["byStatus"] == {"ready": 2}
    assert stats["chunks"] == a["chunkCount"] + b["chunkCount"] == stats["embeddedChunks"]
    assert stats["totalBytes"] == a["size"] + b["size"] == stats["usedBytes"]


async def test_abandoned_chunked_uploads_expire(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    from api.routes.rag import UPLOAD_TTL_MS

    data = b"abandoned upload text"
    meta = {"fileName": "old.txt", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    old = (await client.post("/api/rag/upload/init", json=meta, headers=user["headers"])).json()
    await send_chunk(client, user, old["uploadId"], 0, data)
    assert rag_files(hub, user)
    async with hub.engine.begin() as conn:
        await conn.execute(rag_uploads.update().where(rag_uploads.c.id == old["uploadId"]).values(created_at=1))
    fresh = (await client.post("/api/rag/upload/init", json={**meta, "fileName": "new.txt"}, headers=user["headers"])).json()
    assert fresh["uploadId"] != old["uploadId"]
    assert await count_rows(hub, rag_uploads, user["user"]["id"]) == 1 and rag_files(hub, user) == []
    assert UPLOAD_TTL_MS >= 86_400_000
