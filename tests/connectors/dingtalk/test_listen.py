"""The Stream-mode listener against the loopback DingTalk gateway, with the dingtalk-stream SDK's
client, frames and handlers: emit before ack, ping, disconnect, drops, redelivery, dedup."""

from __future__ import annotations

import asyncio
import json

import pytest

from connectors.base import AccountState, NeedsReauth
from connectors.dingtalk.connector import DingTalkConnector
from tests.connectors.dingtalk.conftest import APP, EmitFailed, RecordingContext, make_account, running
from tests.fakes.dingtalk import BOT_TOPIC, FakeDingTalk
from tests.waiting import wait_until

pytestmark = pytest.mark.asyncio


async def connected(fake: FakeDingTalk) -> None:
    await wait_until(lambda: fake.connections(APP) == 1, timeout=10)


async def test_messages_are_emitted_then_acked_in_order(fake: FakeDingTalk, connector: DingTalkConnector) -> None:
    ctx = RecordingContext(make_account())
    async with running(connector, ctx):
        await connected(fake)
        ids = [fake.post_message(APP, f"m{i}") for i in range(5)]
        gid = fake.post_message(APP, "@bot hi", group="cidGroup1", at=["staff-carol"])
        await wait_until(lambda: len(fake.acked_msg_ids) == 6)
    assert ctx.ids == [*ids, gid] and fake.acked_msg_ids == [*ids, gid]
    assert ctx.texts == ["m0", "m1", "m2", "m3", "m4", "@bot hi"]
    assert all("sessionWebhook" not in e.payload for e in ctx.envelopes)  # a credential: never stored
    assert ctx.envelopes[0].platform == "dingtalk" and ctx.envelopes[0].source == "listen"
    assert (AccountState.CONNECTED, None) in ctx.states and ctx.reconnects == 0
    opened = fake.open_requests[0]
    assert opened["subscriptions"] == [{"type": "CALLBACK", "topic": BOT_TOPIC}] and opened["localIp"] == ""


async def test_nothing_is_acked_before_emit_returns(fake: FakeDingTalk, connector: DingTalkConnector) -> None:
    ctx = RecordingContext(make_account())
    ctx.gate = asyncio.Event()
    async with running(connector, ctx):
        await connected(fake)
        msg_id = fake.post_message(APP, "hold on")
        await asyncio.wait_for(ctx.entered.wait(), 5)
        await asyncio.sleep(0.2)
        assert fake.acks == [] and fake.pending(APP) == [msg_id]
        ctx.gate.set()
        await wait_until(lambda: fake.acked_msg_ids == [msg_id])
    assert ctx.ids == [msg_id]


async def test_a_failed_emit_acks_nothing_and_the_message_comes_back(
    fake: FakeDingTalk, connector: DingTalkConnector
) -> None:
    ctx = RecordingContext(make_account())
    ctx.fail_emits = 1
    task = asyncio.create_task(connector.listen(ctx))
    await connected(fake)
    msg_id = fake.post_message(APP, "must survive")
    with pytest.raises(EmitFailed):
        await asyncio.wait_for(task, 5)  # the supervisor restarts a listener that raised
    assert fake.acks == [] and fake.pending(APP) == [msg_id]
    async with running(connector, ctx):  # restarted: DingTalk pushes the unacked message again
        await wait_until(lambda: fake.acked_msg_ids == [msg_id])
    assert ctx.ids == [msg_id]


async def test_ping_is_answered_and_disconnect_reconnects(fake: FakeDingTalk, connector: DingTalkConnector) -> None:
    ctx = RecordingContext(make_account())
    async with running(connector, ctx):
        await connected(fake)
        opaque = fake.ping(APP)
        await wait_until(lambda: opaque in fake.pongs)
        first = fake.post_message(APP, "before")
        await wait_until(lambda: first in fake.acked_msg_ids)
        fake.disconnect(APP)
        await wait_until(lambda: len(fake.open_requests) == 2, timeout=5)
        await wait_until(lambda: ctx.reconnects == 1)
        second = fake.post_message(APP, "after")
        await wait_until(lambda: second in fake.acked_msg_ids)
    assert ctx.ids == [first, second]
    assert fake.acks == [a for a in fake.acks if a["code"] == 200]


