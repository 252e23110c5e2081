"""RAG: /api/rag/*, a person's documents searched by keywords and meaning (ai/rag).

Uploads: one multipart `file` (`upload`, or `upload/async` which answers with a job id at once),
or a resumable chunked upload (`upload/init` -> `upload/chunk`… -> `upload/complete`, checked
against the whole file's sha256). Limits: LOOMI_RAG_MAX_FILE_BYTES per file (413) and
LOOMI_RAG_USER_QUOTA_BYTES per person (413), checked before anything is written. A bad file is
a 400 and leaves nothing behind. Extraction and embedding run in the worker; the document's
`status` tells how far it got.
"""

from __future__ import annotations

import asyncio
import math
import re
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import Field, StringConstraints
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse
from starlette.routing import Route

from ai import ann
from ai.rag import files, jobs, store
from ai.rag import search as rag_search
from ai.rag.extract import CONTENT_TYPES, ExtractError, kind_of
from api.auth import Principal, hub_of
from api.endpoint import endpoint
from api.errors import ApiError, bad_request
from api.routes.messages import iso
from api.schemas import Body
from loomi.hub import Hub
from store.ids import new_id, now_ms
from store.schema import rag_uploads

CHUNK_SIZE = 2 << 20  # default part size of a chunked upload
MIN_CHUNK_SIZE = 1 << 10
MAX_CHUNK_SIZE = 8 << 20
UPLOAD_TTL_MS = 7 * 86_400_000  # an unfinished chunked upload is kept a week
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_quota_locks: dict[str, asyncio.Lock] = {}


def document_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "status": row["status"],
        "contentType": row["content_type"],
        "kind": row["kind"],
        "size": row["size_bytes"],
        "sha256": row["sha256"],
        "chunkCount": row["chunk_count"],
        "embeddedChunks": row["embedded_count"],
        "jobId": row["job_id"],
        "createdAt": iso(row["created_at"]),
        "updatedAt": iso(row["updated_at"]),
    }


def document_not_found() -> ApiError:
    return ApiError(404, "Document not found", "document_not_found")


def too_large(limit: int) -> ApiError:
    return ApiError(413, "File too large", "file_too_large", f"the limit is {limit} bytes (LOOMI_RAG_MAX_FILE_BYTES)")


def home(hub: Hub) -> Path:
    return Path(hub.settings.home)


