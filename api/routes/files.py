"""Files module (/api/files/*): a person's stored files and their insights exported as a file.

Bytes live under LOOMI_FILES_DIR (default `$LOOMI_HOME/files`)/<user id>/<file id>, named by
id, never by the uploaded name (that is only shown back). One upload is capped at
LOOMI_UPLOAD_MAX_BYTES and a person's files together at LOOMI_USER_QUOTA_BYTES (the limits the
AI uploads use, counted separately). Another person's file id answers 404, like a missing one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import io
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import Field
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from ai.rag.files import write_stream
from api.auth import Principal, hub_of
from api.endpoint import endpoint
from api.errors import ApiError, bad_request, not_found
from api.routes.insights import insight_json
from api.schemas import Body
from loomi.hub import Hub
from store import files as file_store
from store import insights as insight_store
from store.ids import new_id, now_ms

_ID = re.compile(r"^file_[A-Za-z0-9]+$")
_quota_locks: dict[str, asyncio.Lock] = {}
MAX_EXPORT = 10_000
SAFE_HEADERS = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}


def files_root(hub: Hub) -> Path:
    return Path(hub.settings.files_dir or Path(hub.settings.home) / "files")


def file_path(hub: Hub, user_id: str, file_id: str) -> Path:
    if not _ID.match(file_id) or not re.fullmatch(r"[a-z]+_[A-Za-z0-9]+", user_id):
        raise ValueError("not an id")
    return files_root(hub) / user_id / file_id


def clean_name(name: str | None) -> str:
    """The name shown back (never a path): no folders, no control characters."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip()
    return base[:255] or "file"


def file_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "name": row["name"],
        "contentType": row["content_type"],
        "size": row["size_bytes"],
        "sha256": row["sha256"],
        "source": row["source"],
        "url": f"/api/files/{row['id']}",
        "createdAt": datetime.fromtimestamp(row["created_at"] / 1000, timezone.utc).isoformat().replace("+00:00", "Z"),
    }


def file_not_found() -> ApiError:
    return not_found("File not found", "file_not_found")


async def used_bytes(hub: Hub, user_id: str) -> int:
    async with hub.engine.connect() as conn:
        return sum(size for _count, size in (await file_store.usage(conn, user_id)).values())


async def store_bytes(hub: Hub, user_id: str, source: Any, *, name: str, content_type: str, kind: str, size: int) -> dict[str, Any]:
    """Check size and quota, write the bytes by id, then the row; nothing stays behind on error."""
    limit = hub.settings.upload_max_bytes
    if size > limit:
        raise ApiError(413, "File too large", "file_too_large", f"the limit is {limit} bytes (LOOMI_UPLOAD_MAX_BYTES)")
    if size == 0:
        raise bad_request("The file is empty", "empty_file")
    file_id = new_id("file")
    target = file_path(hub, user_id, file_id)
    async with _quota_locks.setdefault(user_id, asyncio.Lock()):  # two uploads must not share the same room
        used = await used_bytes(hub, user_id)
        quota = hub.settings.user_quota_bytes
        if used + size > quota:
            raise ApiError(413, "Storage quota exceeded", "quota_exceeded",
                           f"{used} of {quota} bytes used, this file is {size} (LOOMI_USER_QUOTA_BYTES)")
        written, digest = await asyncio.to_thread(write_stream, source, target)
        row = {"id": file_id, "user_id": user_id, "name": name, "content_type": content_type[:200] or "application/octet-stream",
               "size_bytes": written, "sha256": digest, "source": kind, "created_at": now_ms()}
        try:
            async with hub.engine.begin() as conn:
                await file_store.create(conn, row)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
    return row


class ListQuery(Body):
    limit: int = Field(default=50, ge=1, le=200)
    offset: int = Field(default=0, ge=0, le=1_000_000)
    source: Literal["upload", "save", "insights"] | None = None


@endpoint(query=ListQuery)
async def list_files(request: Request, user: Principal, query: ListQuery):
    """The person's files, newest first: `{files, total, limit, offset}`."""
    async with hub_of(request).engine.connect() as conn:
        rows, total = await file_store.list_files(conn, user.id, source=query.source, limit=query.limit, offset=query.offset)
    return {"files": [file_json(r) for r in rows], "total": total, "limit": query.limit, "offset": query.offset}


