"""Fixtures for the Telegram connector: the loopback Bot API (tests/fakes/telegram.py), settings
pointing the connector at it, and one bot account."""

from __future__ import annotations

from typing import AsyncIterator

import pytest

from config.settings import PlatformSettings, load_settings
from connectors.base import Account
from connectors.telegram.connector import TelegramConnector
from tests.fakes.telegram import FakeTelegram

TOKEN = "123456:AAloomiTestToken_abcdefghijklmnopqrst"
BOT_ID = 123456
SECRET = "W3bh00kSecret_0123456789abcdefgh"
ALICE = {"id": 5001, "first_name": "Alice", "last_name": "Smith", "username": "alice_s"}
BOB = {"id": 5002, "first_name": "Bob", "username": "bob_jones"}
PRIVATE, GROUP, FORUM, CHANNEL = 5001, -1001500000001, -1001500000002, -1001500000003


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(webhook_retry_delays=(0.05,)) as fake:
        fake.add_bot(TOKEN, BOT_ID, "loomi_test_bot", first_name="Loomi")
        fake.add_chat(PRIVATE, "private", first_name="Alice", username="alice_s")
        fake.add_chat(GROUP, "supergroup", "Team chat")
        fake.add_chat(FORUM, "supergroup", "Forum", is_forum=True)
        fake.add_chat(CHANNEL, "channel", "Announcements", username="acme_news")
        yield fake


@pytest.fixture
def settings(tg: FakeTelegram) -> PlatformSettings:
    return load_settings({"LOOMI_TELEGRAM_BASE_URL": tg.base_url}).platform("telegram")


@pytest.fixture
def connector(settings: PlatformSettings) -> TelegramConnector:
    return TelegramConnector(settings, poll_timeout=5)


def make_account(token: str = TOKEN, **settings: str) -> Account:
    return Account(
        id="acc-telegram-1",
        user_id="user-1",
        platform="telegram",
        external_id=str(BOT_ID),
        name="@loomi_test_bot",
        credentials={"bot_token": token, "bot_id": BOT_ID, "webhook_secret": SECRET},
        settings=dict(settings),
    )