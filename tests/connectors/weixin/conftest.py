"""Fixtures for the WeChat (iLink) connector: the loopback iLink API (tests/fakes/weixin.py),
settings pointing the connector at it, one bot account, and a recording ListenContext."""

from __future__ import annotations

from typing import Any, AsyncIterator

import pytest

from config.settings import PlatformSettings, load_settings
from connectors.base import Account, AccountState, Envelope
from tests.fakes.weixin import FakeWeixin

ALICE, BOB = "o9alice@im.wechat", "o9bob@im.wechat"


@pytest.fixture
async def fake() -> AsyncIterator[FakeWeixin]:
    async with FakeWeixin(poll_hold=2.0) as server:
        yield server


@pytest.fixture
def settings(fake: FakeWeixin) -> PlatformSettings:
    return load_settings({"LOOMI_WEIXIN_BASE_URL": fake.base_url}).platform("weixin")


@pytest.fixture
def token(fake: FakeWeixin) -> str:
    return fake.add_bot(owner="o9owner@im.wechat")


def make_account(fake: FakeWeixin, token: str) -> Account:
    return Account(id="acc-weixin-1", user_id="user-1", platform="weixin", external_id=fake.bot_id(token),
                   name="WeChat bot", credentials={"bot_token": token, "base_url": fake.base_url})


class EmitFailed(Exception):
    """What LeaseLost or a Redis outage looks like to the listener."""


class RecordingContext:
    """Stands in for the supervisor's ListenContext: records emits, resume and states."""

    def __init__(self, account: Account, resume: dict[str, Any] | None = None) -> None:
        self.account = account
        self.resume: dict[str, Any] = dict(resume or {})
        self.emits: list[tuple[list[Envelope], dict[str, Any] | None]] = []
        self.states: list[AccountState] = []
        self.reconnects = 0
        self.fail_emits = 0

    async def emit(self, envelopes: list[Envelope], resume: dict[str, Any] | None = None) -> None:
        if self.fail_emits:
            self.fail_emits -= 1
            raise EmitFailed("stream unavailable")
        self.emits.append((list(envelopes), resume))
        if resume is not None:
            self.resume = dict(resume)

    async def report(self, state: AccountState, detail: str | None = None) -> None:
        self.states.append(state)

    async def reconnected(self) -> None:
        self.reconnects += 1

    @property
    def envelopes(self) -> list[Envelope]:
        return [e for batch, _ in self.emits for e in batch]

    @property
    def ids(self) -> list[str]:
        return [e.delivery_id for e in self.envelopes]
