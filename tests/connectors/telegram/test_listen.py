"""The listener against the loopback Bot API, with python-telegram-bot as the real client.

`RecordingContext` stands in for the listener supervisor the lead is writing
(workers/supervisor.py): it records every emit and the resume state saved with it, the way
the real one appends to the Redis stream and saves the offset in the same Lua script.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from telegram import Bot
from telegram.error import Conflict, NetworkError

from connectors.base import Account, AccountState, Envelope, NeedsReauth, WebhookRejected, WebhookRequest
from connectors.telegram.connector import TelegramConnector
from tests.connectors.telegram.conftest import ALICE, BOB, BOT_ID, GROUP, PRIVATE, SECRET, TOKEN, make_account
from tests.waiting import wait_until
from tests.fakes.telegram import FakeTelegram


class EmitFailed(Exception):
    """What LeaseLost or a Redis outage looks like to the listener."""


class RecordingContext:
    """Stands in for the supervisor's ListenContext: records emits, resume and states."""

    def __init__(self, account: Account, resume: dict[str, Any] | None = None) -> None:
        self.account = account
        self.resume: dict[str, Any] = dict(resume or {})
        self.emits: list[tuple[list[Envelope], dict[str, Any] | None]] = []
        self.states: list[AccountState] = []
        self.reconnects = 0
        self.fail_emits = 0

    async def emit(self, envelopes: list[Envelope], resume: dict[str, Any] | None = None) -> None:
        if self.fail_emits:
            self.fail_emits -= 1
            raise EmitFailed("stream unavailable")
        self.emits.append((list(envelopes), resume))
        if resume is not None:
            self.resume = dict(resume)

    async def report(self, state: AccountState, detail: str | None = None) -> None:
        self.states.append(state)

    async def reconnected(self) -> None:
        self.reconnects += 1

    @property
    def envelopes(self) -> list[Envelope]:
        return [e for batch, _ in self.emits for e in batch]

    @property
    def ids(self) -> list[int]:
        return [int(e.delivery_id) for e in self.envelopes]


@contextlib.asynccontextmanager
async def running(connector: TelegramConnector, ctx: RecordingContext) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(connector.listen(ctx))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def post(tg: FakeTelegram, n: int, chat: int = PRIVATE, start: int = 0) -> list[int]:
    """n messages; returns their update ids (the fake numbers updates in order)."""
    before = tg.pending_updates(TOKEN)
    for i in range(n):
        tg.post_message(TOKEN, chat, ALICE if chat > 0 else BOB, f"message {start + i}")
    return [u["update_id"] for u in tg.pending_updates(TOKEN)[len(before):]]


async def test_every_update_emitted_once_in_order_with_the_offset(tg: FakeTelegram, connector: TelegramConnector) -> None:
    expected = post(tg, 3)
    tg.edit_message(TOKEN, PRIVATE, 1, "message 0, edited")
    raw = tg.pending_updates(TOKEN)
    expected.append(raw[-1]["update_id"])
    ctx = RecordingContext(make_account())
    async with running(connector, ctx):
        await wait_until(lambda: len(ctx.envelopes) == 4)
        expected += post(tg, 2, chat=GROUP, start=3)
        await wait_until(lambda: len(ctx.envelopes) == 6)
        await wait_until(lambda: tg.pending_updates(TOKEN) == [])  # the next poll confirmed them
        await asyncio.sleep(0.2)
    assert ctx.ids == expected and len(set(ctx.ids)) == 6
    for batch, resume in ctx.emits:  # the offset travels with the batch it confirms
        assert resume == {"offset": int(batch[-1].delivery_id) + 1}
    assert ctx.resume == {"offset": expected[-1] + 1}
    first = ctx.envelopes[0]
    assert (first.platform, first.account_id, first.source) == ("telegram", "acc-telegram-1", "listen")
    assert first.payload == raw[0]  # the JSON exactly as sent
    assert [e.payload.get("edited_message", {}).get("text") for e in ctx.envelopes][3] == "message 0, edited"
    assert ctx.states == [AccountState.CONNECTED]
    assert tg.calls["deleteWebhook"] == 1 and ctx.reconnects == 0
    changes = [c for e in ctx.envelopes for c in connector.normalize(e, ctx.account)]
    assert [c.native_id for c in changes] == ["1", "2", "3", "1", "1", "2"]