def clean_name(name: str | None) -> str:
    """The name shown back (never used as a path): no directories, no control characters."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    return base[:255] or "document"


def _kind(name: str, content_type: str | None) -> str:
    try:
        return kind_of(name, content_type)
    except ExtractError as err:
        raise bad_request("Unsupported file type", "unsupported_file_type", str(err)) from None


async def _check_quota(hub: Hub, user_id: str, adding: int) -> None:
    async with hub.engine.connect() as conn:
        used = await store.used_bytes(conn, user_id)
    quota = hub.settings.rag_user_quota_bytes
    if used + adding > quota:
        raise ApiError(413, "Storage quota exceeded", "quota_exceeded",
                       f"{used} of {quota} bytes used, this file is {adding} (LOOMI_RAG_USER_QUOTA_BYTES)")


async def _form(request: Request) -> Any:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise bad_request("Send the file as multipart/form-data", "invalid_input")
    try:
        return await request.form(max_files=1, max_fields=10)
    except Exception as err:  # python-multipart raises several types on malformed bodies
        if isinstance(getattr(err, "status", None), int):  # the body limit's 413
            raise
        raise bad_request("Malformed multipart body", "invalid_input", type(err).__name__) from None


def _file_field(form: Any, field: str) -> UploadFile:
    value = form.get(field)
    if not isinstance(value, UploadFile):
        raise bad_request(f"Missing multipart file field `{field}`", "invalid_input")
    return value


async def _store_upload(request: Request, user: Principal, *, job: bool) -> dict[str, Any]:
    """Write the multipart `file` as a new document (pending); nothing stays behind on error."""
    hub = hub_of(request)
    form = await _form(request)
    try:
        upload = _file_field(form, "file")
        name = clean_name(upload.filename)
        kind = _kind(name, upload.content_type)
        limit = hub.settings.rag_max_file_bytes
        size = upload.size if upload.size is not None else 0
        if size > limit:
            raise too_large(limit)
        if size == 0:
            raise bad_request("The file is empty", "empty_file")
        document_id = new_id("doc")
        target = files.document_path(home(hub), user.id, document_id)
        lock = _quota_locks.setdefault(user.id, asyncio.Lock())
        async with lock:  # two uploads at once must not both fit the same room
            await _check_quota(hub, user.id, size)
            await upload.seek(0)
            written, digest = await asyncio.to_thread(files.write_stream, upload.file, target)
            try:
                async with hub.engine.begin() as conn:
                    row = await store.create_document(
                        conn, user_id=user.id, document_id=document_id, name=name,
                        content_type=_content_type(upload.content_type, kind), kind=kind, size=written,
                        sha256=digest, job_id=new_id("ragjob") if job else None,
                    )
            except BaseException:
                target.unlink(missing_ok=True)
                raise
    finally:
        await form.close()
    return row


def _content_type(given: str | None, kind: str) -> str:
    base = (given or "").split(";")[0].strip().lower()
    return given[:200] if given and base not in ("", "application/octet-stream") else CONTENT_TYPES[kind]


async def _wake(hub: Hub) -> None:
    try:
        await hub.redis.set(jobs.WAKE, "1", ex=600)
    except Exception:  # noqa: BLE001 - the worker polls anyway
        pass


@endpoint()
async def upload(request: Request, user: Principal):
    """Upload a document (multipart `file`): `{document}`; text is extracted here, embedded in the background."""
    hub = hub_of(request)
    row = await _store_upload(request, user, job=False)
    ok = await jobs.extract_document(hub, row)
    async with hub.engine.connect() as conn:
        row = await store.get_document(conn, user.id, row["id"]) or row
    if not ok:  # unreadable: a 400, and the document is not kept
        async with hub.engine.begin() as conn:
            await store.delete_document(conn, user.id, row["id"])
        files.document_path(home(hub), user.id, row["id"]).unlink(missing_ok=True)
        reason = row["status"].removeprefix("failed: ")
        raise bad_request("Could not read the document", "unreadable_document", reason)
    await _wake(hub)
    return {"success": True, "document": document_json(row)}


@endpoint()
async def upload_async(request: Request, user: Principal):
    """Upload a document (multipart `file`) and process it in the background: `{jobId, document}`."""
    hub = hub_of(request)
    row = await _store_upload(request, user, job=True)
    await _wake(hub)
    return {"success": True, "jobId": row["job_id"], "documentId": row["id"], "status": row["status"], "document": document_json(row)}


class JobQuery(Body):
    job_id: Annotated[str, StringConstraints(min_length=1, max_length=40)] = Field(alias="jobId")


@endpoint(query=JobQuery)
async def upload_async_status(request: Request, user: Principal, query: JobQuery):
    """Progress of an `upload/async` job: `{jobId, status, done, document}`."""
    async with hub_of(request).engine.connect() as conn:
        row = await store.get_by_job(conn, user.id, query.job_id)
    if row is None:
        raise ApiError(404, "Job not found", "job_not_found")
    done = row["status"] == store.READY or row["status"].startswith("failed")
    return {"success": True, "jobId": row["job_id"], "status": row["status"], "done": done, "document": document_json(row)}


class InitBody(Body):
    file_name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)] = Field(alias="fileName")
    size: int = Field(ge=1)
    sha256: Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=_SHA256.pattern)]
    content_type: Annotated[str, StringConstraints(max_length=200)] | None = Field(default=None, alias="contentType")
    chunk_size: int | None = Field(default=None, alias="chunkSize", ge=MIN_CHUNK_SIZE, le=MAX_CHUNK_SIZE)


def _part_sizes(size: int, chunk_size: int) -> list[int]:
    count = max(1, math.ceil(size / chunk_size))
    return [min(chunk_size, size - i * chunk_size) for i in range(count)]


def _upload_json(row: Any, received: list[int]) -> dict[str, Any]:
    total = len(_part_sizes(row.size_bytes, row.chunk_size))
    return {"success": True, "uploadId": row.id, "chunkSize": row.chunk_size, "totalChunks": total, "received": received,
            "complete": len(received) == total}


@endpoint(body=InitBody)
async def upload_init(request: Request, user: Principal, body: InitBody):
    """Start, or resume, a chunked upload of one file: `{uploadId, chunkSize, received: [indexes]}`."""
    hub = hub_of(request)
    name = clean_name(body.file_name)
    _kind(name, body.content_type)
    if body.size > hub.settings.rag_max_file_bytes:
        raise too_large(hub.settings.rag_max_file_bytes)
    u = rag_uploads
    await _expire_uploads(hub, user.id)
    where = [u.c.user_id == user.id, u.c.sha256 == body.sha256, u.c.size_bytes == body.size, u.c.file_name == name]
    async with hub.engine.connect() as conn:
        row = (await conn.execute(u.select().where(*where))).first()
    if row is None:
        lock = _quota_locks.setdefault(user.id, asyncio.Lock())
        async with lock:
            await _check_quota(hub, user.id, body.size)
            values = {"id": new_id("upl"), "user_id": user.id, "file_name": name, "size_bytes": body.size,
                      "content_type": (body.content_type or "")[:200], "sha256": body.sha256,
                      "chunk_size": body.chunk_size or CHUNK_SIZE, "created_at": now_ms()}
            try:
                async with hub.engine.begin() as conn:
                    await conn.execute(u.insert().values(values))
            except Exception:  # noqa: BLE001 - a concurrent init of the same file won the insert
                pass
        async with hub.engine.connect() as conn:
            row = (await conn.execute(u.select().where(*where))).one()
    folder = files.upload_dir(home(hub), user.id, row.id)
    received = await asyncio.to_thread(files.received_parts, folder, _part_sizes(row.size_bytes, row.chunk_size))
    return _upload_json(row, received)


async def _expire_uploads(hub: Hub, user_id: str) -> None:
    """Chunked uploads started more than UPLOAD_TTL_MS ago are dropped: they would hold quota forever."""
    u = rag_uploads
    async with hub.engine.begin() as conn:
        old = [r.id for r in await conn.execute(sa.select(u.c.id).where(u.c.user_id == user_id, u.c.created_at < now_ms() - UPLOAD_TTL_MS))]
        if old:
            await conn.execute(u.delete().where(u.c.id.in_(old)))
    for upload_id in old:
        await asyncio.to_thread(files.remove_tree, files.upload_dir(home(hub), user_id, upload_id))


async def _upload_row(hub: Hub, user_id: str, upload_id: str) -> Any:
    u = rag_uploads
    async with hub.engine.connect() as conn:
        row = (await conn.execute(u.select().where(u.c.id == upload_id, u.c.user_id == user_id))).first()
    if row is None:
        raise ApiError(404, "Upload not found", "upload_not_found")
    return row


@endpoint()
async def upload_chunk(request: Request, user: Principal):
    """One part of a chunked upload (multipart `uploadId`, `index`, `chunk`); any order, repeats harmless."""
    hub = hub_of(request)
    form = await _form(request)
    try:
        upload_id, index_text = form.get("uploadId"), form.get("index")
        if not isinstance(upload_id, str) or not upload_id or len(upload_id) > 40:
            raise bad_request("Missing multipart field `uploadId`", "invalid_input")
        if not isinstance(index_text, str) or not index_text.isascii() or not index_text.isdigit() or len(index_text) > 9:
            raise bad_request("`index` must be a non-negative integer", "invalid_input")
        part = _file_field(form, "chunk")
        row = await _upload_row(hub, user.id, upload_id)
        sizes = _part_sizes(row.size_bytes, row.chunk_size)
        index = int(index_text)
        if index >= len(sizes):
            raise bad_request("Chunk index out of range", "invalid_chunk_index", f"this upload has chunks 0..{len(sizes) - 1}")
        if part.size != sizes[index]:
            raise bad_request("Wrong chunk size", "invalid_chunk_size", f"chunk {index} must be {sizes[index]} bytes, got {part.size}")
        await part.seek(0)
        folder = files.upload_dir(home(hub), user.id, row.id)
        await asyncio.to_thread(files.write_stream, part.file, folder / str(index))
        received = await asyncio.to_thread(files.received_parts, folder, sizes)
    finally:
        await form.close()
    return {**_upload_json(row, received), "index": index}


class CompleteBody(Body):
    upload_id: Annotated[str, StringConstraints(min_length=1, max_length=40)] = Field(alias="uploadId")


@endpoint(body=CompleteBody)
async def upload_complete(request: Request, user: Principal, body: CompleteBody):
    """Join the parts, check the sha256 of the whole, and make the document: `{document}`."""
    hub = hub_of(request)
    row = await _upload_row(hub, user.id, body.upload_id)
    sizes = _part_sizes(row.size_bytes, row.chunk_size)
    folder = files.upload_dir(home(hub), user.id, row.id)
    received = await asyncio.to_thread(files.received_parts, folder, sizes)
    missing = [i for i in range(len(sizes)) if i not in set(received)]
    if missing:
        raise bad_request("Upload incomplete", "upload_incomplete", f"missing chunks: {missing[:50]}")
    document_id = new_id("doc")
    target = files.document_path(home(hub), user.id, document_id)
    digest = await asyncio.to_thread(files.assemble, folder, len(sizes), target)
    if digest != row.sha256:
        target.unlink(missing_ok=True)
        await _drop_upload(hub, row.id, folder)
        raise bad_request("sha256 mismatch", "checksum_mismatch",
                          f"the parts hash to {digest}, init said {row.sha256}; the upload was discarded, start again")
    kind = _kind(row.file_name, row.content_type)
    try:
        async with hub.engine.begin() as conn:
            doc = await store.create_document(conn, user_id=user.id, document_id=document_id, name=row.file_name,
                                              content_type=_content_type(row.content_type, kind), kind=kind,
                                              size=row.size_bytes, sha256=digest)
            await conn.execute(rag_uploads.delete().where(rag_uploads.c.id == row.id))
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    await asyncio.to_thread(files.remove_tree, folder)
    await _wake(hub)
    return {"success": True, "document": document_json(doc)}


async def _drop_upload(hub: Hub, upload_id: str, folder: Path) -> None:
    async with hub.engine.begin() as conn:
        await conn.execute(rag_uploads.delete().where(rag_uploads.c.id == upload_id))
    await asyncio.to_thread(files.remove_tree, folder)


class ListQuery(Body):
    limit: int = Field(default=50, ge=1, le=200)
    offset: int = Field(default=0, ge=0)


@endpoint(query=ListQuery)
async def list_documents(request: Request, user: Principal, query: ListQuery):
    """The person's documents, newest first: `{documents, total}`."""
    async with hub_of(request).engine.connect() as conn:
        rows, total = await store.list_documents(conn, user.id, query.limit, query.offset)
    return {"success": True, "documents": [document_json(r) for r in rows], "total": total}