async def test_messages_sent_during_a_drop_arrive_once_after_reconnect(
    fake: FakeDingTalk, connector: DingTalkConnector
) -> None:
    ctx = RecordingContext(make_account())
    async with running(connector, ctx):
        await connected(fake)
        before = fake.post_message(APP, "before the drop")
        await wait_until(lambda: before in fake.acked_msg_ids)
        assert fake.drop_connections(APP) == 1
        during = [fake.post_message(APP, f"during {i}") for i in range(3)]  # queued: no connection
        await wait_until(lambda: ctx.reconnects == 1, timeout=10)
        await wait_until(lambda: set(during) <= set(fake.acked_msg_ids), timeout=10)
        fake.redeliver(APP, before)  # DingTalk pushes an acked message again: stored once
        after = fake.post_message(APP, "after")
        await wait_until(lambda: after in fake.acked_msg_ids)
    assert ctx.ids == [before, *during, after]
    assert any(state is AccountState.BACKOFF for state, _ in ctx.states)


async def test_unacked_redeliveries_are_emitted_once(fake: FakeDingTalk, connector: DingTalkConnector) -> None:
    """An ack lost with the socket: DingTalk pushes the message again on the new connection;
    the listener acks it but does not queue it twice."""
    ctx = RecordingContext(make_account())
    ctx.gate = asyncio.Event()
    async with running(connector, ctx):
        await connected(fake)
        msg_id = fake.post_message(APP, "acked late")
        await asyncio.wait_for(ctx.entered.wait(), 5)
        fake.drop_connections(APP)  # dies while the message is being queued
        ctx.gate.set()
        await wait_until(lambda: msg_id in fake.acked_msg_ids, timeout=10)
        await wait_until(lambda: fake.pending(APP) == [])
    assert ctx.ids == [msg_id]


async def test_unreadable_payloads_are_queued_for_the_dlq_and_acked(
    fake: FakeDingTalk, connector: DingTalkConnector
) -> None:
    ctx = RecordingContext(make_account())
    async with running(connector, ctx):
        await connected(fake)
        fake.push_frame(APP, {"specVersion": "1.0", "type": "CALLBACK",
                              "headers": {"messageId": "bad-1", "topic": BOT_TOPIC}, "data": "{not json"})
        fake.push_frame(APP, {"specVersion": "1.0", "type": "EVENT",
                              "headers": {"messageId": "ev-1", "topic": "*", "eventType": "chat_update_title"},
                              "data": json.dumps({"ChatId": "c1"})})
        ok = fake.post_message(APP, "fine")
        await wait_until(lambda: ok in fake.acked_msg_ids)
    assert [e.delivery_id for e in ctx.envelopes] == ["bad-1", ok]
    with pytest.raises(ValueError):
        connector.normalize(ctx.envelopes[0], make_account())


async def test_rejected_credentials_end_the_listener(fake: FakeDingTalk, connector: DingTalkConnector) -> None:
    ctx = RecordingContext(make_account(secret="wrong-secret"))
    with pytest.raises(NeedsReauth, match="clientSecret is invalid"):
        await asyncio.wait_for(connector.listen(ctx), 5)
    assert fake.connections(APP) == 0


async def test_throttled_open_is_waited_out(fake: FakeDingTalk, connector: DingTalkConnector) -> None:
    fake.rate_limit_next(2, path="/v1.0/gateway/connections/open", retry_after=0.2)
    ctx = RecordingContext(make_account())
    async with running(connector, ctx):
        await connected(fake)
        msg_id = fake.post_message(APP, "through")
        await wait_until(lambda: msg_id in fake.acked_msg_ids)
    assert [s for s, _ in ctx.states].count(AccountState.BACKOFF) == 2
    assert fake.calls.count("connections/open") == 3