async def test_restart_from_saved_resume_does_not_re_emit(tg: FakeTelegram, connector: TelegramConnector) -> None:
    first_ids = post(tg, 3)
    ctx = RecordingContext(make_account())
    async with running(connector, ctx):
        await wait_until(lambda: len(ctx.envelopes) == 3)
    later_ids = post(tg, 2, start=3)
    again = RecordingContext(make_account(), resume=ctx.resume)
    async with running(connector, again):
        await wait_until(lambda: len(again.envelopes) >= 2)
        await asyncio.sleep(0.3)
    assert ctx.ids == first_ids and again.ids == later_ids


async def test_nothing_is_confirmed_before_emit_succeeds(tg: FakeTelegram, connector: TelegramConnector) -> None:
    ids = post(tg, 3)
    ctx = RecordingContext(make_account())
    ctx.fail_emits = 1
    with pytest.raises(EmitFailed):
        await asyncio.wait_for(connector.listen(ctx), 5)
    assert ctx.resume == {} and [u["update_id"] for u in tg.pending_updates(TOKEN)] == ids
    async with running(connector, ctx):  # the supervisor restarts it with the same (empty) resume
        await wait_until(lambda: len(ctx.envelopes) == 3)
    assert ctx.ids == ids


async def test_a_dropped_connection_is_raised_and_a_restart_loses_nothing(tg: FakeTelegram, connector: TelegramConnector) -> None:
    ids = post(tg, 2)
    ctx = RecordingContext(make_account())
    task = asyncio.create_task(connector.listen(ctx))
    await wait_until(lambda: len(ctx.envelopes) == 2)
    await asyncio.sleep(0.2)  # hanging in the next poll
    tg.drop_connections()
    with pytest.raises(NetworkError):  # the supervisor backs off and restarts it
        await asyncio.wait_for(task, 3)
    ids += post(tg, 2, start=2)
    async with running(connector, ctx):
        await wait_until(lambda: len(ctx.envelopes) == 4)
        await asyncio.sleep(0.2)
    assert ctx.ids == ids and ctx.reconnects == 0  # Telegram keeps updates: no gap to recover


async def test_long_poll_is_released_by_a_new_message(tg: FakeTelegram, settings: Any) -> None:
    connector = TelegramConnector(settings, poll_timeout=20)
    ctx = RecordingContext(make_account())
    async with running(connector, ctx):
        await wait_until(lambda: tg.calls["getUpdates"] >= 1)
        await asyncio.sleep(0.3)  # the poll is now hanging at the server
        started = time.monotonic()
        post(tg, 1)
        await wait_until(lambda: len(ctx.envelopes) == 1, timeout=3)
        assert time.monotonic() - started < 1.0


async def test_retry_after_is_obeyed_and_nothing_is_lost(tg: FakeTelegram, connector: TelegramConnector) -> None:
    ids = post(tg, 2)
    ctx = RecordingContext(make_account())
    async with running(connector, ctx) as task:
        await wait_until(lambda: len(ctx.envelopes) == 2)
        tg.fail_next("getUpdates", retry_after=1)
        failed_at = time.monotonic()
        ids += post(tg, 1, start=2)  # ends the hanging poll; the getUpdates after its emit gets the 429
        await wait_until(lambda: len(ctx.envelopes) == 3)
        ids += post(tg, 1, start=3)
        await wait_until(lambda: len(ctx.envelopes) == 4)
        assert time.monotonic() - failed_at >= 1.0  # it waited retry_after before polling again
        assert not task.done() and tg.calls["getMe"] == 1  # obeyed in place, no restart
        # and said so while it waited: backoff, then connected at Telegram's next answer
        assert ctx.states == [AccountState.CONNECTED, AccountState.BACKOFF, AccountState.CONNECTED]
    assert ctx.ids == ids


async def test_bad_token_needs_reauth_without_leaking_it(tg: FakeTelegram, connector: TelegramConnector) -> None:
    ctx = RecordingContext(make_account(token="999999:AAnotAKnownTokenAtAll_0123456789"))
    with pytest.raises(NeedsReauth) as err:
        await asyncio.wait_for(connector.listen(ctx), 5)
    assert "AAnotAKnownToken" not in str(err.value) and err.value.__suppress_context__
    no_token = make_account()
    no_token.credentials = {}
    with pytest.raises(NeedsReauth):
        await connector.listen(RecordingContext(no_token))