async def _document(request: Request, user: Principal) -> dict[str, Any]:
    document_id = request.path_params["documentId"]
    if len(document_id) > 40:
        raise document_not_found()
    async with hub_of(request).engine.connect() as conn:
        row = await store.get_document(conn, user.id, document_id)
    if row is None:
        raise document_not_found()
    return row


@endpoint()
async def get_document(request: Request, user: Principal):
    """One document: `{document}`."""
    return {"success": True, "document": document_json(await _document(request, user))}


@endpoint()
async def get_binary(request: Request, user: Principal):
    """The document's original bytes, with its content type."""
    row = await _document(request, user)
    path = files.document_path(home(hub_of(request)), user.id, row["id"])
    if not path.is_file():
        raise ApiError(404, "Document content missing", "content_missing")
    return FileResponse(path, media_type=row["content_type"], filename=row["name"], content_disposition_type="attachment")


@endpoint()
async def delete_document(request: Request, user: Principal):
    """Delete a document, its chunks and their vectors: `{success, deleted}`."""
    hub = hub_of(request)
    row = await _document(request, user)
    async with hub.engine.begin() as conn:
        chunk_ids = await store.delete_document(conn, user.id, row["id"])
    if chunk_ids is None:
        raise document_not_found()
    for index in ann.attach(hub).loaded(ann.RAG, user.id):
        index.remove(chunk_ids)
    files.document_path(home(hub), user.id, row["id"]).unlink(missing_ok=True)
    return {"success": True, "deleted": row["id"], "chunks": len(chunk_ids)}


