"""A chat.db with the real schema, written by a stand-in for the Messages app
(tests/fakes/imessage.py), and the account that reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from connectors.base import Account
from tests.fakes.imessage import ChatDb

ALICE, BOB = "+15551230001", "bob@example.com"


def account(path: Path) -> Account:
    return Account(id="acct-im-1", user_id="user-1", platform="imessage", external_id="chatdb:test", name="iMessage",
                   credentials={"db_path": str(path)}, settings={"db_path": str(path), "host": "test-mac"})


@pytest.fixture
def chatdb(tmp_path: Path) -> Iterator[ChatDb]:
    db = ChatDb(tmp_path / "chat.db")
    yield db
    db.close()
