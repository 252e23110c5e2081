"""listen() against FakeSlack's Socket Mode, with slack_sdk's real SocketModeClient."""

from __future__ import annotations

import asyncio

import pytest
from slack_sdk.socket_mode.aiohttp import SocketModeClient

from connectors.base import Account, AccountState, ChangeKind, Envelope, NeedsReauth
from connectors.slack.connector import SlackConnector
from tests.connectors.slack.conftest import RecordingContext, make_account
from tests.waiting import wait_until
from tests.fakes.slack import FakeSlack


class Listening:
    """Runs connector.listen(ctx) as the supervisor would: a task, cancelled to stop."""

    def __init__(self, connector: SlackConnector, ctx: RecordingContext) -> None:
        self.connector, self.ctx = connector, ctx
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Listening:
        self.task = asyncio.create_task(self.connector.listen(self.ctx))
        await wait_until(lambda: AccountState.CONNECTED in self.ctx.states() or self.task.done())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


@pytest.fixture
def ctx(fake: FakeSlack, account: Account) -> RecordingContext:
    return RecordingContext(account, fake)


def sdk_tasks() -> list[asyncio.Task[object]]:
    """Live tasks running a SocketModeClient method (monitor, receiver, processor, reconnect)."""
    def of_client(task: asyncio.Task[object]) -> bool:
        frame = getattr(task.get_coro(), "cr_frame", None)
        return frame is not None and isinstance(frame.f_locals.get("self"), SocketModeClient)

    return [t for t in asyncio.all_tasks() if not t.done() and of_client(t)]


async def test_connects_emits_before_ack_and_normalizes(fake: FakeSlack, connector: SlackConnector,
                                                        ctx: RecordingContext) -> None:
    async with Listening(connector, ctx):
        assert ctx.states() == [AccountState.CONNECTING, AccountState.CONNECTED]
        ts = fake.post_message("C1", "U1", "hello <@UBOT>")
        await wait_until(lambda: len(fake.acked_event_ids) == 1)
        (env,) = ctx.emitted
        assert env.delivery_id == fake.acked_event_ids[0] and env.delivery_id.startswith("Ev")
        assert (env.platform, env.account_id, env.source) == ("slack", ctx.account.id, "listen")
        assert env.payload["type"] == "event_callback" and env.payload["event_id"] == env.delivery_id
        assert ctx.acked_at_emit == [set()]  # nothing was acked when it was emitted

        (change,) = connector.normalize(env, ctx.account)
        assert (change.kind, change.native_id, change.message.text) == (ChangeKind.UPSERT, ts, "hello <@UBOT>")
        assert change.message.mentions == ["UBOT"]
    assert ctx.count("reconnected") == 0


async def test_ack_waits_for_a_slow_emit(fake: FakeSlack, connector: SlackConnector,
                                         ctx: RecordingContext) -> None:
    acked_during_emit: list[bool] = []

    async def slow(envelopes: list[Envelope]) -> None:
        await asyncio.sleep(0.3)  # a slow durable write: no ack may overtake it
        acked_during_emit.append(bool({e.delivery_id for e in envelopes} & set(fake.acked_event_ids)))

    ctx.on_emit = slow
    async with Listening(connector, ctx):
        fake.post_message("C1", "U1", "one")
        fake.post_message("C1", "U1", "two")
        await wait_until(lambda: len(fake.acked_event_ids) == 2)
    assert acked_during_emit and not any(acked_during_emit)
    assert sorted(ctx.delivery_ids()) == sorted(fake.acked_event_ids)
    assert [e.payload["event"]["text"] for e in ctx.emitted] == ["one", "two"]  # order kept


async def test_redelivery_after_drop_and_reconnected(fake: FakeSlack, connector: SlackConnector,
                                                     ctx: RecordingContext) -> None:
    dropped: list[str] = []

    def drop_once(envelopes: list[Envelope]) -> None:
        if not dropped:  # the socket dies after we queued the event but before the ack
            dropped.append(envelopes[0].delivery_id)
            fake.drop_connections()

    ctx.on_emit = drop_once
    async with Listening(connector, ctx):
        fake.post_message("C1", "U1", "survives the drop")
        await wait_until(lambda: fake.acked_event_ids)
        await wait_until(lambda: ctx.count("reconnected") == 1)
        assert ctx.delivery_ids() == [dropped[0], dropped[0]]  # redelivered under the same event_id
        assert fake.acked_event_ids == dropped and fake.calls["apps.connections.open"] >= 2
        states = ctx.states()
        assert states[:2] == [AccountState.CONNECTING, AccountState.CONNECTED]
        assert states[-1] == AccountState.CONNECTED and AccountState.CONNECTING in states[2:]

        fake.post_message("C1", "U1", "after")  # the new socket works
        await wait_until(lambda: len(fake.acked_event_ids) == 2)


