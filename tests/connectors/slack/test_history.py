"""Backfill against FakeSlack: conversations.list, conversations.history paging, threads, `oldest`."""

from __future__ import annotations

import asyncio
import time

import pytest

from connectors.base import Account, ChangeKind, ChatType, RateLimited
from connectors.slack.connector import SlackConnector
from connectors.slack.history import slack_ts
from connectors.slack.inbound import ts_ms
from tests.fakes.slack import FakeSlack


async def test_list_chats(fake: FakeSlack, connector: SlackConnector, account: Account) -> None:
    fake.add_channel("G1", "secret", is_private=True)
    fake.add_channel("D1", "alice", is_im=True, user="U1")
    assert sorted(await connector.list_chats(account)) == ["C1", "D1", "G1"]


async def test_backfill_pages_with_cursor(fake: FakeSlack, connector: SlackConnector, account: Account,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("connectors.slack.history.PAGE_LIMIT", 2)
    stamps = [fake.add_history_only("C1", "U1", f"m{i}") for i in range(5)]
    await connector.list_chats(account)
    pages, cursor = [], None
    while True:
        page = await connector.backfill(account, "C1", cursor, None)
        pages.append(page)
        cursor = page.cursor
        if cursor is None:
            break
    assert [len(p.envelopes) for p in pages] == [2, 2, 1]
    envelopes = [e for p in pages for e in p.envelopes]
    assert [e.delivery_id for e in envelopes] == [f"C1:{ts}" for ts in reversed(stamps)]  # newest first
    first = envelopes[0]
    assert first.source == "backfill" and first.account_id == account.id
    assert first.payload["type"] == "history" and first.payload["channel_name"] == "general"

    changes = [c for e in envelopes for c in connector.normalize(e, account)]
    assert [c.message.text for c in changes] == ["m4", "m3", "m2", "m1", "m0"]
    assert all(c.kind == ChangeKind.UPSERT and c.chat_id == "C1" for c in changes)
    assert all(c.message.chat_type == ChatType.CHANNEL and c.message.chat_name == "general" for c in changes)
    assert fake.calls["conversations.history"] == 3


async def test_backfill_oldest_is_exclusive_gap_recovery(fake: FakeSlack, connector: SlackConnector,
                                                          account: Account) -> None:
    seen = fake.add_history_only("C1", "U1", "before the drop")
    missed = [fake.add_history_only("C1", "U1", f"missed {i}") for i in range(3)]
    page = await connector.backfill(account, "C1", None, seen)  # no list_chats: conversations.info
    assert [e.delivery_id for e in page.envelopes] == [f"C1:{ts}" for ts in reversed(missed)]
    assert page.cursor is None and fake.calls["conversations.info"] == 1


async def test_oldest_in_milliseconds(fake: FakeSlack, connector: SlackConnector, account: Account) -> None:
    seen = fake.add_history_only("C1", "U1", "before the drop")
    await asyncio.sleep(0.01)  # so that the two are more than a millisecond apart
    missed = fake.add_history_only("C1", "U1", "missed")
    page = await connector.backfill(account, "C1", None, str(ts_ms(seen) + 1))  # the hub's ms clock
    assert [e.delivery_id for e in page.envelopes] == [f"C1:{missed}"]
    assert slack_ts("1700000000123") == "1700000000.123000"
    assert slack_ts("1700000000.000100") == "1700000000.000100" and slack_ts("1700000000") == "1700000000"


async def test_backfill_includes_thread_replies(fake: FakeSlack, connector: SlackConnector, account: Account) -> None:
    fake.add_channel("D1", "alice", is_im=True, user="U1")
    parent = fake.add_history_only("D1", "U1", "question?")
    reply = fake.add_history_only("D1", fake.bot_user_id, "answer", thread_ts=parent)
    page = await connector.backfill(account, "D1", None, None)
    changes = {c.native_id: c.message for e in page.envelopes for c in connector.normalize(e, account)}
    assert set(changes) == {parent, reply}
    assert changes[parent].thread_id == parent and changes[parent].reply_to_id is None
    assert (changes[reply].thread_id, changes[reply].reply_to_id) == (parent, parent)
    assert changes[reply].is_self is True and changes[parent].is_self is False
    assert changes[parent].chat_type == ChatType.DM


async def test_backfill_obeys_retry_after(fake: FakeSlack, connector: SlackConnector, account: Account) -> None:
    fake.add_history_only("C1", "U1", "m")
    fake.fail_next("conversations.history", retry_after=1)
    started = time.monotonic()
    page = await connector.backfill(account, "C1", None, None)
    assert time.monotonic() - started >= 1.0 and len(page.envelopes) == 1
    assert fake.calls["conversations.history"] == 2

    fake.fail_next("conversations.history", retry_after=0, times=10)
    with pytest.raises(RateLimited) as err:  # bounded: the backfill job defers and tries later
        await connector.backfill(account, "C1", None, None)
    assert err.value.retry_after == 0
