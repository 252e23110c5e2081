"""Fixtures for the Discord connector tests: a FakeDiscord with a guild the bot is in,
settings aimed at it, an account for that guild, and RecordingAppContext, which stands in for
the supervisor's app-listener context."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable

import pytest

from config.settings import load_settings
from connectors.base import Account, AccountState, Envelope, WebhookEvent
from connectors.discord.connector import DiscordConnector
from connectors.discord.settings import DiscordSettings
from tests.fakes.discord import FakeDiscord


@dataclass
class RecordingAppContext:
    """An AppListenContext that records every call in order; `on_emit` runs inside emit (a
    slow write, a failure)."""

    platform: str = "discord"
    resume: dict[str, Any] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)
    emitted: list[WebhookEvent] = field(default_factory=list)
    on_emit: Callable[[list[WebhookEvent]], Any] | None = None

    async def emit(self, events: list[WebhookEvent], resume: dict[str, Any] | None = None) -> None:
        if self.on_emit is not None:
            result = self.on_emit(events)
            if asyncio.iscoroutine(result):
                await result
        self.emitted += events
        self.calls.append(("emit", [e.delivery_id for e in events]))
        if resume is not None:
            self.resume = resume

    async def report(self, state: AccountState, detail: str | None = None) -> None:
        self.calls.append(("report", state))

    async def reconnected(self) -> None:
        self.calls.append(("reconnected", None))

    def states(self) -> list[AccountState]:
        return [arg for name, arg in self.calls if name == "report"]

    def count(self, name: str) -> int:
        return sum(1 for n, _ in self.calls if n == name)

    def of(self, kind: str) -> list[WebhookEvent]:
        return [e for e in self.emitted if e.payload["t"] == kind]

    def envelopes(self, account: Account) -> list[Envelope]:
        """What the supervisor would queue for `account` (its guild's events)."""
        return [Envelope("discord", account.id, e.delivery_id, 0, e.payload) for e in self.emitted
                if e.external_id == account.external_id]


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(heartbeat_interval_ms=100) as server:
        yield server


@pytest.fixture
def world(fake: FakeDiscord) -> dict[str, str]:
    guild = fake.add_guild("Loomi HQ")
    return {"guild": guild, "general": fake.add_channel(guild, "general"), "alice": fake.add_user("alice"),
            "bob": fake.add_user("bob")}


def discord_settings(fake: FakeDiscord, **extra: str) -> DiscordSettings:
    env = {"LOOMI_DISCORD_BASE_URL": fake.base_url, "LOOMI_DISCORD_BOT_TOKEN": fake.bot_token,
           "LOOMI_DISCORD_CLIENT_ID": fake.client_id, "LOOMI_DISCORD_CLIENT_SECRET": fake.client_secret} | extra
    settings = load_settings(env).platform("discord")
    assert isinstance(settings, DiscordSettings)
    return settings


@pytest.fixture
def settings(fake: FakeDiscord) -> DiscordSettings:
    return discord_settings(fake)


@pytest.fixture
async def connector(settings: DiscordSettings) -> AsyncIterator[DiscordConnector]:
    discord = DiscordConnector(settings)
    discord.reidentify_delay = 0.05
    yield discord
    await discord.rest.close()


def make_account(fake: FakeDiscord, guild_id: str, account_id: str = "acct_discord") -> Account:
    return Account(id=account_id, user_id="usr_1", platform="discord", external_id=guild_id,
                   name=fake.guilds[guild_id]["name"], credentials={"bot_user_id": fake.client_id})


@pytest.fixture
def account(fake: FakeDiscord, world: dict[str, str]) -> Account:
    return make_account(fake, world["guild"])