class SearchQuery(Body):
    query: Annotated[str, StringConstraints(min_length=1, max_length=2000)]
    limit: int = Field(default=10, ge=1, le=50)


@endpoint(query=SearchQuery, query_in_body=True)
async def search(request: Request, user: Principal, query: SearchQuery):
    """Hybrid search of the person's documents (GET `?query=&limit=` or POST `{query, limit}`): `{results}`."""
    hub = hub_of(request)
    registry = ann.attach(hub)
    async with hub.engine.connect() as conn:
        results = await rag_search.search(conn, registry, user.id, query.query, query.limit)
    return {"success": True, "query": query.query, "results": results, "total": len(results)}


@endpoint()
async def stats(request: Request, user: Principal):
    """Counts for the person: documents by status, chunks, embedded chunks, bytes, quota, vector index."""
    hub = hub_of(request)
    async with hub.engine.connect() as conn:
        out = await store.stats(conn, user.id)
        used = await store.used_bytes(conn, user.id)
    indexes = ann.attach(hub).loaded(ann.RAG, user.id)
    return {"success": True, "stats": {
        **out, "usedBytes": used, "quotaBytes": hub.settings.rag_user_quota_bytes,
        "maxFileBytes": hub.settings.rag_max_file_bytes,
        "vectorIndex": {"mode": indexes[0].mode if indexes else "not loaded", "vectors": indexes[0].live if indexes else 0,
                        "annThreshold": hub.settings.vector_ann_threshold},
    }}


routes = [
    Route("/api/rag/search", search, methods=["GET", "POST"]),
    Route("/api/rag/stats", stats, methods=["GET"]),
    Route("/api/rag/documents", list_documents, methods=["GET"]),
    Route("/api/rag/documents/{documentId}", get_document, methods=["GET"]),
    Route("/api/rag/documents/{documentId}", delete_document, methods=["DELETE"]),
    Route("/api/rag/documents/{documentId}/binary", get_binary, methods=["GET"]),
    Route("/api/rag/upload", upload, methods=["POST"]),
    Route("/api/rag/upload/init", upload_init, methods=["POST"]),
    Route("/api/rag/upload/chunk", upload_chunk, methods=["POST"]),
    Route("/api/rag/upload/complete", upload_complete, methods=["POST"]),
    Route("/api/rag/upload/async", upload_async, methods=["POST"]),
    Route("/api/rag/upload/async/status", upload_async_status, methods=["GET"]),
]
