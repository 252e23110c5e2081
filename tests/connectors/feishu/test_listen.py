"""The long-connection listener against the loopback Feishu: protobuf frames, acks only after
emit, reconnects, re-sends dropped, reactions placed in their chat."""

from __future__ import annotations

import asyncio
import json

import pytest

from connectors.base import AccountState, ChangeKind, NeedsReauth
from connectors.feishu.connector import FeishuConnector
from tests.connectors.feishu.conftest import (
    ALICE,
    BOB,
    BOT,
    DM,
    GROUP,
    EmitFailed,
    RecordingContext,
    make_account,
    running,
)
from tests.fakes.feishu import FakeFeishu
from tests.waiting import wait_until


async def test_messages_replies_mentions_attachments_recalls_reactions_and_chat_names(
    fs: FakeFeishu, connector: FeishuConnector
) -> None:
    account = make_account()
    ctx = RecordingContext(account)
    async with running(connector, ctx):
        await wait_until(lambda: fs.connections == 1)
        first = fs.post_message(GROUP, ALICE, "hello team", mentions=[BOT, BOB])
        reply = fs.post_message(GROUP, BOB, "hi Alice", reply_to=first)
        photo = fs.post_message(DM, ALICE, message_type="image", content={"image_key": "img_v2_abc"})
        fs.recall_message(reply)
        fs.react(first, BOB, "THUMBSUP")
        fs.rename_chat(GROUP, "Team (renamed)")
        await wait_until(lambda: len(ctx.envelopes) == 6)
        await wait_until(lambda: fs.pending_event_ids == [])  # all acked
    changes = [c for e in ctx.envelopes for c in connector.normalize(e, account)]
    kinds = [c.kind for c in changes]
    assert kinds == [ChangeKind.UPSERT] * 3 + [ChangeKind.DELETE, ChangeKind.REACTION, ChangeKind.CHAT]
    hello, answer, image = (c.message for c in changes[:3])
    assert hello.text == "@Loomi @Bob hello team" and hello.mentions == [BOT, BOB] and hello.sender_id == ALICE
    assert (answer.reply_to_id, answer.thread_id) == (first, first)
    assert image.content_type == "image" and image.attachments[0].name == "img_v2_abc" and image.chat_id == DM
    assert changes[3].native_id == reply and changes[3].chat_id == GROUP
    reaction = changes[4]
    assert (reaction.chat_id, reaction.native_id, reaction.reaction.emoji, reaction.reaction.sender_id) == (
        GROUP, first, "THUMBSUP", BOB)
    assert changes[5].chat.name == "Team (renamed)"
    assert ctx.states == [AccountState.CONNECTING, AccountState.CONNECTED] and ctx.reconnects == 0
    assert all(e.delivery_id == e.payload["header"]["event_id"] for e in ctx.envelopes)
    assert all("token" not in e.payload["header"] for e in ctx.envelopes)
    assert len(fs.acked_event_ids) == 6 and all(p == {"code": 200} for p in fs.ack_payloads)


async def test_reaction_to_an_older_message_is_placed_by_looking_it_up(fs: FakeFeishu, connector: FeishuConnector) -> None:
    old = fs.post_message(GROUP, ALICE, "from last week", push=False)
    ctx = RecordingContext(make_account())
    async with running(connector, ctx):
        await wait_until(lambda: fs.connections == 1)
        fs.react(old, BOB, "SMILE", added=False)
        await wait_until(lambda: len(ctx.envelopes) == 1)
    [change] = connector.normalize(ctx.envelopes[0], make_account())
    assert change.chat_id == GROUP and change.reaction.added is False
    assert fs.calls[f"GET im/v1/messages/{old}"] == 1


async def test_no_ack_before_emit_and_nothing_lost_when_emit_fails(fs: FakeFeishu, connector: FeishuConnector) -> None:
    ctx = RecordingContext(make_account())
    ctx.fail_emits = 1
    task = asyncio.create_task(connector.listen(ctx))
    await wait_until(lambda: fs.connections == 1)
    fs.post_message(GROUP, ALICE, "must not be lost")
    with pytest.raises(EmitFailed):  # the supervisor restarts the listener with backoff
        await asyncio.wait_for(task, 5)
    assert fs.acked_event_ids == [] and len(fs.pending_event_ids) == 1
    async with running(connector, ctx):  # Feishu sends the unacked event again on the new socket
        await wait_until(lambda: len(ctx.envelopes) == 1)
        await wait_until(lambda: fs.pending_event_ids == [])
    assert json.loads(ctx.envelopes[0].payload["event"]["message"]["content"]) == {"text": "must not be lost"}


async def test_ack_waits_for_a_slow_emit(fs: FakeFeishu, connector: FeishuConnector) -> None:
    ctx = RecordingContext(make_account())
    ctx.emit_delay = 0.5
    async with running(connector, ctx):
        await wait_until(lambda: fs.connections == 1)
        fs.post_message(GROUP, ALICE, "slow")
        await asyncio.sleep(0.3)
        assert fs.acked_event_ids == [] and ctx.envelopes == []  # emit still running: no ack yet
        await wait_until(lambda: len(fs.acked_event_ids) == 1)
        assert len(ctx.envelopes) == 1


