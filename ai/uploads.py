"""Multipart input for the AI routes: file uploads and audio for transcription.

Files are kept under `$LOOMI_HOME/ai-uploads/<user id>/`: the content as `<file id>` and its
record as `<file id>.json`, so no uploaded name can land on a record (a file uploaded as
`file.json` once overwrote its own). One folder per user, so nothing is ever looked up across
users. The body is capped while it streams in (api/body_limit.py); the parsed part is checked
against `LOOMI_UPLOAD_MAX_BYTES` and the user's total against `LOOMI_USER_QUOTA_BYTES` before
anything is written under LOOMI_HOME.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
from starlette.datastructures import UploadFile
from starlette.requests import Request

from ai.types import AIError
from loomi.hub import Hub
from store.ids import new_id

_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_FILE_ID = re.compile(r"^file_[A-Za-z0-9_-]+$")
_quota_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)  # per user, in this process


def upload_dir(hub: Hub, user_id: str) -> Path:
    return Path(hub.settings.home) / "ai-uploads" / user_id


def content_path(hub: Hub, user_id: str, file_id: str) -> Path:
    """Where an upload's bytes live: named by its id, never by the name it was uploaded with."""
    if not _FILE_ID.match(file_id):
        raise ValueError(f"not a file id: {file_id!r}")
    return upload_dir(hub, user_id) / file_id


def used_bytes(hub: Hub, user_id: str) -> int:
    """What the user's uploads take now (contents only; records are small)."""
    folder = upload_dir(hub, user_id)
    if not folder.is_dir():
        return 0
    return sum(entry.stat().st_size for entry in os.scandir(folder) if entry.is_file() and _FILE_ID.match(entry.name))


async def _form(request: Request) -> Any:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise AIError(400, "Send the file as multipart/form-data", "invalid_input")
    try:
        return await request.form(max_files=1, max_fields=20)
    except Exception as err:  # python-multipart raises several types on malformed bodies
        if isinstance(getattr(err, "status", None), int):  # already an HTTP answer: the body limit's 413
            raise
        raise AIError(400, f"Malformed multipart body: {type(err).__name__}", "invalid_input") from None


def _file(form: Any, limit: int) -> UploadFile:
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise AIError(400, "Missing multipart field `file`", "invalid_input")
    if file.size is not None and file.size > limit:
        raise AIError(413, f"File too large: the limit is {limit} bytes (LOOMI_UPLOAD_MAX_BYTES)", "file_too_large")
    return file


def _fields(form: Any) -> dict[str, str]:
    return {k: v for k, v in form.multi_items() if isinstance(v, str)}


def safe_filename(name: str | None) -> str:
    cleaned = _SAFE_NAME.sub("_", Path(name or "upload").name).strip("._") or "upload"
    return cleaned[:200]


async def receive(request: Request, hub: Hub, user_id: str) -> dict[str, Any]:
    """Store the uploaded `file`; return an OpenAI-style file object."""
    settings = hub.settings
    form = await _form(request)
    try:
        file = _file(form, settings.upload_max_bytes)
        purpose = _fields(form).get("purpose") or "assistants"
        file_id = new_id("file")
        target = content_path(hub, user_id, file_id)
        filename = safe_filename(file.filename)

        def write() -> int:
            used = used_bytes(hub, user_id)
            file.file.seek(0, os.SEEK_END)
            size = file.file.tell()
            if used + size > settings.user_quota_bytes:
                raise AIError(
                    413,
                    f"Upload quota exceeded: {used} of {settings.user_quota_bytes} bytes used, this file is {size} "
                    "(LOOMI_USER_QUOTA_BYTES)",
                    "quota_exceeded",
                )
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            file.file.seek(0)
            with open(target, "xb") as out:
                shutil.copyfileobj(file.file, out, 1 << 20)
                return out.tell()

        async with _quota_locks[user_id]:  # two uploads at once must not both fit the same room
            size = await asyncio.to_thread(write)
    finally:
        await form.close()
    record = {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": int(time.time()),
        "filename": filename,
        "purpose": purpose,
        "status": "processed",
        "content_type": file.content_type or "application/octet-stream",
    }
    await asyncio.to_thread(target.with_name(f"{file_id}.json").write_bytes, orjson.dumps(record))
    return record


