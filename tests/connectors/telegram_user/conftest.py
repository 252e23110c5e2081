"""Fixtures for the Telegram user-account tests: a FakeTelegram whose client class Telethon's
code runs on (only the MTProto sender is replaced: see tests/fakes/telegram_user.py), settings
with the app's api id/hash, a signed-in account, and RecordingContext for the supervisor."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import pytest
from telethon.sessions import StringSession

from config.settings import load_settings
from connectors.base import Account, AccountState, Envelope
from connectors.telegram_user import client as tg
from connectors.telegram_user.connector import TelegramUserConnector
from connectors.telegram_user.settings import TelegramUserSettings
from tests.fakes.telegram_user import FakeTelegram

ALICE, BOB, GROUP, SUPERGROUP = 5550001, 5550002, 4440001, 1357913579
ENV = {"LOOMI_TELEGRAM_USER_API_ID": "12345", "LOOMI_TELEGRAM_USER_API_HASH": "0123456789abcdef0123456789abcdef"}


@dataclass
class RecordingContext:
    account: Account
    resume: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    emitted: list[Envelope] = field(default_factory=list)
    refuse: BaseException | None = None  # raise this from the next emit (a lost lease…)

    async def emit(self, envelopes: list[Envelope], resume: dict[str, Any] | None = None) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.emitted += envelopes
        self.calls.append(("emit", [e.delivery_id for e in envelopes]))
        if resume is not None:
            self.resume = resume

    async def report(self, state: AccountState, detail: str | None = None) -> None:
        self.calls.append(("report", state))

    async def reconnected(self) -> None:
        self.calls.append(("reconnected", None))

    def states(self) -> list[AccountState]:
        return [arg for name, arg in self.calls if name == "report"]

    def kinds(self) -> list[tuple[str, Any]]:
        return [(e.payload["kind"], e.payload.get("message", {}).get("message") or e.payload.get("ids")) for e in self.emitted]


@pytest.fixture
def world() -> Iterator[FakeTelegram]:
    fake = FakeTelegram()
    fake.add_user(ALICE, "Alice", "alice")
    fake.add_user(BOB, "Bob")
    fake.add_group(GROUP, "Book club")
    saved = tg.CLIENT_CLASS[0]
    tg.CLIENT_CLASS[0] = fake.client_class()
    yield fake
    tg.CLIENT_CLASS[0] = saved
    fake.sever()


@pytest.fixture
def settings() -> TelegramUserSettings:
    settings = load_settings(ENV).platform("telegram_user")
    assert isinstance(settings, TelegramUserSettings)
    return settings


@pytest.fixture
def connector(settings: TelegramUserSettings) -> TelegramUserConnector:
    return TelegramUserConnector(settings)


async def signed_in_session(world: FakeTelegram) -> str:
    """A session Telegram knows as signed in (made the way a login makes one)."""
    client = world.client_class()(StringSession(), 1, "x")
    await client.connect()
    world.authorize_all()
    session = client.session.save()
    await client.disconnect()
    return session


@pytest.fixture
async def account(world: FakeTelegram) -> Account:
    return Account(id="acc-tg", user_id="u1", platform="telegram_user", external_id=str(world.me_id), name="@loomi_me",
                   credentials={"session": await signed_in_session(world), "phone": world.phone})
