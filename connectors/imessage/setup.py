"""Connecting a Mac's Messages database: `{dbPath?}` (default `~/Library/Messages/chat.db`).

The account is a file on one machine: its external id is a hash of the machine's name and the
file's real path (the same Mac connected twice is the same account; two Macs are two). The
path is checked from the process that answers the API, which on a one-machine hub (`loomi
serve`) is the machine whose worker will read it.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
from pathlib import Path
from typing import Any

from connectors.base import AccountSpec, SetupContext
from connectors.imessage.chatdb import open_readonly

DEFAULT_PATH = "~/Library/Messages/chat.db"


async def connect(fields: dict[str, Any], setup: SetupContext) -> AccountSpec:
    raw = fields.get("dbPath") or DEFAULT_PATH
    if not isinstance(raw, str):
        raise ValueError("dbPath must be a path")
    path = Path(raw).expanduser()
    (await asyncio.to_thread(open_readonly, path)).close()  # ValueError naming the path: missing, not a chat.db
    real, host = str(path.resolve()), socket.gethostname()
    digest = hashlib.sha256(f"{host}\0{real}".encode()).hexdigest()[:24]
    # nothing secret: the path is the "credential" (an account without credentials counts as disconnected)
    return AccountSpec(external_id=f"chatdb:{digest}", name=f"iMessage on {host}", credentials={"db_path": real},
                       settings={"db_path": real, "host": host})
