"""Where RAG bytes live: `$LOOMI_HOME/rag/<user id>/<document id>` and, while a chunked upload
is under way, `$LOOMI_HOME/rag/<user id>/uploads/<upload id>/<part index>`.

Named by id, never by the name a file was uploaded with, and one folder per user. Every write
goes to a temporary name first and is renamed into place, so a reader (or a resumed upload
counting its parts) never sees half a file.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import BinaryIO

_ID = re.compile(r"^[a-z]+_[A-Za-z0-9]+$")


def _checked(value: str) -> str:
    if not _ID.match(value):
        raise ValueError(f"not an id: {value!r}")
    return value


def user_dir(home: Path, user_id: str) -> Path:
    return Path(home) / "rag" / _checked(user_id)


def document_path(home: Path, user_id: str, document_id: str) -> Path:
    return user_dir(home, user_id) / _checked(document_id)


def upload_dir(home: Path, user_id: str, upload_id: str) -> Path:
    return user_dir(home, user_id) / "uploads" / _checked(upload_id)


def _private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)


def write_stream(source: BinaryIO, target: Path) -> tuple[int, str]:
    """Copy `source` to `target` atomically; (bytes, sha256 hex)."""
    _private_dir(target.parent)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    digest = hashlib.sha256()
    size = 0
    try:
        with open(tmp, "xb") as out:
            while block := source.read(1 << 20):
                digest.update(block)
                out.write(block)
                size += len(block)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return size, digest.hexdigest()


def received_parts(folder: Path, sizes: list[int]) -> list[int]:
    """Indexes of the parts already on disk with the size they must have."""
    if not folder.is_dir():
        return []
    out = []
    for entry in os.scandir(folder):
        if entry.name.isdigit() and int(entry.name) < len(sizes) and entry.stat().st_size == sizes[int(entry.name)]:
            out.append(int(entry.name))
    return sorted(out)


def assemble(folder: Path, parts: int, target: Path) -> str:
    """Concatenate parts 0..parts-1 into `target` (atomically); the sha256 of the whole."""
    _private_dir(target.parent)
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    digest = hashlib.sha256()
    try:
        with open(tmp, "xb") as out:
            for index in range(parts):
                with open(folder / str(index), "rb") as part:
                    while block := part.read(1 << 20):
                        digest.update(block)
                        out.write(block)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return digest.hexdigest()


def remove_tree(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