async def test_webhook_set_elsewhere_is_deleted_and_polling_continues(tg: FakeTelegram, connector: TelegramConnector) -> None:
    ctx = RecordingContext(make_account())
    async with running(connector, ctx), Bot(TOKEN, base_url=f"{tg.base_url}/bot") as other:
        await wait_until(lambda: tg.calls["getUpdates"] >= 1)
        await asyncio.sleep(0.1)
        assert await other.set_webhook("http://127.0.0.1:9/elsewhere")  # the hanging poll gets 409
        await wait_until(lambda: tg.calls["deleteWebhook"] == 2)
        ids = post(tg, 1)
        await wait_until(lambda: len(ctx.envelopes) == 1)
        assert ctx.ids == ids and (await other.get_webhook_info()).url == ""


async def test_another_poller_on_the_same_token_is_raised(tg: FakeTelegram, connector: TelegramConnector) -> None:
    ctx = RecordingContext(make_account())
    task = asyncio.create_task(connector.listen(ctx))
    try:
        await wait_until(lambda: tg.calls["getUpdates"] >= 1)
        await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as http:  # someone else polls with our token
            await http.post(f"{tg.base_url}/bot{TOKEN}/getUpdates", data={"timeout": "0"})
        with pytest.raises(Conflict):
            await asyncio.wait_for(task, 3)
    finally:
        task.cancel()


async def test_redelivery_is_emitted_again_and_the_offset_never_goes_back(tg: FakeTelegram, connector: TelegramConnector) -> None:
    ids = post(tg, 2)
    ctx = RecordingContext(make_account())
    async with running(connector, ctx):
        await wait_until(lambda: len(ctx.envelopes) == 2)
        await wait_until(lambda: tg.pending_updates(TOKEN) == [])
        tg.redeliver_next(TOKEN)
        await wait_until(lambda: len(ctx.envelopes) == 3)
    assert ctx.ids == [*ids, ids[-1]]  # same delivery_id: the stream's dedup drops it
    assert [r for _, r in ctx.emits] == [{"offset": ids[-1] + 1}] * len(ctx.emits)


async def test_an_update_ptb_cannot_parse_is_queued_raw(tg: FakeTelegram, connector: TelegramConnector) -> None:
    bad = tg.push_update(TOKEN, "message", {"message_id": 1, "chat": "not an object"})
    ids = post(tg, 1)
    ctx = RecordingContext(make_account())
    async with running(connector, ctx):
        await wait_until(lambda: len(ctx.envelopes) == 2)
    assert ctx.ids == [bad, *ids]
    with pytest.raises(ValueError):  # ingest sends it to the dead-letter list
        connector.normalize(ctx.envelopes[0], ctx.account)
    assert connector.normalize(ctx.envelopes[1], ctx.account)[0].message.text == "message 0"


