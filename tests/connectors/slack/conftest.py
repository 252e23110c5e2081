"""Fixtures for the Slack connector tests: a FakeSlack workspace, settings aimed at it, an
account installed in it, and RecordingContext, which stands in for the listener supervisor."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

import pytest

from config.settings import PlatformSettings, load_settings
from connectors.base import Account, AccountState, Envelope
from connectors.slack.connector import SlackConnector
from tests.fakes.slack import FakeSlack

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


@dataclass
class RecordingContext:
    """A ListenContext that stands in for the supervisor (workers/, the lead's): it records
    every call in order, and what the fake had acked at the moment of each emit."""

    account: Account
    fake: FakeSlack
    resume: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    emitted: list[Envelope] = field(default_factory=list)
    acked_at_emit: list[set[str]] = field(default_factory=list)
    on_emit: Callable[[list[Envelope]], Any] | None = None

    async def emit(self, envelopes: list[Envelope], resume: dict[str, Any] | None = None) -> None:
        self.acked_at_emit.append(set(self.fake.acked_event_ids))
        self.emitted += envelopes
        self.calls.append(("emit", [e.delivery_id for e in envelopes]))
        if resume is not None:
            self.resume = resume
        if self.on_emit is not None:
            result = self.on_emit(envelopes)
            if asyncio.iscoroutine(result):
                await result

    async def report(self, state: AccountState, detail: str | None = None) -> None:
        self.calls.append(("report", state))

    async def reconnected(self) -> None:
        self.calls.append(("reconnected", None))

    def states(self) -> list[AccountState]:
        return [arg for name, arg in self.calls if name == "report"]

    def count(self, name: str) -> int:
        return sum(1 for n, _ in self.calls if n == name)

    def delivery_ids(self) -> list[str]:
        return [e.delivery_id for e in self.emitted]


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(ack_timeout=1.0) as slack:
        slack.add_channel("C1", "general")
        slack.add_user("U1", "alice")
        yield slack


@pytest.fixture
def settings(fake: FakeSlack) -> PlatformSettings:
    return load_settings({
        "LOOMI_SLACK_BASE_URL": fake.base_url,
        "LOOMI_SLACK_APP_TOKEN": fake.app_token,
        "LOOMI_SLACK_SIGNING_SECRET": SIGNING_SECRET,
    }).platform("slack")


@pytest.fixture
def connector(settings: PlatformSettings) -> SlackConnector:
    slack = SlackConnector(settings)
    slack.ping_interval = 0.1  # how often slack_sdk checks its socket: reconnects in ~0.1 s
    return slack


def make_account(fake: FakeSlack, **credentials: Any) -> Account:
    creds = {"access_token": fake.bot_token, "bot_user_id": fake.bot_user_id, "bot_id": fake.bot_id,
             "team_id": fake.team_id} | credentials
    return Account(id="acct_slack", user_id="usr_1", platform="slack", external_id=fake.team_id,
                   name=fake.team_name, credentials=creds)


@pytest.fixture
def account(fake: FakeSlack) -> Account:
    return make_account(fake)
