"""Fixtures for the X connector tests: a FakeX with the person and Alice, settings aimed at it,
the person's account with a live token, and RecordingContext standing in for the supervisor."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import pytest

from config.settings import load_settings
from connectors.base import Account, AccountState, Envelope
from connectors.x.connector import XConnector
from connectors.x.settings import XSettings
from tests.fakes.x import FakeX

ME, ALICE, BOB = "1700000000000000001", "1700000000000000002", "1700000000000000003"


@dataclass
class RecordingContext:
    account: Account
    resume: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    emitted: list[Envelope] = field(default_factory=list)

    async def emit(self, envelopes: list[Envelope], resume: dict[str, Any] | None = None) -> None:
        self.emitted += envelopes
        self.calls.append(("emit", [e.delivery_id for e in envelopes]))
        if resume is not None:
            self.resume = resume

    async def report(self, state: AccountState, detail: str | None = None) -> None:
        self.calls.append(("report", (state, detail)))

    async def reconnected(self) -> None:
        self.calls.append(("reconnected", None))

    def states(self) -> list[AccountState]:
        return [arg[0] for name, arg in self.calls if name == "report"]

    def texts(self) -> list[str]:
        return [e.payload.get("tweet", e.payload.get("event", {})).get("text") for e in self.emitted]


@pytest.fixture
async def fake() -> AsyncIterator[FakeX]:
    async with FakeX() as x:
        x.add_user(ME, "loomi_person", "Loomi Person")
        x.add_user(ALICE, "alice")
        x.add_user(BOB, "bob")
        yield x


def x_settings(fake: FakeX, **extra: str) -> XSettings:
    settings = load_settings({"LOOMI_X_BASE_URL": fake.base_url, "LOOMI_X_CLIENT_ID": fake.client_id,
                              "LOOMI_X_CLIENT_SECRET": fake.client_secret, "LOOMI_X_POLL_SECONDS": "0.05",
                              **extra}).platform("x")
    assert isinstance(settings, XSettings)
    return settings


@pytest.fixture
def connector(fake: FakeX) -> XConnector:
    return XConnector(x_settings(fake))


def make_account(fake: FakeX, ttl: int = 7200) -> Account:
    token = fake.issue_token(ME, ttl)
    return Account(id="acc-x", user_id="u1", platform="x", external_id=ME, name="@loomi_person",
                   credentials={"access_token": token["access_token"], "refresh_token": token["refresh_token"],
                                "user_id": ME, "expires_at": int(time.time() * 1000) + ttl * 1000})


@pytest.fixture
def account(fake: FakeX) -> Account:
    return make_account(fake)