async def test_reconnected_after_disconnect_message(fake: FakeSlack, connector: SlackConnector,
                                                    ctx: RecordingContext) -> None:
    async with Listening(connector, ctx):
        await fake.send_disconnect("refresh_requested", grace=0.2)
        await wait_until(lambda: ctx.count("reconnected") >= 1)
        fake.post_message("C1", "U1", "on the new socket")
        await wait_until(lambda: len(fake.acked_event_ids) == 1)
    assert ctx.delivery_ids() == fake.acked_event_ids


async def test_bot_echo_over_the_socket_is_self(fake: FakeSlack, connector: SlackConnector,
                                                ctx: RecordingContext, account: Account) -> None:
    async with Listening(connector, ctx):
        from connectors.base import Outbound
        sent = await connector.send(account, Outbound(chat_id="C1", text="from the hub"))
        await wait_until(lambda: len(fake.acked_event_ids) == 1)
    (change,) = connector.normalize(ctx.emitted[0], account)
    assert change.native_id == sent.native_id and change.message.is_self is True


class LeaseLostStandIn(Exception):
    """What the supervisor's emit raises when another worker took the account over."""


async def test_emit_failure_ends_the_listener_unacked(fake: FakeSlack, connector: SlackConnector,
                                                      ctx: RecordingContext) -> None:
    def lose_lease(envelopes: list[Envelope]) -> None:
        raise LeaseLostStandIn()

    ctx.on_emit = lose_lease
    async with Listening(connector, ctx) as running:
        fake.post_message("C1", "U1", "queued by nobody")
        with pytest.raises(LeaseLostStandIn):
            await asyncio.wait_for(asyncio.shield(running.task), 5)
    assert fake.acked_event_ids == [] and sdk_tasks() == []  # not acked: Slack redelivers to the new holder


async def test_bad_app_token_needs_reauth(fake: FakeSlack, connector: SlackConnector) -> None:
    ctx = RecordingContext(make_account(fake, app_token="xapp-1-revoked"), fake)
    with pytest.raises(NeedsReauth, match="invalid_auth"):
        await asyncio.wait_for(connector.listen(ctx), 5)
    assert ctx.states() == [AccountState.CONNECTING]
    assert fake.calls["apps.connections.open"] == 1  # slack_sdk's retry loop was stopped
    assert sdk_tasks() == []


async def test_bad_bot_token_needs_reauth(fake: FakeSlack, connector: SlackConnector) -> None:
    ctx = RecordingContext(make_account(fake, access_token="xoxb-nope"), fake)
    with pytest.raises(NeedsReauth, match="invalid_auth"):
        await asyncio.wait_for(connector.listen(ctx), 5)
    assert fake.calls["apps.connections.open"] == 0


async def test_token_revoked_while_reconnecting_needs_reauth(fake: FakeSlack, connector: SlackConnector,
                                                             ctx: RecordingContext) -> None:
    async with Listening(connector, ctx) as running:
        fake.fail_next("apps.connections.open", status=200, error="token_revoked", times=5)
        fake.drop_connections()
        with pytest.raises(NeedsReauth, match="token_revoked"):
            await asyncio.wait_for(asyncio.shield(running.task), 5)
    assert sdk_tasks() == []


async def test_cancel_closes_everything(fake: FakeSlack, connector: SlackConnector, ctx: RecordingContext) -> None:
    async with Listening(connector, ctx) as running:
        await wait_until(lambda: sdk_tasks())
    assert running.task.cancelled()
    assert sdk_tasks() == []  # no slack_sdk monitor, receiver or reconnect survives the listener
    opened = fake.calls["apps.connections.open"]
    fake.post_message("C1", "U1", "nobody is listening")
    await asyncio.sleep(0.5)
    assert ctx.emitted == [] and fake.acked_event_ids == []
    assert fake.calls["apps.connections.open"] == opened


async def test_cancel_while_connecting(fake: FakeSlack, connector: SlackConnector, ctx: RecordingContext) -> None:
    fake.fail_next("apps.connections.open", status=500, times=100)  # slack_sdk keeps retrying
    task = asyncio.create_task(connector.listen(ctx))
    await wait_until(lambda: fake.calls["apps.connections.open"] >= 2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and sdk_tasks() == []
    # connecting, then backoff after each refused attempt: never connected
    states = ctx.states()
    assert states[0] is AccountState.CONNECTING and set(states[1:]) == {AccountState.BACKOFF}
