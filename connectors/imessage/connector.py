"""IMessageConnector: a Mac's Messages database, polled.

Abilities: Connector (listen: polls chat.db by ROWID; normalize; send refuses: see below) and
CredentialSetup (`connect` with `{dbPath?}`: checks the file is a readable chat.db, else a
ValueError naming the path -> 400). No webhooks, no backfill (the poller reads the whole
history on its first run), no sending: Messages can be driven only through AppleScript on
the Mac itself, and this hub has no such bridge.

Per account: external id `chatdb:<hash of host and path>`; credentials `db_path` (nothing
secret); settings `db_path`, `host`.
"""

from __future__ import annotations

import os

from typing import Any, ClassVar

from config.settings import PlatformSettings
from connectors.base import Account, AccountSpec, Change, Envelope, ListenContext, Outbound, Sent, SetupContext
from connectors.imessage.inbound import normalize as normalize_row
from connectors.imessage.listen import poll
from connectors.imessage.setup import connect as connect_db


class SendingUnavailable(Exception):
    """iMessage sending needs an AppleScript bridge to Messages on the Mac; this hub has none."""


class IMessageConnector:
    platform: ClassVar[str] = "imessage"

    def __init__(self, settings: PlatformSettings, *, poll_seconds: float = 1.0, batch: int = 500) -> None:
        self.settings = settings
        self.poll_seconds = poll_seconds
        self.batch = batch

    async def listen(self, ctx: ListenContext) -> None:
        await poll(ctx, interval=self.poll_seconds, batch=self.batch)

    def normalize(self, envelope: Envelope, account: Account) -> list[Change]:
        return normalize_row(envelope, account)

    async def send(self, account: Account, outbound: Outbound) -> Sent:
        raise SendingUnavailable(
            "sending iMessages is not available: it needs an AppleScript bridge to Messages on the Mac, "
            "which this hub does not have (reading works)")

    async def connect(self, fields: dict[str, Any], setup: SetupContext) -> AccountSpec:
        return await connect_db(fields, setup)

    def listens_here(self, settings: dict[str, Any]) -> bool:
        """Only a worker on the Mac that holds the database can read it."""
        path = settings.get("db_path")
        return isinstance(path, str) and os.access(path, os.R_OK)
