"""listen() with Telethon's real client, update loop and event builders on FakeTelegram's
pushed updates (UpdateNewMessage, UpdateEditMessage, UpdateDeleteMessages in an `Updates`
container, as Telegram sends them); only the MTProto sender is in-process."""

from __future__ import annotations

import asyncio
import json

import pytest

from connectors.base import Account, AccountState, ChangeKind, NeedsReauth
from connectors.telegram_user.connector import TelegramUserConnector
from tests.connectors.telegram_user.conftest import ALICE, BOB, GROUP, SUPERGROUP, RecordingContext
from tests.fakes.telegram_user import FakeTelegram
from tests.waiting import wait_until


class Listening:
    def __init__(self, connector: TelegramUserConnector, ctx: RecordingContext) -> None:
        self.connector, self.ctx = connector, ctx
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "Listening":
        self.task = asyncio.create_task(self.connector.listen(self.ctx))
        await wait_until(lambda: AccountState.CONNECTED in self.ctx.states() or self.task.done())
        assert not self.task.done(), self.task.exception()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def test_messages_edits_and_deletes_in_every_dialog(world: FakeTelegram, connector: TelegramUserConnector,
                                                          account: Account) -> None:
    ctx = RecordingContext(account)
    async with Listening(connector, ctx):
        first = world.post(ALICE, "hi there")
        in_group = world.post(BOB, "meeting at 5?", group=GROUP, mention=world.me_id)
        photo = world.post(ALICE, "look", media=world.photo(), reply_to=first.id)
        world.edit(first.id, "hi there!")
        world.delete(first.id, 999999)  # 999999 was never seen: no chat can be named for it
        await wait_until(lambda: len(ctx.emitted) == 5)
    assert ctx.kinds() == [("message", "hi there"), ("message", "Loomi meeting at 5?"), ("message", "look"),
                           ("edit", "hi there!"), ("delete", [first.id])]
    assert all(json.dumps(e.payload) for e in ctx.emitted)  # the JSON form: bytes and datetimes made safe
    changes = [c for e in ctx.emitted for c in connector.normalize(e, account)]
    assert [c.kind for c in changes] == [ChangeKind.UPSERT] * 3 + [ChangeKind.EDIT, ChangeKind.DELETE]
    dm, group, pic, edit, delete = changes
    assert (dm.chat_id, dm.message.chat_type.value, dm.message.chat_name, dm.message.sender_id) == (str(ALICE), "dm", "Alice", str(ALICE))
    assert (group.chat_id, group.message.chat_type.value, group.message.chat_name) == (str(-GROUP), "group", "Book club")
    assert group.message.mentions == [str(world.me_id)] and group.message.sender_name == "Bob"
    assert pic.message.reply_to_id == str(first.id) and pic.message.attachments[0].content_type == "image/jpeg"
    assert (edit.native_id, edit.message.text, edit.at) == (str(first.id), "hi there!", edit.message.edited_at)
    assert (delete.chat_id, delete.native_id) == (str(ALICE), str(first.id))  # resolved: Telegram named no chat
    assert ctx.resume["online_before"] is True and ("reconnected", None) not in ctx.calls


async def test_a_supergroup_with_its_own_pts_and_named_deletes(world: FakeTelegram, connector: TelegramUserConnector,
                                                                account: Account) -> None:
    world.add_channel(SUPERGROUP, "Open source")
    ctx = RecordingContext(account)
    async with Listening(connector, ctx):
        question = world.post(ALICE, "release tonight?", channel=SUPERGROUP)
        world.post(BOB, "yes", channel=SUPERGROUP, reply_to=question.id)
        world.edit(question.id, "release tonight? (v2)", channel=SUPERGROUP)
        world.drop()
        world.post(ALICE, "missed in the supergroup", channel=SUPERGROUP)
        world.restore()
        world.post(BOB, "after the gap", channel=SUPERGROUP)  # channel pts gap: getChannelDifference
        await wait_until(lambda: len(ctx.emitted) == 5, timeout=5)
        world.delete_in_channel(SUPERGROUP, question.id)
        await wait_until(lambda: len(ctx.emitted) == 6)
    changes = [c for e in ctx.emitted for c in connector.normalize(e, account)]
    chat = f"-100{SUPERGROUP}"
    assert {c.chat_id for c in changes} == {chat} and "GetChannelDifferenceRequest" in world.requests
    assert [(c.kind.value, c.native_id) for c in changes] == [
        ("upsert", str(question.id)), ("upsert", str(question.id + 1)), ("edit", str(question.id)),
        ("upsert", str(question.id + 2)), ("upsert", str(question.id + 3)), ("delete", str(question.id))]
    assert changes[0].message.chat_type.value == "group" and changes[0].message.chat_name == "Open source"
    assert changes[1].message.reply_to_id == str(question.id) and changes[1].message.sender_id == str(BOB)


