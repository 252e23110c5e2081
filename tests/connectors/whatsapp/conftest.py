"""Fixtures for the WhatsApp Cloud API connector: one registered number, Meta's webhook side
and the Graph API fake (tests/fakes/whatsapp.py)."""

from __future__ import annotations

from typing import AsyncIterator

import pytest

from config.settings import PlatformSettings, load_settings
from connectors.base import Account
from tests.fakes.whatsapp import FakeGraph, Meta

NUMBER_ID, TOKEN = "106540352242922", "EAAGm0PX4ZCpsBAtestTokenForTheLoopbackGraph"
APP_SECRET, VERIFY = "0123456789abcdef0123456789abcdef", "my-verify-token"
ALICE, ALICE_NAME = "16505551234", "Alice"


def account(**credentials: str) -> Account:
    creds = {"access_token": TOKEN, "app_secret": APP_SECRET, "verify_token": VERIFY, **credentials}
    return Account(id="acct-wa-1", user_id="user-1", platform="whatsapp", external_id=NUMBER_ID, name="Loomi Test",
                   credentials={k: v for k, v in creds.items() if v}, settings={})


@pytest.fixture
def meta() -> Meta:
    return Meta(APP_SECRET, NUMBER_ID)


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    async with FakeGraph() as fake:
        fake.add_number(NUMBER_ID, TOKEN)
        yield fake


@pytest.fixture
def settings(graph: FakeGraph) -> PlatformSettings:
    return load_settings({"LOOMI_WHATSAPP_BASE_URL": graph.base_url}).platform("whatsapp")