def _record_path(hub: Hub, user_id: str, file_id: str) -> Path | None:
    """The record of one of this user's uploads; None for anything that is not a file id."""
    if not _FILE_ID.match(file_id):
        return None
    return upload_dir(hub, user_id) / f"{file_id}.json"


def _not_found(file_id: str) -> AIError:
    # The same answer whether the file is someone else's or does not exist: ids are not probed.
    return AIError(404, f"No such file: {file_id[:80]}", "file_not_found")


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        data = orjson.loads(path.read_bytes())
    except (FileNotFoundError, NotADirectoryError, orjson.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


async def get_file(hub: Hub, user_id: str, file_id: str) -> dict[str, Any]:
    """One of the user's uploads as OpenAI's file object; 404 when it is not theirs."""
    path = _record_path(hub, user_id, file_id)
    record = await asyncio.to_thread(_read_record, path) if path is not None else None
    if record is None:
        raise _not_found(file_id)
    return record


def _list_records(folder: Path) -> list[dict[str, Any]]:
    if not folder.is_dir():
        return []
    records = []
    for entry in os.scandir(folder):
        if entry.name.endswith(".json") and _FILE_ID.match(entry.name[:-5]):
            record = _read_record(Path(entry.path))
            if record is not None:
                records.append(record)
    return records


async def list_files(
    hub: Hub, user_id: str, *, purpose: str | None = None, limit: int = 10_000, order: str = "desc", after: str | None = None
) -> dict[str, Any]:
    """The user's uploads, newest first (OpenAI's cursor page: `after` is the last id seen)."""
    records = await asyncio.to_thread(_list_records, upload_dir(hub, user_id))
    if purpose:
        records = [r for r in records if r.get("purpose") == purpose]
    records.sort(key=lambda r: (int(r.get("created_at") or 0), str(r.get("id"))), reverse=order != "asc")
    if after:
        ids = [r.get("id") for r in records]
        records = records[ids.index(after) + 1 :] if after in ids else []
    page = records[:limit]
    return {
        "object": "list",
        "data": page,
        "has_more": len(records) > len(page),
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
    }


async def file_content(hub: Hub, user_id: str, file_id: str) -> tuple[Path, dict[str, Any]]:
    """(where the bytes are, the record) of one of the user's uploads; 404 when not theirs."""
    record = await get_file(hub, user_id, file_id)
    path = content_path(hub, user_id, file_id)
    if not await asyncio.to_thread(path.is_file):
        raise _not_found(file_id)
    return path, record


async def delete_file(hub: Hub, user_id: str, file_id: str) -> dict[str, Any]:
    """Remove an upload (content, then record): its room in the quota is free at once."""
    record_path = _record_path(hub, user_id, file_id)
    if record_path is None:
        raise _not_found(file_id)

    def remove() -> bool:
        if not record_path.is_file():
            return False
        content_path(hub, user_id, file_id).unlink(missing_ok=True)
        record_path.unlink(missing_ok=True)
        return True

    async with _quota_locks[user_id]:
        if not await asyncio.to_thread(remove):
            raise _not_found(file_id)
    return {"id": file_id, "object": "file", "deleted": True}


def hub_of_request(request: Request) -> Hub:
    return request.app.state.hub


async def audio_form(request: Request) -> tuple[bytes, str, str, dict[str, str]]:
    """(audio bytes, filename, content type, other fields) of a transcription request."""
    form = await _form(request)
    try:
        file = _file(form, hub_of_request(request).settings.upload_max_bytes)
        audio = await file.read()
        return audio, safe_filename(file.filename), file.content_type or "application/octet-stream", _fields(form)
    finally:
        await form.close()