async def _row(request: Request, user: Principal) -> dict[str, Any]:
    file_id = request.path_params["id"]
    row = None
    if _ID.match(file_id):
        async with hub_of(request).engine.connect() as conn:
            row = await file_store.get(conn, user.id, file_id)
    if row is None:
        raise file_not_found()
    return row


class GetQuery(Body):
    meta: bool = False


@endpoint(query=GetQuery)
async def get_file(request: Request, user: Principal, query: GetQuery):
    """The file's bytes (as an attachment), or `?meta=true` -> `{file}`."""
    row = await _row(request, user)
    if query.meta:
        return {"file": file_json(row)}
    path = file_path(hub_of(request), user.id, row["id"])
    if not await asyncio.to_thread(path.is_file):
        raise ApiError(404, "File content missing", "content_missing")
    return FileResponse(path, media_type=row["content_type"], filename=row["name"], content_disposition_type="attachment",
                        headers=SAFE_HEADERS)


@endpoint()
async def delete_file(request: Request, user: Principal):
    """Delete a file (row, then bytes): `{success, deleted}`; its room in the quota is free at once."""
    hub = hub_of(request)
    row = await _row(request, user)
    async with hub.engine.begin() as conn:
        if not await file_store.delete(conn, user.id, row["id"]):
            raise file_not_found()
    await asyncio.to_thread(file_path(hub, user.id, row["id"]).unlink, True)
    return {"success": True, "deleted": row["id"]}


async def _form(request: Request) -> Any:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise bad_request("Send the file as multipart/form-data", "invalid_input")
    try:
        return await request.form(max_files=1, max_fields=10)
    except Exception as err:  # python-multipart raises several types on malformed bodies
        if isinstance(getattr(err, "status", None), int):  # the body limit's 413
            raise
        raise bad_request("Malformed multipart body", "invalid_input", type(err).__name__) from None


@endpoint()
async def upload(request: Request, user: Principal):
    """Store the multipart `file` (optional field `name`): `{success, file}`."""
    hub = hub_of(request)
    form = await _form(request)
    try:
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise bad_request("Missing multipart file field `file`", "invalid_input")
        given = form.get("name")
        name = clean_name(given if isinstance(given, str) and given else part.filename)
        if "\x00" in name:
            raise bad_request("Invalid input", "invalid_input", "name: contains a NUL character")
        await part.seek(0)
        row = await store_bytes(hub, user.id, part.file, name=name, content_type=part.content_type or "application/octet-stream",
                                kind="upload", size=part.size or 0)
    finally:
        await form.close()
    return {"success": True, "file": file_json(row)}


class SaveBody(Body):
    name: str = Field(min_length=1, max_length=255)
    content: str = Field(max_length=1 << 20)
    content_type: str = Field(default="text/plain; charset=utf-8", max_length=200, alias="contentType")
    encoding: Literal["utf8", "utf-8", "base64"] = "utf8"


@endpoint(body=SaveBody)
async def save(request: Request, user: Principal, body: SaveBody):
    """Save JSON `{name, content, contentType?, encoding: utf8|base64}` as a file: `{success, file}`."""
    if body.encoding == "base64":
        try:
            data = base64.b64decode(body.content, validate=True)
        except (binascii.Error, ValueError):
            raise bad_request("`content` is not valid base64", "invalid_input") from None
    else:
        data = body.content.encode()
    row = await store_bytes(hub_of(request), user.id, io.BytesIO(data), name=clean_name(body.name),
                            content_type=body.content_type, kind="save", size=len(data))
    return {"success": True, "file": file_json(row)}


@endpoint()
async def usage(request: Request, user: Principal):
    """What the person's files take: `{usedBytes, quotaBytes, maxFileBytes, fileCount, bySource}`."""
    hub = hub_of(request)
    async with hub.engine.connect() as conn:
        by_source = await file_store.usage(conn, user.id)
    used = sum(size for _c, size in by_source.values())
    return {
        "usedBytes": used,
        "quotaBytes": hub.settings.user_quota_bytes,
        "availableBytes": max(hub.settings.user_quota_bytes - used, 0),
        "maxFileBytes": hub.settings.upload_max_bytes,
        "fileCount": sum(count for count, _s in by_source.values()),
        "bySource": {source: {"files": count, "bytes": size} for source, (count, size) in sorted(by_source.items())},
    }


