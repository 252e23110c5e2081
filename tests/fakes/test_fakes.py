"""The fakes, driven by the real SDKs: if these pass, connector tests built on the fakes
exercise the same wire behaviour slack_sdk and python-telegram-bot see in production."""

from __future__ import annotations

import asyncio
import datetime as dtm
import json
import time
from typing import Any, AsyncIterator, Callable

import aiohttp
import pytest
from aiohttp import web
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from telegram import Bot, Update
from telegram.error import Conflict, InvalidToken, NetworkError, RetryAfter
from telegram.ext import ApplicationBuilder, ContextTypes, MessageHandler, filters

from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram
from tests.waiting import wait_until

pytestmark = pytest.mark.asyncio

TG_TOKEN = "123456:AAFakeTokenForTests"
ALICE = {"id": 42, "first_name": "Alice", "username": "alice"}


class Receiver:
    """A tiny aiohttp endpoint answering with scripted statuses; records every request."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.read()))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.json_response({"ok": status < 300}, status=status)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/hook"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


# ---------------------------------------------------------------------- Slack


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(ack_timeout=3.0) as fake:
        fake.add_channel("C1", "general")
        fake.add_user("U1", "alice")
        yield fake


async def test_slack_history_paging_and_bounds(slack: FakeSlack) -> None:
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url)
    stamps = [slack.add_history_only("C1", "U1", f"m{i}") for i in range(5)]
    assert stamps == sorted(stamps, key=float) and len(set(stamps)) == 5

    first = await client.conversations_history(channel="C1", limit=2)
    assert [m["text"] for m in first["messages"]] == ["m4", "m3"]
    assert first["has_more"] is True
    texts = []
    async for page in first:  # the SDK mutates and re-yields the same response object
        texts += [m["text"] for m in page["messages"]]
    assert texts == ["m4", "m3", "m2", "m1", "m0"]

    exclusive = await client.conversations_history(channel="C1", oldest=stamps[1], latest=stamps[3])
    assert [m["text"] for m in exclusive["messages"]] == ["m2"]
    inclusive = await client.conversations_history(channel="C1", oldest=stamps[1], latest=stamps[3], inclusive=True)
    assert [m["text"] for m in inclusive["messages"]] == ["m3", "m2", "m1"]
    assert slack.calls["conversations.history"] == 5

    with pytest.raises(SlackApiError) as err:
        await client.conversations_history(channel="C404")
    assert err.value.response["error"] == "channel_not_found"


async def test_slack_rate_limit_surfaces_and_retries(slack: FakeSlack) -> None:
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url)
    slack.fail_next("conversations.history", retry_after=7)
    with pytest.raises(SlackApiError) as err:
        await client.conversations_history(channel="C1")
    assert err.value.response.status_code == 429
    assert err.value.response.headers["Retry-After"] == "7"
    assert err.value.response["error"] == "ratelimited"
    assert (await client.conversations_history(channel="C1"))["ok"] is True

    patient = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url,
                             retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=1)])
    slack.fail_next("users.info", retry_after=0)
    assert (await patient.users_info(user="U1"))["user"]["name"] == "alice"
    assert slack.calls["users.info"] == 2


async def test_slack_auth_post_update_threads_and_bad_token(slack: FakeSlack) -> None:
    client = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url)
    me = await client.auth_test()
    assert (me["team_id"], me["user_id"], me["bot_id"]) == (slack.team_id, slack.bot_user_id, slack.bot_id)

    parent = slack.post_message("C1", "U1", "question?")
    posted = await client.chat_postMessage(channel="C1", text="answer", thread_ts=parent)
    assert posted["message"]["bot_id"] == slack.bot_id and posted["channel"] == "C1"
    await client.chat_update(channel="C1", ts=posted["ts"], text="better answer")
    replies = await client.conversations_replies(channel="C1", ts=parent)
    assert [m["text"] for m in replies["messages"]] == ["question?", "better answer"]
    assert replies["messages"][0]["reply_count"] == 1
    history = await client.conversations_history(channel="C1")
    assert [m["text"] for m in history["messages"]] == ["question?"]  # replies stay in the thread

    info = await client.conversations_info(channel="C1")
    assert info["channel"]["name"] == "general"
    listed = await client.conversations_list()
    assert [c["id"] for c in listed["channels"]] == ["C1"]

    with pytest.raises(SlackApiError) as err:
        await AsyncWebClient(token="xoxb-nope", base_url=slack.base_url).auth_test()
    assert err.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as err:
        await client.apps_connections_open(app_token=slack.bot_token)
    assert err.value.response["error"] == "not_allowed_token_type"


async def test_slack_oauth_v2_access_and_refresh(slack: FakeSlack) -> None:
    slack.add_oauth_code("c0de", "cid", "csecret", "http://localhost/cb", "T2", "Other", "xoxe.xoxb-t2",
                         "UB2", refresh_token="xoxe-1-r", expires_in=43200)
    client = AsyncWebClient(base_url=slack.base_url)
    with pytest.raises(SlackApiError) as err:
        await client.oauth_v2_access(client_id="cid", client_secret="csecret", code="bad",
                                     redirect_uri="http://localhost/cb")
    assert err.value.response["error"] == "invalid_code"

    got = await client.oauth_v2_access(client_id="cid", client_secret="csecret", code="c0de",
                                       redirect_uri="http://localhost/cb")
    assert (got["access_token"], got["team"]["id"], got["bot_user_id"]) == ("xoxe.xoxb-t2", "T2", "UB2")
    assert got["refresh_token"] == "xoxe-1-r" and got["expires_in"] == 43200
    assert (await AsyncWebClient(token=got["access_token"], base_url=slack.base_url).auth_test())["team_id"] == "T2"

    with pytest.raises(SlackApiError):  # codes are single-use
        await client.oauth_v2_access(client_id="cid", client_secret="csecret", code="c0de",
                                     redirect_uri="http://localhost/cb")
    fresh = await client.oauth_v2_access(client_id="cid", client_secret="csecret",
                                         grant_type="refresh_token", refresh_token="xoxe-1-r")
    assert fresh["access_token"] != "xoxe.xoxb-t2" and fresh["refresh_token"] != "xoxe-1-r"


def _socket_client(fake: FakeSlack, requests: list[SocketModeRequest], ack: Callable[[SocketModeRequest], bool]
                   ) -> SocketModeClient:
    client = SocketModeClient(fake.app_token, web_client=AsyncWebClient(base_url=fake.base_url), ping_interval=0.2)

    async def listener(c: Any, req: SocketModeRequest) -> None:
        requests.append(req)
        if ack(req):
            await c.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))

    client.socket_mode_request_listeners.append(listener)
    return client


async def test_slack_socket_mode_ack_and_redelivery_after_drop(slack: FakeSlack) -> None:
    got: list[SocketModeRequest] = []
    client = _socket_client(slack, got, ack=lambda r: r.payload["event"]["text"] != "two" or r.retry_attempt > 0)
    await client.connect()
    try:
        slack.post_message("C1", "U1", "one")
        await wait_until(lambda: len(slack.acked_event_ids) == 1)
        event = got[0].payload["event"]
        assert got[0].type == "events_api" and got[0].retry_attempt == 0
        assert (event["type"], event["user"], event["channel_type"]) == ("message", "U1", "channel")

        slack.post_message("C1", "U1", "two")
        await wait_until(lambda: len(got) == 2)
        slack.drop_connections()
        await wait_until(lambda: len(slack.acked_event_ids) == 2)
        assert got[2].payload["event_id"] == got[1].payload["event_id"]
        assert got[2].retry_attempt == 1 and got[2].envelope_id != got[1].envelope_id
        assert slack.calls["apps.connections.open"] >= 2

        posted = await AsyncWebClient(token=slack.bot_token, base_url=slack.base_url).chat_postMessage(
            channel="C1", text="from the bot")
        await wait_until(lambda: len(got) == 4)
        echo = got[3].payload["event"]
        assert echo["bot_id"] == slack.bot_id and echo["ts"] == posted["ts"]  # the echo to suppress
    finally:
        await client.close()


async def test_slack_socket_mode_ack_timeout_disconnect_and_redeliver() -> None:
    async with FakeSlack(ack_timeout=0.3) as fake:
        fake.add_channel("D1", "alice", is_im=True, user="U1")
        got: list[SocketModeRequest] = []
        client = _socket_client(fake, got, ack=lambda r: r.retry_attempt >= 1)
        await client.connect()
        try:
            ts = fake.post_message("D1", "U1", "hi", files=[{"id": "F1", "name": "a.txt"}])
            await wait_until(lambda: fake.acked_event_ids)
            assert [r.retry_attempt for r in got] == [0, 1] and got[1].retry_reason == "timeout"
            assert got[0].payload["event"]["channel_type"] == "im"
            assert got[0].payload["event"]["files"][0]["id"] == "F1"

            fake.send_disconnect()
            await wait_until(lambda: fake.calls["apps.connections.open"] >= 2)
            fake.redeliver(got[0].payload["event_id"])
            fake.edit_message("D1", ts, "hi there")
            fake.delete_message("D1", ts)
            await wait_until(lambda: len(fake.acked_event_ids) == 4)  # each is acked only on its retry
            subtypes = [r.payload["event"].get("subtype") for r in got if r.retry_attempt == 0]
            assert subtypes == ["file_share", "file_share", "message_changed", "message_deleted"]
            changed = next(r.payload["event"] for r in got if r.payload["event"].get("subtype") == "message_changed")
            assert changed["message"]["text"] == "hi there" and changed["previous_message"]["text"] == "hi"
        finally:
            await client.close()


async def test_slack_events_over_http_are_signed_and_retried(slack: FakeSlack) -> None:
    verifier = SignatureVerifier("s3cret")
    async with Receiver([500]) as hook:
        results = await slack.deliver_http(hook.url, "s3cret", {"type": "app_mention", "text": "hi", "user": "U1"})
        assert [r.status for r in results] == [500, 200]
        (h0, body0), (h1, body1) = hook.requests
        assert body0 == body1 and verifier.is_valid_request(body1, h1)
        assert "X-Slack-Retry-Num" not in h0
        assert (h1["X-Slack-Retry-Num"], h1["X-Slack-Retry-Reason"]) == ("1", "http_error")
        assert not SignatureVerifier("wrong").is_valid_request(body1, h1)

        challenge = await slack.deliver_http(hook.url, "s3cret", None)
        assert json.loads(hook.requests[-1][1])["type"] == "url_verification" and challenge[0].status == 200

        slack.socket_mode, slack.http_event_url, slack.signing_secret = False, hook.url, "s3cret"
        slack.post_message("C1", "U1", "over http")
        await wait_until(lambda: len(hook.requests) == 4)
        assert json.loads(hook.requests[-1][1])["event"]["text"] == "over http"


# ---------------------------------------------------------------------- Telegram


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(webhook_retry_delays=(0.05,)) as fake:
        fake.add_bot(TG_TOKEN, 123456, "fake_bot")
        fake.add_chat(42, "private", first_name="Alice", username="alice")
        fake.add_chat(-100, "supergroup", "Team")
        yield fake


def _bot(fake: FakeTelegram, token: str = TG_TOKEN) -> Bot:
    return Bot(token, base_url=f"{fake.base_url}/bot", base_file_url=f"{fake.base_url}/file/bot")


def _seconds(value: int | dtm.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


async def test_telegram_get_updates_offset_semantics(tg: FakeTelegram) -> None:
    async with _bot(tg) as bot:
        assert bot.username == "fake_bot"
        ids = [tg.post_message(TG_TOKEN, 42, ALICE, f"hello {i}") for i in range(3)]
        updates = await bot.get_updates()
        assert [u.message.text for u in updates] == ["hello 0", "hello 1", "hello 2"]
        assert [u.message.message_id for u in updates] == ids
        again = await bot.get_updates(offset=updates[1].update_id)  # confirms only the first
        assert [u.update_id for u in again] == [u.update_id for u in updates[1:]]
        assert await bot.get_updates(offset=updates[-1].update_id + 1) == ()
        assert tg.pending_updates(TG_TOKEN) == []

        tg.redeliver_next(TG_TOKEN)
        dup = await bot.get_updates(offset=updates[-1].update_id + 1)
        assert [u.update_id for u in dup] == [updates[-1].update_id]

        reply_id = tg.post_message(TG_TOKEN, -100, ALICE, "/start@fake_bot please", reply_to_message_id=None)
        tg.edit_message(TG_TOKEN, -100, reply_id, "/start@fake_bot now")
        u1, u2 = await bot.get_updates(limit=5)
        assert u1.message.entities[0].type == "bot_command" and u1.message.chat.type == "supergroup"
        assert u2.edited_message.text == "/start@fake_bot now" and u2.edited_message.edit_date is not None

        await bot.get_updates(offset=u2.update_id + 1, allowed_updates=["edited_message"])
        tg.post_message(TG_TOKEN, 42, ALICE, "not wanted")  # opted out: never becomes an update
        assert tg.pending_updates(TG_TOKEN) == []


async def test_telegram_long_poll_released_by_new_message(tg: FakeTelegram) -> None:
    async with _bot(tg) as bot:
        started = time.monotonic()
        poll = asyncio.create_task(bot.get_updates(timeout=10))
        await asyncio.sleep(0.2)
        assert not poll.done()
        tg.post_message(TG_TOKEN, 42, ALICE, "wake up")
        updates = await asyncio.wait_for(poll, 3)
        assert [u.message.text for u in updates] == ["wake up"] and time.monotonic() - started < 3

        empty = await bot.get_updates(offset=updates[0].update_id + 1, timeout=0.3)
        assert empty == ()

        poll = asyncio.create_task(bot.get_updates(timeout=10))
        await asyncio.sleep(0.2)
        tg.drop_connections()
        with pytest.raises(NetworkError):
            await asyncio.wait_for(poll, 3)


async def test_telegram_errors_retry_after_invalid_token_conflict(tg: FakeTelegram) -> None:
    async with _bot(tg) as bot:
        tg.fail_next("sendMessage", retry_after=5)
        with pytest.raises(RetryAfter) as err:
            await bot.send_message(42, "hi")
        assert _seconds(err.value.retry_after) == 5
        sent = await bot.send_message(42, "hi again")
        assert sent.from_user.id == 123456 and tg.sent_messages[-1]["text"] == "hi again"
        edited = await bot.edit_message_text("hi, edited", chat_id=42, message_id=sent.message_id)
        assert edited.edit_date is not None
        chat = await bot.get_chat(42)
        assert chat.username == "alice"
        tg.add_file("doc1", b"file bytes", "documents/file_1.txt")
        file = await bot.get_file("doc1")
        assert bytes(await file.download_as_bytearray()) == b"file bytes"
        assert tg.calls["sendMessage"] == 2 and tg.pending_updates(TG_TOKEN) == []  # no self-echo

    with pytest.raises(InvalidToken):
        async with _bot(tg, "999:unknown"):
            pass

    async with aiohttp.ClientSession() as http:  # two concurrent polls: the older one loses
        url = f"{tg.base_url}/bot{TG_TOKEN}/getUpdates"
        first = asyncio.create_task(http.post(url, data={"timeout": "5"}))
        await asyncio.sleep(0.2)
        second = await http.post(url, data={"timeout": "0"})
        resp = await first
        assert (resp.status, second.status) == (409, 200)
        assert (await resp.json())["description"].startswith("Conflict: terminated by other getUpdates")
        as_json = await http.post(f"{tg.base_url}/bot{TG_TOKEN}/sendMessage",
                                  json={"chat_id": -100, "text": "json body", "message_thread_id": 7})
        assert (await as_json.json())["result"]["message_thread_id"] == 7


async def test_telegram_webhook_delivery_with_secret(tg: FakeTelegram) -> None:
    async with Receiver([500]) as hook, _bot(tg) as bot:
        assert await bot.set_webhook(hook.url, secret_token="s3cret")
        message_id = tg.post_message(TG_TOKEN, 42, ALICE, "via webhook")
        await wait_until(lambda: len(hook.requests) == 2)
        headers, body = hook.requests[-1]
        assert headers["X-Telegram-Bot-Api-Secret-Token"] == "s3cret"
        update = Update.de_json(json.loads(body), bot)
        assert update is not None and update.message.message_id == message_id
        assert hook.requests[0][1] == body  # the 500 was retried with the same update
        info = await bot.get_webhook_info()
        assert info.url == hook.url and info.pending_update_count == 0
        assert "500" in (info.last_error_message or "")
        with pytest.raises(Conflict):
            await bot.get_updates()
        assert await bot.delete_webhook()
        assert await bot.get_updates() == ()


async def test_telegram_application_polling_end_to_end(tg: FakeTelegram) -> None:
    seen: list[Update] = []

    async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        seen.append(update)
        await update.effective_message.reply_text(f"echo: {update.effective_message.text}")

    app = (ApplicationBuilder().token(TG_TOKEN).base_url(f"{tg.base_url}/bot")
           .base_file_url(f"{tg.base_url}/file/bot").build())
    app.add_handler(MessageHandler(filters.TEXT, echo))
    async with app:
        assert app.updater is not None
        await app.updater.start_polling(poll_interval=0, timeout=1)
        await app.start()
        try:
            tg.post_message(TG_TOKEN, 42, ALICE, "ping")
            await wait_until(lambda: tg.sent_messages)
            assert tg.sent_messages[0]["text"] == "echo: ping" and tg.sent_messages[0]["chat"]["id"] == 42
            tg.redeliver_next(TG_TOKEN)  # a duplicate delivery reaches the handler again
            await wait_until(lambda: len(seen) == 2)
            assert seen[0].update_id == seen[1].update_id
        finally:
            await app.updater.stop()
            await app.stop()
    assert tg.calls["deleteWebhook"] == 1 and tg.pending_updates(TG_TOKEN) == []
