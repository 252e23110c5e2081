"""Paths inside one person's workspace, opened so that none can lead out of it.

A relative path is checked as text first (no NUL or control characters, no backslash, no
empty, `.` or `..` component, not absolute, no percent-encoded separator left after the one
decoding the server did), then opened one component at a time from the workspace's own
directory descriptor with O_NOFOLLOW (openat-style): a symlink anywhere on the way is refused,
so a link planted inside the workspace can neither lead out nor be swapped in between a check
and the open. After opening, the descriptor's real path is checked to be under the root again.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from pathlib import Path
from typing import Iterator

MAX_PATH = 1024
MAX_DEPTH = 32
_ENCODED = re.compile(r"%(2f|5c|25|00|2e)", re.IGNORECASE)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


class UnsafePath(ValueError):
    """The path is refused (400): it could name something outside the workspace."""


class Missing(LookupError):
    """Nothing (or not a regular file / folder as needed) at that path (404)."""


def check_raw(raw_path: bytes | str) -> None:
    """The request's undecoded path: percent-encoded separators, NUL or dots are refused."""
    text = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else raw_path
    if _ENCODED.search(text):
        raise UnsafePath("percent-encoded separators, dots or NUL are not allowed")


def parts_of(path: str) -> list[str]:
    """The components of a relative workspace path, or UnsafePath."""
    if not path or len(path) > MAX_PATH:
        raise UnsafePath(f"the path must be 1 to {MAX_PATH} characters")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in path):
        raise UnsafePath("control characters (NUL included) are not allowed")
    if "\\" in path:
        raise UnsafePath("backslashes are not allowed")
    if path.startswith("/") or re.match(r"^[A-Za-z]:", path):
        raise UnsafePath("absolute paths are not allowed")
    if _ENCODED.search(path):
        raise UnsafePath("percent-encoded separators, dots or NUL are not allowed")
    parts = path.split("/")
    if parts and parts[-1] == "":
        parts.pop()  # one trailing slash names the same folder
    if not parts or any(p in ("", ".", "..") for p in parts):
        raise UnsafePath("empty, '.' and '..' components are not allowed")
    if len(parts) > MAX_DEPTH:
        raise UnsafePath(f"at most {MAX_DEPTH} levels deep")
    if any(len(p.encode()) > 255 for p in parts):
        raise UnsafePath("a component is longer than 255 bytes")
    return parts


def root_of(home: Path, user_id: str) -> Path:
    if not re.fullmatch(r"[a-z]+_[A-Za-z0-9]+", user_id):
        raise ValueError(f"not a user id: {user_id!r}")
    return Path(home) / "workspace" / user_id


def ensure_root(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True, mode=0o700)


def _inside(fd: int, root: Path) -> None:
    """After resolving: the opened object's real path must still be under the root."""
    proc = f"/proc/self/fd/{fd}"
    if not os.path.exists(proc):  # no procfs: the O_NOFOLLOW walk alone holds
        return
    real = os.path.realpath(proc)
    base = os.path.realpath(root)
    if real != base and not real.startswith(base + os.sep):
        raise UnsafePath("the path resolves outside the workspace")


def _open_dir(parent: int, name: str, create: bool) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        if not create:
            raise Missing(name) from None
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o700, dir_fd=parent)
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as err:  # ELOOP: a symlink; ENOTDIR: a file where a folder should be
        if stat.S_ISLNK(os.lstat(name, dir_fd=parent).st_mode):
            raise UnsafePath("symbolic links are not followed") from None
        raise Missing(name) from err


@contextlib.contextmanager
def parent_dir(root: Path, parts: list[str], *, create: bool = False) -> Iterator[int]:
    """A descriptor of the folder holding the last component, walked without following links."""
    ensure_root(root)
    fd = os.open(root, _DIR_FLAGS)
    try:
        for name in parts[:-1]:
            next_fd = _open_dir(fd, name, create)
            os.close(fd)
            fd = next_fd
        _inside(fd, root)
        yield fd
    finally:
        os.close(fd)


