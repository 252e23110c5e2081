"""Fixtures for the Feishu connector: the loopback Feishu (tests/fakes/feishu.py) with one app,
two people and two chats; the connector pointed at it; and a recording ListenContext."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

import pytest

from config.settings import PlatformSettings
from connectors.base import Account, AccountState, Envelope
from connectors.feishu.connector import FeishuConnector
from tests.fakes.feishu import FakeFeishu

APP, SECRET, BOT = "cli_loomi_test", "app-secret-1", "ou_loomi_bot"
ALICE, BOB = "ou_alice", "ou_bob"
GROUP, DM = "oc_group_team", "oc_dm_alice"


@pytest.fixture
async def fs() -> AsyncIterator[FakeFeishu]:
    async with FakeFeishu(reconnect_interval=1, reconnect_nonce=0) as fake:
        fake.add_app(APP, SECRET, name="Loomi", bot_open_id=BOT)
        fake.add_user(ALICE, "Alice")
        fake.add_user(BOB, "Bob")
        fake.add_chat(GROUP, "Team", "group")
        fake.add_chat(DM, "Alice", "p2p")
        yield fake


@pytest.fixture
def connector(fs: FakeFeishu) -> FeishuConnector:
    return FeishuConnector(PlatformSettings(base_url=fs.base_url))


def make_account(secret: str = SECRET, app_id: str = APP, account_id: str = "acc-feishu-1", **creds: str) -> Account:
    return Account(
        id=account_id, user_id="user-1", platform="feishu", external_id=app_id, name="Loomi",
        credentials={"app_id": app_id, "app_secret": secret, "bot_open_id": BOT, **creds},
        settings={"mode": "websocket"},
    )


class EmitFailed(Exception):
    """What LeaseLost or a Redis outage looks like to the listener."""


class RecordingContext:
    """Stands in for the supervisor's ListenContext: records emits, states and reconnects."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self.resume: dict[str, Any] = {}
        self.emits: list[list[Envelope]] = []
        self.states: list[AccountState] = []
        self.reconnects = 0
        self.fail_emits = 0
        self.emit_delay = 0.0

    async def emit(self, envelopes: list[Envelope], resume: dict[str, Any] | None = None) -> None:
        if self.emit_delay:
            await asyncio.sleep(self.emit_delay)
        if self.fail_emits:
            self.fail_emits -= 1
            raise EmitFailed("stream unavailable")
        self.emits.append(list(envelopes))

    async def report(self, state: AccountState, detail: str | None = None) -> None:
        self.states.append(state)

    async def reconnected(self) -> None:
        self.reconnects += 1

    @property
    def envelopes(self) -> list[Envelope]:
        return [e for batch in self.emits for e in batch]

    @property
    def ids(self) -> list[str]:
        return [e.delivery_id for e in self.envelopes]


@contextlib.asynccontextmanager
async def running(connector: FeishuConnector, ctx: RecordingContext) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(connector.listen(ctx))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
