"""The fault modes of the fakes (tests/fakes/faults.py) do to the real SDKs what a flaky
platform does: errors worded as the platform words them, answers cut off mid-body, bodies that
are not JSON, requests that get no answer, a silent socket. The chaos scenarios rely on it."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.web.async_client import AsyncWebClient
from telegram import Bot
from telegram.error import NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.request import HTTPXRequest

from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram

TOKEN = "4242:AAFakeFaultsTokenForTheLoopbackFake"


async def test_telegram_faults_reach_python_telegram_bot_as_telegram_would() -> None:
    async with FakeTelegram() as tg:
        tg.add_bot(TOKEN, 4242, "faulty_bot")
        bot = Bot(TOKEN, base_url=f"{tg.base_url}/bot", request=HTTPXRequest(read_timeout=0.5))

        tg.fail_for("getMe", 0.3, status=500)
        for _ in range(2):  # every call in the window
            with pytest.raises(NetworkError, match="Internal Server Error"):
                await bot.get_me()
        await asyncio.sleep(0.35)
        assert (await bot.get_me()).username == "faulty_bot"  # and none after it

        tg.fail_for("getMe", 0.3, status=429, retry_after=2)
        with pytest.raises(RetryAfter) as limited:
            await bot.get_me()
        assert "2" in str(limited.value)
        await asyncio.sleep(0.35)

        tg.garbage_next("getMe")
        with pytest.raises(TelegramError, match="Invalid server response"):
            await bot.get_me()

        tg.stall("getMe", 2.0)
        began = time.monotonic()
        with pytest.raises(TimedOut):
            await bot.get_me()
        assert time.monotonic() - began < 1.5  # the client gave up; the fake was still holding it
        tg.release()

        # an answer that carries an update, cut off halfway: the update is not confirmed
        tg.post_message(TOKEN, 42, {"id": 1, "first_name": "A"}, "kept")
        tg.drop_next("getUpdates")
        with pytest.raises(NetworkError, match="peer closed connection"):
            await bot.get_updates(timeout=0)
        assert len(tg.pending_updates(TOKEN)) == 1
        assert [u.message.text for u in await bot.get_updates(timeout=0)] == ["kept"]
        assert tg.faults.count("drop", "getUpdates") == 1 and tg.faults.count("status") == 3


async def test_slack_faults_reach_slack_sdk_as_slack_would() -> None:
    async with FakeSlack() as slack:
        web = AsyncWebClient(token=slack.bot_token, base_url=slack.base_url, timeout=1)

        slack.fail_for("auth.test", 0.3, status=429, retry_after=3)
        with pytest.raises(SlackApiError) as limited:
            await web.auth_test()
        assert limited.value.response.status_code == 429 and limited.value.response.headers["Retry-After"] == "3"
        await asyncio.sleep(0.35)

        slack.drop_next("auth.test")
        with pytest.raises(aiohttp.ClientPayloadError):
            await web.auth_test()

        slack.garbage_next("auth.test")
        with pytest.raises(SlackApiError, match="non-JSON"):
            await web.auth_test()

        slack.stall("auth.test")  # until release()
        call = asyncio.create_task(web.auth_test())
        await asyncio.sleep(0.3)
        assert not call.done()
        slack.release()
        assert (await call)["user_id"] == slack.bot_user_id

        # a silent socket: slack_sdk's ping gets no pong and it asks for a new one
        client = SocketModeClient(slack.app_token, web_client=AsyncWebClient(base_url=slack.base_url), ping_interval=0.2)
        try:
            await client.connect()
            await asyncio.sleep(0.3)
            opens = slack.calls["apps.connections.open"]
            slack.stall_sockets(1.5)
            await asyncio.sleep(1.0)
            assert slack.calls["apps.connections.open"] > opens  # it noticed and is reconnecting
            await asyncio.sleep(1.0)
            assert await client.is_connected()  # and got through once the silence ended
            seen: list[dict] = []

            async def listener(_client, message, _raw) -> None:
                seen.append(message)

            client.message_listeners.append(listener)
            await slack.send_garbage()  # not JSON (dropped by slack_sdk), then an envelope with no event
            await asyncio.sleep(0.3)
            assert [m.get("payload") for m in seen] == ["garbage"]
        finally:
            await client.close()