async def test_reactions_as_telegram_reports_them(world: FakeTelegram, connector: TelegramUserConnector,
                                                  account: Account) -> None:
    ctx = RecordingContext(account)
    async with Listening(connector, ctx):
        message = world.post(ALICE, "nice?")
        world.react(message.id, "👍", by=ALICE)
        await wait_until(lambda: len(ctx.emitted) == 2)
    (change,) = connector.normalize(ctx.emitted[1], account)
    assert (change.kind, change.chat_id, change.native_id) == (ChangeKind.REACTION, str(ALICE), str(message.id))
    assert (change.reaction.emoji, change.reaction.sender_id, change.reaction.added) == ("👍", str(ALICE), True)


async def test_a_gap_while_pushes_were_lost_is_filled_by_telegrams_difference(world: FakeTelegram,
                                                                               connector: TelegramUserConnector,
                                                                               account: Account) -> None:
    ctx = RecordingContext(account)
    async with Listening(connector, ctx):
        world.post(ALICE, "before")
        await wait_until(lambda: len(ctx.emitted) == 1)
        world.drop()
        missed = [world.post(ALICE, f"missed {i}") for i in range(3)]
        world.restore()
        world.post(ALICE, "after")  # its pts is ahead of the client's: Telethon asks getDifference
        await wait_until(lambda: len(ctx.emitted) == 5, timeout=5)
        await asyncio.sleep(0.7)
    assert [t for _, t in ctx.kinds()] == ["before", "missed 0", "missed 1", "missed 2", "after"]
    assert "GetDifferenceRequest" in world.requests and len({e.delivery_id for e in ctx.emitted}) == 5
    assert missed[0].id < missed[-1].id


async def test_our_own_messages_are_self(world: FakeTelegram, connector: TelegramUserConnector, account: Account) -> None:
    ctx = RecordingContext(account)
    async with Listening(connector, ctx):
        world.post(ALICE, "sent from my phone", out=True)
        await wait_until(lambda: len(ctx.emitted) == 1)
    (change,) = connector.normalize(ctx.emitted[0], account)
    assert change.message.is_self and change.message.sender_id == str(world.me_id) and change.chat_id == str(ALICE)


async def test_a_restart_asks_for_gap_recovery(world: FakeTelegram, connector: TelegramUserConnector, account: Account) -> None:
    ctx = RecordingContext(account, resume={"online_before": True})
    async with Listening(connector, ctx):
        await wait_until(lambda: ("reconnected", None) in ctx.calls)


async def test_a_lost_connection_ends_the_listener_for_a_restart(world: FakeTelegram, connector: TelegramUserConnector,
                                                                 account: Account) -> None:
    ctx = RecordingContext(account)
    task = asyncio.create_task(connector.listen(ctx))
    await wait_until(lambda: AccountState.CONNECTED in ctx.states())
    assert ctx.resume == {"online_before": True} and ctx.emitted == []  # saved before any message
    world.sever()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(task, 3)


async def test_a_revoked_session_needs_reauth(world: FakeTelegram, connector: TelegramUserConnector, account: Account) -> None:
    ctx = RecordingContext(account)
    task = asyncio.create_task(connector.listen(ctx))
    await wait_until(lambda: AccountState.CONNECTED in ctx.states())
    world.revoke_all()  # "terminate all other sessions" on the phone
    world.kick()  # the next thing the client asks Telegram fails with AUTH_KEY_UNREGISTERED
    with pytest.raises(NeedsReauth, match="AuthKeyUnregisteredError"):
        await asyncio.wait_for(task, 3)
    with pytest.raises(NeedsReauth):  # and a restart does not get past connecting
        await asyncio.wait_for(connector.listen(RecordingContext(account)), 3)


async def test_an_emit_failure_is_not_swallowed_by_telethon(world: FakeTelegram, connector: TelegramUserConnector,
                                                           account: Account) -> None:
    ctx = RecordingContext(account, refuse=RuntimeError("lease lost"))
    task = asyncio.create_task(connector.listen(ctx))
    await wait_until(lambda: AccountState.CONNECTED in ctx.states())
    world.post(ALICE, "cannot be queued")
    with pytest.raises(RuntimeError, match="lease lost"):
        await asyncio.wait_for(task, 3)
