"""Multipart input for the AI routes: file uploads and audio for transcription.

Files are kept under `$LOOMI_HOME/ai-uploads/<user id>/<file id>/` with a small JSON record,
one folder per user so nothing is ever looked up across users. Sizes are checked against
Content-Length before parsing and again on the parsed part, so an oversized body is refused
without being written anywhere permanent.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import time
from pathlib import Path
from typing import Any

import orjson
from starlette.datastructures import UploadFile
from starlette.requests import Request

from ai.types import AIError
from loomi.hub import Hub
from store.ids import new_id

MAX_UPLOAD_BYTES = 25 * 1024 * 1024  # OpenAI's limit for audio; plenty for documents
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def upload_dir(hub: Hub, user_id: str) -> Path:
    return Path(hub.settings.home) / "ai-uploads" / user_id


async def _form(request: Request) -> Any:
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise AIError(400, "Send the file as multipart/form-data", "invalid_input")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_UPLOAD_BYTES + 64 * 1024:
        raise AIError(413, f"File too large: the limit is {MAX_UPLOAD_BYTES} bytes", "file_too_large")
    try:
        return await request.form(max_files=1, max_fields=20)
    except Exception as err:  # python-multipart raises several types on malformed bodies
        raise AIError(400, f"Malformed multipart body: {type(err).__name__}", "invalid_input") from None


def _file(form: Any) -> UploadFile:
    file = form.get("file")
    if not isinstance(file, UploadFile):
        raise AIError(400, "Missing multipart field `file`", "invalid_input")
    if file.size is not None and file.size > MAX_UPLOAD_BYTES:
        raise AIError(413, f"File too large: the limit is {MAX_UPLOAD_BYTES} bytes", "file_too_large")
    return file


def _fields(form: Any) -> dict[str, str]:
    return {k: v for k, v in form.multi_items() if isinstance(v, str)}


def safe_filename(name: str | None) -> str:
    cleaned = _SAFE_NAME.sub("_", Path(name or "upload").name).strip("._") or "upload"
    return cleaned[:200]


async def receive(request: Request, hub: Hub, user_id: str) -> dict[str, Any]:
    """Store the uploaded `file`; return an OpenAI-style file object."""
    form = await _form(request)
    try:
        file = _file(form)
        purpose = _fields(form).get("purpose") or "assistants"
        file_id = new_id("file")
        folder = upload_dir(hub, user_id) / file_id
        filename = safe_filename(file.filename)

        def write() -> int:
            folder.mkdir(parents=True, exist_ok=True)
            with open(folder / filename, "wb") as out:
                file.file.seek(0)
                shutil.copyfileobj(file.file, out, 1 << 20)
                return out.tell()

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
    await asyncio.to_thread((folder / "file.json").write_bytes, orjson.dumps(record))
    return record


async def audio_form(request: Request) -> tuple[bytes, str, str, dict[str, str]]:
    """(audio bytes, filename, content type, other fields) of a transcription request."""
    form = await _form(request)
    try:
        file = _file(form)
        audio = await file.read()
        return audio, safe_filename(file.filename), file.content_type or "application/octet-stream", _fields(form)
    finally:
        await form.close()