def read_file(root: Path, parts: list[str], limit: int | None = None) -> bytes:
    """The bytes of a regular file (at most `limit + 1` read when a limit is given)."""
    with parent_dir(root, parts) as dirfd:
        try:
            fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), dir_fd=dirfd)
        except FileNotFoundError:
            raise Missing(parts[-1]) from None
        except OSError:
            _refuse_link(dirfd, parts[-1])
            raise Missing(parts[-1]) from None
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise Missing(parts[-1])
            _inside(handle.fileno(), root)
            return handle.read() if limit is None else handle.read(limit + 1)


def stat_file(root: Path, parts: list[str]) -> os.stat_result:
    with parent_dir(root, parts) as dirfd:
        try:
            info = os.stat(parts[-1], dir_fd=dirfd, follow_symlinks=False)
        except FileNotFoundError:
            raise Missing(parts[-1]) from None
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePath("symbolic links are not followed")
    if not stat.S_ISREG(info.st_mode):
        raise Missing(parts[-1])
    return info


def _refuse_link(dirfd: int, name: str) -> None:
    with contextlib.suppress(OSError):
        if stat.S_ISLNK(os.lstat(name, dir_fd=dirfd).st_mode):
            raise UnsafePath("symbolic links are not followed")


def write_file(root: Path, parts: list[str], data: bytes) -> None:
    """Write atomically: a temporary name in the same folder, then renamed over the target.
    A symlink at the target is refused (and a rename would replace the link, never its target)."""
    with parent_dir(root, parts, create=True) as dirfd:
        with contextlib.suppress(FileNotFoundError):
            info = os.stat(parts[-1], dir_fd=dirfd, follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode):
                raise UnsafePath("a folder exists at that path")
            if stat.S_ISLNK(info.st_mode):
                raise UnsafePath("symbolic links are not followed")
        tmp = f".{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600, dir_fd=dirfd)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.replace(tmp, parts[-1], src_dir_fd=dirfd, dst_dir_fd=dirfd)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dirfd)
            raise


def delete_file(root: Path, parts: list[str]) -> None:
    """Remove a file (a symlink is refused, never followed); a folder only when empty."""
    with parent_dir(root, parts) as dirfd:
        try:
            info = os.stat(parts[-1], dir_fd=dirfd, follow_symlinks=False)
        except FileNotFoundError:
            raise Missing(parts[-1]) from None
        if stat.S_ISLNK(info.st_mode):
            raise UnsafePath("symbolic links are not followed")
        if stat.S_ISDIR(info.st_mode):
            try:
                os.rmdir(parts[-1], dir_fd=dirfd)
            except OSError:
                raise UnsafePath("the folder is not empty") from None
        else:
            os.unlink(parts[-1], dir_fd=dirfd)


def walk(root: Path, under: list[str] | None = None, limit: int = 5000) -> list[tuple[str, os.stat_result]]:
    """(relative path, stat) of regular files under `under`, links never followed, temp files skipped."""
    ensure_root(root)
    out: list[tuple[str, os.stat_result]] = []
    start = root.joinpath(*under) if under else root
    if under:
        with parent_dir(root, [*under, "x"]):  # every folder on the way: no symlink
            pass
    for folder, dirs, names in os.walk(start, followlinks=False):
        base = Path(folder).relative_to(root)
        dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(folder, d)))
        for name in sorted(names):
            if name.startswith(".") and name.endswith(".tmp"):
                continue
            info = os.lstat(os.path.join(folder, name))
            if stat.S_ISREG(info.st_mode):
                out.append(((base / name).as_posix(), info))
                if len(out) >= limit:
                    return out
    return out


def used_bytes(root: Path) -> tuple[int, int]:
    """(bytes, files) of everything under the root, links not followed."""
    total = count = 0
    if not root.is_dir():
        return 0, 0
    for folder, _dirs, names in os.walk(root, followlinks=False):
        for name in names:
            info = os.lstat(os.path.join(folder, name))
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
                count += 1
    return total, count
