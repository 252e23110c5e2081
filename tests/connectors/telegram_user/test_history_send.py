"""Backfill per dialog and send, with Telethon's get_dialogs / get_messages / send_message on
FakeTelegram (messages.getDialogs, messages.getHistory with offset ids, messages.sendMessage,
FLOOD_WAIT)."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from connectors.base import Account, AccountState, ChangeKind, Envelope, NeedsReauth, Outbound, RateLimited
from connectors.telegram_user.connector import TelegramUserConnector
from tests.connectors.telegram_user.conftest import ALICE, BOB, GROUP, SUPERGROUP, RecordingContext
from tests.fakes.telegram_user import FakeTelegram
from tests.waiting import wait_until


async def test_dialogs_and_history_pages_by_offset_id(world: FakeTelegram, connector: TelegramUserConnector,
                                                      account: Account) -> None:
    old = [world.post(ALICE, f"old {i}", history_only=True) for i in range(230)]
    world.post(BOB, "in the group", group=GROUP, history_only=True)
    assert sorted(await connector.list_chats(account)) == sorted([str(ALICE), str(-GROUP)])
    pages, cursor = [], None
    while True:
        page = await connector.backfill(account, str(ALICE), cursor, None)
        pages.append(page)
        cursor = page.cursor
        if cursor is None:
            break
    assert [len(p.envelopes) for p in pages] == [100, 100, 30]
    ids = [int(e.payload["message"]["id"]) for p in pages for e in p.envelopes]
    assert ids == sorted((m.id for m in old), reverse=True)  # newest first, each once
    envelope = pages[0].envelopes[0]
    assert envelope.source == "backfill" and envelope.delivery_id == f"msg:{ALICE}:{old[-1].id}"
    (change,) = connector.normalize(envelope, account)
    assert change.kind is ChangeKind.UPSERT and change.message.text == "old 229" and change.message.chat_name == "Alice"
    offsets = [r for r in world.requests if r == "GetHistoryRequest"]
    assert len(offsets) == 3


async def test_gap_recovery_stops_at_oldest(world: FakeTelegram, connector: TelegramUserConnector, account: Account) -> None:
    past = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) - dt.timedelta(hours=1)
    world.post(ALICE, "long ago", history_only=True, date=past)
    newest_stored = world.post(ALICE, "stored", history_only=True)
    missed = world.post(ALICE, "missed", history_only=True)
    oldest = str(int(newest_stored.date.timestamp() * 1000) + 400)  # a stored ms inside the same second
    page = await connector.backfill(account, str(ALICE), None, oldest)
    texts = [e.payload["message"]["message"] for e in page.envelopes]
    assert texts == ["missed", "stored"] and page.cursor is None  # same-second messages are read again
    assert missed.id > newest_stored.id


async def test_send_with_reply_and_flood_wait(world: FakeTelegram, connector: TelegramUserConnector, account: Account) -> None:
    parent = world.post(ALICE, "question", history_only=True)
    sent = await connector.send(account, Outbound(chat_id=str(ALICE), text="answer", reply_to_id=str(parent.id)))
    assert world.sent == [{"peer": ALICE, "text": "answer", "reply_to": parent.id}]
    assert sent.native_id == str(world.find(int(sent.native_id)).id) and sent.chat_id == str(ALICE)
    (change,) = connector.normalize(Envelope("telegram_user", account.id, "d", 0, sent.raw), account)
    assert change.message.is_self and change.message.reply_to_id == str(parent.id)
    await connector.send(account, Outbound(chat_id=str(-GROUP), text="to the group"))
    assert world.sent[-1]["peer"] == -GROUP
    world.flood_next.append(42)
    with pytest.raises(RateLimited) as err:
        await connector.send(account, Outbound(chat_id=str(ALICE), text="too fast"))
    assert err.value.retry_after == 42 and len(world.sent) == 2
    with pytest.raises(ValueError):
        await connector.send(account, Outbound(chat_id=str(ALICE), text=""))


async def test_a_supergroup_backfills_and_takes_sends(world: FakeTelegram, connector: TelegramUserConnector,
                                                     account: Account) -> None:
    world.add_channel(SUPERGROUP, "Open source")
    old = [world.post(ALICE, f"old {i}", channel=SUPERGROUP, history_only=True) for i in range(3)]
    chat = f"-100{SUPERGROUP}"
    assert chat in await connector.list_chats(account)
    page = await connector.backfill(account, chat, None, None)
    assert [e.payload["message"]["id"] for e in page.envelopes] == [m.id for m in reversed(old)]
    sent = await connector.send(account, Outbound(chat_id=chat, text="shipping now", reply_to_id=str(old[-1].id)))
    assert world.sent[-1] == {"peer": -(10**12 + SUPERGROUP), "text": "shipping now", "reply_to": old[-1].id}
    assert sent.native_id == str(old[-1].id + 1) and sent.chat_id == chat  # the id Telegram gave, via random_id


async def test_send_uses_the_listeners_connection_when_it_runs_here(world: FakeTelegram, connector: TelegramUserConnector,
                                                                    account: Account) -> None:
    ctx = RecordingContext(account)
    task = asyncio.create_task(connector.listen(ctx))
    try:
        await wait_until(lambda: AccountState.CONNECTED in ctx.states())
        assert len(world.senders) == 1
        await connector.send(account, Outbound(chat_id=str(ALICE), text="one auth key, one connection"))
        await connector.list_chats(account)
        assert len(world.senders) == 1  # no second live connection on the same key (AUTH_KEY_DUPLICATED)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_revoked_session_cannot_backfill_or_send(world: FakeTelegram, connector: TelegramUserConnector,
                                                         account: Account) -> None:
    world.revoke_all()
    with pytest.raises(NeedsReauth):
        await connector.list_chats(account)
    with pytest.raises(NeedsReauth):
        await connector.send(account, Outbound(chat_id=str(ALICE), text="hello?"))