class HookRoute:
    """A stand-in for the lead's `POST /api/telegram/webhook/{accountId}`: hands the request
    to the connector, answers 200 with the events or the rejection's status."""

    def __init__(self, connector: TelegramConnector, account: Account) -> None:
        self.connector, self.account = connector, account
        self.events: list[Any] = []
        self.rejected: list[int] = []
        self.url = self.base = ""
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        hook = WebhookRequest({k.lower(): v for k, v in request.headers.items()}, await request.read(), dict(request.query), self.account)
        try:
            reply = self.connector.handle_webhook(hook)
        except WebhookRejected as err:
            self.rejected.append(err.status)
            return web.json_response({"error": err.reason}, status=err.status)
        self.events += reply.events
        return web.json_response(reply.body or {}, status=reply.status)

    async def __aenter__(self) -> HookRoute:
        app = web.Application()
        app.router.add_post("/api/telegram/webhook/{account_id}", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.base = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
        self.url = f"{self.base}/api/telegram/webhook/{self.account.id}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def test_webhook_mode_sets_the_webhook_with_the_secret(tg: FakeTelegram, connector: TelegramConnector) -> None:
    account = make_account(mode="webhook")
    async with HookRoute(connector, account) as route:
        account.settings["public_url"] = route.base  # the connector builds route.url from it
        ctx = RecordingContext(account)
        async with running(connector, ctx) as task, Bot(TOKEN, base_url=f"{tg.base_url}/bot") as probe:
            await wait_until(lambda: ctx.states == [AccountState.CONNECTED])
            info = await probe.get_webhook_info()
            assert info.url == route.url and set(info.allowed_updates or ()) == {
                "message", "edited_message", "channel_post", "edited_channel_post", "message_reaction"}
            message_id = tg.post_message(TOKEN, PRIVATE, ALICE, "via webhook")
            await wait_until(lambda: route.events)
            assert tg.webhook_deliveries[0].status == 200 and route.rejected == []  # the secret matched
            event = route.events[0]
            assert event.payload["message"]["text"] == "via webhook" and "_loomi" not in event.payload
            assert event.payload["message"]["message_id"] == message_id and event.delivery_id == str(event.payload["update_id"])
            assert not task.done() and ctx.emits == [] and tg.calls["getUpdates"] == 0 and tg.calls["deleteWebhook"] == 0

        account.credentials = {**account.credentials, "webhook_secret": SECRET[::-1]}  # secret rotated here only
        tg.post_message(TOKEN, PRIVATE, ALICE, "forged?")
        await wait_until(lambda: route.rejected)
        assert route.rejected[0] == 401 and len(route.events) == 1


async def test_webhook_mode_needs_a_url(tg: FakeTelegram, connector: TelegramConnector) -> None:
    with pytest.raises(ValueError):
        await connector.listen(RecordingContext(make_account(mode="webhook")))
    with pytest.raises(ValueError):
        await connector.listen(RecordingContext(make_account(mode="carrier-pigeon")))


async def test_listeners_and_sends_share_one_tls_context(tg: FakeTelegram, connector: TelegramConnector,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Loading the CA bundle is what a TLS context costs (~0.9 MB, ~0.1 s): done once per
    process, not once per client (two per listener, one per send; bench/listeners)."""
    import ssl

    from connectors.base import Outbound
    from connectors.telegram.client import tls_context

    shared = tls_context()
    loads: list[object] = []
    real = ssl.SSLContext.load_verify_locations

    def counted(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
        loads.append(self)
        real(self, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    tokens = [f"{700 + i}:AAsharedTlsToken{i}" for i in range(3)]
    contexts = []
    for i, token in enumerate(tokens):
        tg.add_bot(token, 700 + i, f"shared_tls_bot_{i}")
        contexts.append(RecordingContext(make_account(token)))
    async with contextlib.AsyncExitStack() as stack:
        for ctx in contexts:
            await stack.enter_async_context(running(connector, ctx))
        await wait_until(lambda: all(ctx.states == [AccountState.CONNECTED] for ctx in contexts))
        await connector.send(make_account(), Outbound(chat_id=str(PRIVATE), text="one more client"))
    assert loads == [] and tls_context() is shared


async def test_a_polling_listener_holds_one_connection(tg: FakeTelegram, connector: TelegramConnector) -> None:
    """Its long poll; the connection of its start-up calls (getMe, deleteWebhook) is closed,
    not kept idle beside it: a worker holding a thousand bots holds a thousand sockets."""
    import psutil

    tokens = [f"{800 + i}:AAoneConnectionToken{i}" for i in range(3)]
    contexts = []
    for i, token in enumerate(tokens):
        tg.add_bot(token, 800 + i, f"one_connection_bot_{i}")
        contexts.append(RecordingContext(make_account(token)))

    def to_the_fake() -> int:
        return sum(1 for c in psutil.Process().net_connections(kind="tcp")
                   if c.raddr and c.raddr.port == tg.port and c.status == psutil.CONN_ESTABLISHED)

    async with contextlib.AsyncExitStack() as stack:
        for ctx in contexts:
            await stack.enter_async_context(running(connector, ctx))
        await wait_until(lambda: all(ctx.states == [AccountState.CONNECTED] for ctx in contexts))
        await wait_until(lambda: tg.calls["getUpdates"] >= 3)
        await asyncio.sleep(0.3)
        assert to_the_fake() == 3
