"""`loomi import PATH`: the same import as `POST /api/messages/import`, from a terminal.

PATH is hub JSONL, a Slack export zip, Telegram Desktop's result.json or a WhatsApp chat
export (.txt or .zip), told apart by content (imports/detect.py). Progress goes to stderr as a
line that rewrites itself (parsed lines, then a bar of stored messages); the summary goes to
stdout as JSON. Exit status 1 with the bad line or entry named when the file cannot be read:
nothing is stored then.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import orjson

from imports.apply import import_records
from imports.detect import Options, Parsed, pretty_json, detect, parse_export, summary
from imports.jsonl import parse_lines
from imports.records import BadInput

BAR = 30
DETECT_WHOLE = 256 << 20  # files up to this size are read whole to tell their format


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
        if total:
            filled = round(BAR * done / total)
            of += f" [{'#' * filled}{'.' * (BAR - filled)}] {100 * done // total}%"
        end = "\n" if final or not self.tty else ""
        print(f"\r{self.what}: {done}{of}", end=end, file=sys.stderr, flush=True)


def _lines(path: Path, counter: Counter) -> Iterator[bytes]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if number == 1 and line.startswith(b"\xef\xbb\xbf"):
                line = line[3:]
            counter.show(number)
            yield line


def _parse_file(path: Path, options: Options, counter: Counter) -> Parsed:
    """Detect the format, then parse: JSONL streams line by line (it can be large), an export
    is read whole."""
    kind = options.format
    if kind is None:
        if path.stat().st_size <= DETECT_WHOLE:
            kind = detect(path.read_bytes())
        else:  # too large to read twice: a zip or a JSON document by its start, else lines
            with path.open("rb") as handle:
                head = handle.read(1 << 16)
            kind = None if head.startswith(b"PK") or pretty_json(head) else detect(head)
    if kind == "jsonl":
        return Parsed("jsonl", list(parse_lines(_lines(path, counter))))
    parsed = parse_export(path.read_bytes(), replace(options, format=kind, filename=options.filename or path.name))
    counter.show(len(parsed.records))
    return parsed


async def run_import(hub, path: Path, email: str | None, options: Options | None = None) -> int:  # noqa: ANN001 - loomi.hub.Hub
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
        parsed = _parse_file(path, options or Options(), parsing)
        records = parsed.records
    except BadInput as err:
        print(f"\nloomi import: {path}: {err}; nothing was imported", file=sys.stderr)
        return 1
    except UnicodeDecodeError:
        print(f"\nloomi import: {path} is not UTF-8 text; nothing was imported", file=sys.stderr)
        return 1
    parsing.show(len(records), final=True)
    if not records:
        print(f"loomi import: {path}: no messages to import", file=sys.stderr)
        return 1
    writing = Counter("stored")
    result = await import_records(hub.engine, user["id"], records, progress=writing.show)
    writing.show(len(records), len(records), final=True)
    print(orjson.dumps(summary(parsed, result.json())).decode())
    return 0