async def test_forced_disconnect_loses_nothing_and_duplicates_nothing(fs: FakeFeishu, connector: FeishuConnector) -> None:
    ctx = RecordingContext(make_account())
    async with running(connector, ctx) as task:
        await wait_until(lambda: fs.connections == 1)
        before = [fs.post_message(GROUP, ALICE, f"before {i}") for i in range(3)]
        await wait_until(lambda: len(ctx.envelopes) == 3)
        fs.drop_connections()
        during = [fs.post_message(GROUP, BOB, f"during {i}") for i in range(3)]  # queued by Feishu
        await wait_until(lambda: len(ctx.envelopes) == 6, timeout=10)
        fs.redeliver(ctx.ids[0])  # Feishu re-sends an event whose ack it missed
        after = fs.post_message(GROUP, ALICE, "after")
        await wait_until(lambda: len(ctx.envelopes) == 7)
        await wait_until(lambda: fs.pending_event_ids == [])
        assert not task.done()
    native = [c.native_id for e in ctx.envelopes for c in connector.normalize(e, make_account())]
    assert native == before + during + [after] and len(set(ctx.ids)) == 7
    assert ctx.reconnects == 1 and fs.calls["ws_endpoint"] == 2
    assert ctx.states.count(AccountState.CONNECTED) == 2 and AccountState.CONNECTING in ctx.states[2:]


async def test_fragmented_events_are_joined(connector: FeishuConnector, fs: FakeFeishu) -> None:
    fs.fragment = True
    ctx = RecordingContext(make_account())
    async with running(connector, ctx):
        await wait_until(lambda: fs.connections == 1)
        fs.post_message(GROUP, ALICE, "x" * 5000)
        await wait_until(lambda: len(ctx.envelopes) == 1)
        await wait_until(lambda: fs.pending_event_ids == [])
    [change] = connector.normalize(ctx.envelopes[0], make_account())
    assert change.message.text == "x" * 5000


async def test_pings_follow_the_servers_client_config() -> None:
    async with FakeFeishu(ping_interval=1) as fs:
        fs.add_app("cli_loomi_test", "app-secret-1", bot_open_id=BOT)
        from config.settings import PlatformSettings

        connector = FeishuConnector(PlatformSettings(base_url=fs.base_url))
        async with running(connector, RecordingContext(make_account())):
            await wait_until(lambda: fs.pings >= 3, timeout=5)


async def test_rejected_secret_needs_reauth_and_names_feishus_complaint(fs: FakeFeishu, connector: FeishuConnector) -> None:
    ctx = RecordingContext(make_account(secret="wrong-secret"))
    with pytest.raises(NeedsReauth, match="app secret invalid"):
        await asyncio.wait_for(connector.listen(ctx), 5)
    assert fs.calls["ws_endpoint"] == 0


async def test_two_accounts_listen_at_once(fs: FakeFeishu, connector: FeishuConnector) -> None:
    fs.add_app("cli_other", "other-secret", bot_open_id="ou_other_bot")
    one, two = RecordingContext(make_account()), RecordingContext(make_account("other-secret", "cli_other", "acc-2"))
    async with running(connector, one), running(connector, two):
        await wait_until(lambda: fs.connections == 2)
        fs.post_message(GROUP, ALICE, "to both apps")
        await wait_until(lambda: len(one.envelopes) == 1 and len(two.envelopes) == 1)
    assert one.envelopes[0].payload["header"]["app_id"] == "cli_loomi_test"
    assert two.envelopes[0].payload["header"]["app_id"] == "cli_other"
    assert {e.account_id for e in one.envelopes + two.envelopes} == {"acc-feishu-1", "acc-2"}


async def test_a_busy_endpoint_is_retried_in_place(fs: FakeFeishu, connector: FeishuConnector) -> None:
    fs.endpoint_faults = [(1, "system busy")]  # before any ClientConfig: the default 30 s nonce, capped here
    connector.max_reconnect_wait = 0.2
    ctx = RecordingContext(make_account())
    async with running(connector, ctx) as task:
        await wait_until(lambda: fs.connections == 1, timeout=5)
        fs.post_message(GROUP, ALICE, "after the busy spell")
        await wait_until(lambda: len(ctx.envelopes) == 1)
        assert not task.done() and fs.calls["ws_endpoint"] == 2


async def test_a_refused_socket_needs_reauth_unless_it_is_the_connection_limit(
    fs: FakeFeishu, connector: FeishuConnector
) -> None:
    fs.refuse_handshake = ("514", "app is not allowed to use the long connection", "1000040351")
    with pytest.raises(NeedsReauth, match="not allowed"):
        await asyncio.wait_for(connector.listen(RecordingContext(make_account())), 5)
    fs.refuse_handshake = ("514", "exceed connection limit", "1000040350")  # transient: retried
    connector.max_reconnect_wait = 0.2
    ctx = RecordingContext(make_account())
    async with running(connector, ctx) as task:
        await wait_until(lambda: fs.calls["ws_endpoint"] >= 3, timeout=5)
        fs.refuse_handshake = None
        await wait_until(lambda: fs.connections == 1, timeout=5)
        assert not task.done()
