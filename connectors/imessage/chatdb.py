"""Reading chat.db: read-only, in short transactions, so Messages (which writes it in WAL mode
all the time) is never blocked and never sees a lock from us.

Opened as `file:<path>?mode=ro` (not `immutable=1`: that tells SQLite the file never changes,
so it would skip the WAL and miss or misread what Messages writes). Each poll is one
statement in its own implicit transaction; the connection is reused between polls. Rows come
out as plain dicts (JSON-ready: the attributedBody blob as base64) so they can be queued as
they are and normalized later.
"""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path
from typing import Any
from urllib.parse import quote

REQUIRED_TABLES = {"message", "handle", "chat", "chat_message_join", "attachment", "message_attachment_join"}
# message columns read here; date_edited/date_retracted arrived with macOS 13 (Ventura)
REQUIRED_COLUMNS = {"guid", "text", "attributedBody", "handle_id", "is_from_me", "date", "date_edited", "date_retracted",
                    "item_type", "group_title", "associated_message_guid", "associated_message_type",
                    "thread_originator_guid", "destination_caller_id", "cache_has_attachments"}

MESSAGES = """
SELECT m.ROWID AS rowid, m.guid, m.text, m.attributedBody AS attributed_body, m.service, m.is_from_me, m.date,
       m.date_edited, m.date_retracted, m.item_type, m.group_title, m.associated_message_guid, m.associated_message_type,
       m.thread_originator_guid, m.reply_to_guid, m.destination_caller_id, m.account, m.cache_has_attachments,
       h.id AS handle, c.guid AS chat_guid, c.chat_identifier, c.display_name, c.style AS chat_style
FROM message m
LEFT JOIN handle h ON h.ROWID = m.handle_id
LEFT JOIN chat_message_join cmj ON cmj.message_id = m.ROWID
LEFT JOIN chat c ON c.ROWID = cmj.chat_id
WHERE {where}
ORDER BY m.ROWID
LIMIT ?
"""
NEW = MESSAGES.format(where="m.ROWID > ?")
# Apple allows editing for 15 minutes and unsending for 2: only recent rows can change, so the
# scan is a primary-key range (the last EDIT_WINDOW_ROWS rows), never the whole table
EDITED = MESSAGES.format(where="m.ROWID > ? AND (m.date_edited > ? OR m.date_retracted > ?)")
EDIT_WINDOW_ROWS = 2000

ATTACHMENTS = """
SELECT maj.message_id, a.guid, a.filename, a.mime_type, a.uti, a.transfer_name, a.total_bytes
FROM message_attachment_join maj JOIN attachment a ON a.ROWID = maj.attachment_id
WHERE maj.message_id IN ({ids})
ORDER BY a.ROWID
"""


def open_readonly(path: str | Path) -> sqlite3.Connection:
    """A read-only connection; raises ValueError naming the path when it is not a readable chat.db."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"no Messages database at {file}: iMessage can be read only on the Mac that holds it")
    try:
        db = sqlite3.connect(f"file:{quote(str(file.resolve()))}?mode=ro", uri=True, timeout=2.0, check_same_thread=False)
        db.row_factory = sqlite3.Row
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as err:
        raise ValueError(f"cannot read {file} ({err}); on macOS the process needs Full Disk Access") from None
    if not REQUIRED_TABLES <= tables:
        db.close()
        raise ValueError(f"{file} is not a Messages database (missing tables {sorted(REQUIRED_TABLES - tables)})")
    columns = {r[1] for r in db.execute("PRAGMA table_info(message)")}
    if not REQUIRED_COLUMNS <= columns:
        db.close()
        raise ValueError(f"{file} is from a macOS older than 13 (message lacks {sorted(REQUIRED_COLUMNS - columns)})")
    return db


def read_after(db: sqlite3.Connection, rowid: int, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` messages with ROWID > `rowid`, oldest first, each with its chat and attachments."""
    return _complete(db, [dict(r) for r in db.execute(NEW, (rowid, limit))])


def read_edited(db: sqlite3.Connection, up_to_rowid: int, since: int, limit: int) -> list[dict[str, Any]]:
    """Messages among the recent rows (ROWID <= `up_to_rowid`) edited or unsent after `since`
    (Apple's nanoseconds), marked `"change": "edit"`."""
    rows = [dict(r) for r in db.execute(EDITED, (up_to_rowid - EDIT_WINDOW_ROWS, since, since, limit))]
    rows = [r for r in rows if r["rowid"] <= up_to_rowid]  # newer rows arrive as new messages
    return [{**r, "change": "edit"} for r in _complete(db, rows)]


def _complete(db: sqlite3.Connection, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: dict[int, dict[str, Any]] = {}
    for row in rows:  # a message in two chats (rare: merged SMS/iMessage threads) is read once
        seen.setdefault(row["rowid"], row)
    messages = list(seen.values())
    with_files = [m["rowid"] for m in messages if m["cache_has_attachments"]]
    files: dict[int, list[dict[str, Any]]] = {}
    if with_files:
        query = ATTACHMENTS.format(ids=",".join("?" * len(with_files)))
        for a in db.execute(query, with_files):
            files.setdefault(a["message_id"], []).append({k: a[k] for k in a.keys() if k != "message_id"})
    for m in messages:
        body = m.pop("attributed_body")
        m["attributed_body"] = base64.b64encode(body).decode() if body else None
        m["attachments"] = files.get(m["rowid"], [])
    return messages
