"""Fixtures for the DingTalk connector: the loopback DingTalk (tests/fakes/dingtalk.py, in its
own thread), settings pointing the connector at it, one robot account, and a recording
ListenContext standing in for the supervisor."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator

import pytest

from config.settings import PlatformSettings, load_settings
from connectors.base import Account, AccountState, Envelope
from connectors.dingtalk.connector import DingTalkConnector
from tests.fakes.dingtalk import FakeDingTalk

APP, SECRET = "dingtestappkey01", "test-app-secret-0123456789"


@pytest.fixture
async def fake() -> AsyncIterator[FakeDingTalk]:
    async with FakeDingTalk(disconnect_grace=0.3) as fake:
        fake.add_app(APP, SECRET)
        yield fake


@pytest.fixture
def settings(fake: FakeDingTalk) -> PlatformSettings:
    return load_settings({"LOOMI_DINGTALK_BASE_URL": fake.base_url}).platform("dingtalk")


@pytest.fixture
def connector(settings: PlatformSettings) -> DingTalkConnector:
    return DingTalkConnector(settings, ping_interval=2.0, send_retry_budget=3.0)


def make_account(secret: str = SECRET) -> Account:
    return Account(id="acc-dingtalk-1", user_id="user-1", platform="dingtalk", external_id=APP,
                   name="DingTalk robot", credentials={"client_id": APP, "client_secret": secret})


class EmitFailed(Exception):
    """What LeaseLost or a Redis outage looks like to the listener."""


class RecordingContext:
    """Stands in for the supervisor's ListenContext: records emits and states; `gate` holds
    emit open so a test can look at what was acked meanwhile."""

    def __init__(self, account: Account) -> None:
        self.account = account
        self.resume: dict[str, Any] = {}
        self.emits: list[list[Envelope]] = []
        self.states: list[tuple[AccountState, str | None]] = []
        self.reconnects = 0
        self.fail_emits = 0
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()

    async def emit(self, envelopes: list[Envelope], resume: dict[str, Any] | None = None) -> None:
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_emits:
            self.fail_emits -= 1
            raise EmitFailed("stream unavailable")
        self.emits.append(list(envelopes))

    async def report(self, state: AccountState, detail: str | None = None) -> None:
        self.states.append((state, detail))

    async def reconnected(self) -> None:
        self.reconnects += 1

    @property
    def envelopes(self) -> list[Envelope]:
        return [e for batch in self.emits for e in batch]

    @property
    def ids(self) -> list[str]:
        return [e.delivery_id for e in self.envelopes]

    @property
    def texts(self) -> list[str]:
        return [e.payload.get("text", {}).get("content") for e in self.envelopes]


@contextlib.asynccontextmanager
async def running(connector: DingTalkConnector, ctx: RecordingContext) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(connector.listen(ctx))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
