"""`loomi import FILE.jsonl`: the same import as `POST /api/messages/import`, from a terminal.

Progress goes to stderr as a counter that rewrites its line (parsed lines, then stored
messages); the summary goes to stdout as JSON. Exit status 1 with the bad line named when
the file cannot be read: nothing is stored then.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Iterator

import orjson

from imports.apply import import_records
from imports.jsonl import parse_lines
from imports.records import BadInput


class Counter:
    """A one-line progress counter on stderr, redrawn at most 10 times a second."""

    def __init__(self, what: str) -> None:
        self.what, self.last = what, 0.0
        self.tty = sys.stderr.isatty()

    def show(self, done: int, total: int | None = None, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last < 0.1:
            return
        self.last = now
        of = f"/{total}" if total else ""
        end = "\n" if final or not self.tty else ""
        print(f"\r{self.what}: {done}{of}", end=end, file=sys.stderr, flush=True)


def _lines(path: Path, counter: Counter) -> Iterator[bytes]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if number == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            counter.show(number)
            yield line


async def run_import(hub, path: Path, email: str | None) -> int:  # noqa: ANN001 - loomi.hub.Hub
    from store.users import get_owner, get_user_by_email

    if not email:
        from loomi.owner import ensure_token_file

        await ensure_token_file(hub)  # the local owner, as `loomi serve` would make it
    async with hub.engine.connect() as conn:
        user = await (get_user_by_email(conn, email) if email else get_owner(conn))
    if user is None:
        print(f"loomi import: no user {email or '(owner)'}; create it first", file=sys.stderr)
        return 1
    parsing = Counter("read")
    try:
        records = list(parse_lines(_lines(path, parsing)))
    except BadInput as err:
        print(f"\nloomi import: {path}: {err}; nothing was imported", file=sys.stderr)
        return 1
    except UnicodeDecodeError:
        print(f"\nloomi import: {path} is not UTF-8 text; nothing was imported", file=sys.stderr)
        return 1
    parsing.show(len(records), final=True)
    writing = Counter("stored")
    result = await import_records(hub.engine, user["id"], records, progress=writing.show)
    writing.show(len(records), len(records), final=True)
    print(orjson.dumps(result.json()).decode())
    return 0