async def all_insights(hub: Hub, user_id: str) -> list[dict[str, Any]]:
    """Every insight of the person (newest first, at most MAX_EXPORT), as GET /api/insights shows them."""
    out: list[dict[str, Any]] = []
    before = None
    async with hub.engine.connect() as conn:
        while len(out) < MAX_EXPORT:
            rows = await insight_store.list_insights(conn, user_id, before=before, limit=500)
            out.extend(insight_json(r) for r in rows)
            if len(rows) < 500:
                break
            before = (rows[-1]["as_of"], rows[-1]["id"])
    return out[:MAX_EXPORT]


def _bullets(title: str, values: list[Any]) -> list[str]:
    if not values:
        return []
    lines = [f"**{title}**", ""]
    for value in values:
        text = value.get("text") if isinstance(value, dict) else value
        lines.append(f"- {_md(str(text))}")
    return lines + [""]


def _md(text: str | None) -> str:
    """Text safe inside Markdown: one line, no raw HTML."""
    return re.sub(r"\s+", " ", (text or "")).replace("<", "&lt;").replace(">", "&gt;").strip()


def insights_markdown(items: list[dict[str, Any]], exported_at: str) -> str:
    lines = ["# Insights", "", f"Exported {exported_at}: {len(items)} insight(s).", ""]
    for item in items:
        lines += [f"## {_md(item['title']) or '(untitled)'}", ""]
        facts = [f"importance: {item['importance']}", f"urgency: {item['urgency']}", f"platform: {item['platform']}",
                 f"chat: {_md(item['chatName'] or item['chatId'])}"]
        if item.get("dueDate"):
            facts.append(f"due: {item['dueDate']}")
        lines += ["_" + " · ".join(facts) + "_", ""]
        if item.get("description"):
            lines += [_md(item["description"]), ""]
        lines += _bullets("My tasks", item["myTasks"]) + _bullets("Waiting for me", item["waitingForMe"])
        lines += _bullets("Waiting for others", item["waitingForOthers"]) + _bullets("Next actions", item["nextActions"])
    return "\n".join(lines).rstrip() + "\n"


async def export(hub: Hub, user_id: str, fmt: str) -> tuple[bytes, str, str]:
    """(bytes, file name, content type) of the person's insights as JSON or Markdown."""
    items = await all_insights(hub, user_id)
    now = datetime.now(timezone.utc)
    stamp = now.strftime("%Y%m%d-%H%M%S")
    exported_at = now.isoformat().replace("+00:00", "Z")
    if fmt == "md":
        return insights_markdown(items, exported_at).encode(), f"insights-{stamp}.md", "text/markdown; charset=utf-8"
    data = orjson.dumps({"exportedAt": exported_at, "count": len(items), "insights": items}, option=orjson.OPT_INDENT_2)
    return data, f"insights-{stamp}.json", "application/json"


class ExportQuery(Body):
    format: Literal["json", "md", "markdown"] = "json"


@endpoint(query=ExportQuery)
async def insights_download(request: Request, user: Principal, query: ExportQuery):
    """The person's insights as a JSON or Markdown attachment (`?format=json|md`)."""
    data, name, ctype = await export(hub_of(request), user.id, "md" if query.format != "json" else "json")
    return Response(data, media_type=ctype, headers={"Content-Disposition": f'attachment; filename="{name}"', **SAFE_HEADERS})


@endpoint(query=ExportQuery, query_in_body=True)
async def insights_save(request: Request, user: Principal, query: ExportQuery):
    """Save that export as one of the person's files (`{format}`): `{success, file, count}`."""
    hub = hub_of(request)
    data, name, ctype = await export(hub, user.id, "md" if query.format != "json" else "json")
    row = await store_bytes(hub, user.id, io.BytesIO(data), name=name, content_type=ctype, kind="insights", size=len(data))
    return {"success": True, "file": file_json(row), "sha256": hashlib.sha256(data).hexdigest()}


routes = [
    Route("/api/files/list", list_files, methods=["GET"]),
    Route("/api/files/upload", upload, methods=["POST"]),
    Route("/api/files/save", save, methods=["POST"]),
    Route("/api/files/usage", usage, methods=["GET"]),
    Route("/api/files/insights/download", insights_download, methods=["GET"]),
    Route("/api/files/insights/save", insights_save, methods=["POST"]),
    Route("/api/files/{id}", get_file, methods=["GET"]),
    Route("/api/files/{id}", delete_file, methods=["DELETE"]),
]
