"""Conformance driver for iMessage: a chat.db with the real macOS schema in a scratch folder,
written the way the Messages app writes it (tests/fakes/imessage.py: WAL, attributedBody
typedstreams, tapback rows), connected through `POST /api/imessage/init-self-listener {dbPath}`
and polled by the hub's worker.

Abilities: edit and delete (macOS 13+ edits and unsends change the row in place: the poller
re-reads recent changed rows), reply (inline replies, `thread_originator_guid`), attachment,
reaction (tapbacks), mention (`__kIMMentionConfirmedMention` runs in attributedBody), backfill: what chat.db held before connecting arrives because the poller's first run starts at
ROWID 0 (the whole history), and what was written while the hub was away because it resumes
at the saved ROWID; there is no separate history API, so the connector is no Backfiller and
the suite's gap job finds nothing to do. Not: send (no AppleScript bridge to Messages here),
webhook (none), disconnect (a file has
no connection to drop; a restart resuming at the saved ROWID is in
tests/connectors/imessage/test_listen.py), rate_limit (nothing remote).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from tests.fakes.imessage import ChatDb

ALICE = "+15550109999"


class Driver:
    platform = "imessage"
    abilities = {"edit", "delete", "reply", "attachment", "mention", "reaction", "backfill"}

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="loomi-imessage-"))
        self.messages = ChatDb(self.folder / "chat.db")
        self.chat = self.messages.chat([ALICE])

    async def start(self) -> dict[str, str]:
        return {}

    async def stop(self) -> None:
        self.messages.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    async def connect(self, hub: Any, headers: dict[str, str]) -> str:
        r = await hub.client.post("/api/imessage/init-self-listener", json={"dbPath": str(self.messages.path)}, headers=headers)
        assert r.status_code == 200, r.text
        return str(r.json()["account"]["id"])

    async def post_message(self, text: str, **kw: Any) -> str:
        attachment = {"name": "IMG_0042.jpeg", "mime_type": "image/jpeg", "size": 48_213} if kw.get("attachment") else None
        mentioned = None
        if kw.get("mention"):
            text, mentioned = f"@Me {text}", {"@Me": self.messages.me}
        return self.messages.message(self.chat, ALICE, text, reply_to=kw.get("reply_to"), attachment=attachment,
                                     mentions=mentioned)

    async def edit(self, native_id: str, text: str) -> None:
        self.messages.edit(native_id, text)

    async def delete(self, native_id: str) -> None:
        self.messages.unsend(native_id)

    async def react(self, native_id: str, emoji: str) -> None:
        self.messages.react(self.chat, ALICE, native_id, emoji)

    async def drop_connection(self) -> None:
        raise NotImplementedError("see the module docstring")

    async def seed_history(self, n: int) -> list[str]:
        return [self.messages.message(self.chat, ALICE, f"history {i}") for i in range(n)]

    async def forged_webhook(self, hub_url: str, account_id: str) -> int:
        raise NotImplementedError("iMessage has no webhooks")

    def sent_texts(self) -> list[str]:
        return []

    async def rate_limit_next(self, n: int) -> None:
        raise NotImplementedError("nothing remote to limit us")
