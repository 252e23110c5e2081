"""send, connect, the webhook receiver and the protocol checks, against the loopback Bot API."""

from __future__ import annotations

import json
import string
import time
from typing import Any

import pytest

from config.settings import PlatformSettings
from connectors.base import (
    Backfiller,
    Connector,
    CredentialSetup,
    Envelope,
    NeedsReauth,
    OAuthSetup,
    Outbound,
    RateLimited,
    SetupContext,
    WebhookReceiver,
    WebhookRejected,
    WebhookRequest,
)
from connectors.registry import connector_class
from connectors.telegram.connector import TelegramConnector
from tests.connectors.telegram.conftest import ALICE, BOT_ID, FORUM, PRIVATE, SECRET, TOKEN, make_account
from tests.fakes.telegram import FakeTelegram

UNKNOWN = "999999:AAnotAKnownTokenAtAll_0123456789"
SETUP = SetupContext(user_id="user-1", public_url="https://hub.example")


def test_protocols_and_registry(connector: TelegramConnector) -> None:
    assert isinstance(connector, Connector) and connector.platform == "telegram"
    assert isinstance(connector, CredentialSetup) and isinstance(connector, WebhookReceiver)
    assert not isinstance(connector, Backfiller)  # the Bot API cannot read history
    assert not isinstance(connector, OAuthSetup)
    assert connector_class("telegram") is TelegramConnector


# ---------------------------------------------------------------------- send


async def test_send_plain(tg: FakeTelegram, connector: TelegramConnector) -> None:
    sent = await connector.send(make_account(), Outbound(chat_id=str(PRIVATE), text="hello Alice"))
    wire = tg.sent_messages[-1]
    assert (sent.native_id, sent.chat_id, sent.thread_id) == (str(wire["message_id"]), str(PRIVATE), None)
    assert sent.sent_at == wire["date"] * 1000 and abs(sent.sent_at - time.time() * 1000) < 5000
    assert sent.raw == wire  # exactly what Telegram answered
    assert wire["text"] == "hello Alice" and wire["from"]["id"] == BOT_ID


async def test_send_reply_into_a_forum_topic(tg: FakeTelegram, connector: TelegramConnector) -> None:
    asked = tg.post_message(TOKEN, FORUM, ALICE, "release date?", message_thread_id=400)
    sent = await connector.send(make_account(), Outbound(chat_id=str(FORUM), text="Friday", reply_to_id=str(asked), thread_id="400"))
    wire = tg.sent_messages[-1]
    assert wire["reply_to_message"]["message_id"] == asked and wire["message_thread_id"] == 400
    assert (sent.chat_id, sent.thread_id, sent.native_id) == (str(FORUM), "400", str(wire["message_id"]))
    echo = connector.normalize(_as_envelope(tg, wire), make_account())[0].message  # the same ids an echo would carry
    assert (echo.chat_id, echo.native_id, echo.thread_id, echo.reply_to_id, echo.is_self) == (
        sent.chat_id, sent.native_id, "400", str(asked), True)


def _as_envelope(tg: FakeTelegram, message: dict[str, Any]) -> Envelope:
    return Envelope("telegram", "acc", "1", 0, {"update_id": 1, "message": message})


async def test_send_waits_out_a_short_429(tg: FakeTelegram, connector: TelegramConnector) -> None:
    tg.fail_next("sendMessage", retry_after=1)
    started = time.monotonic()
    sent = await connector.send(make_account(), Outbound(chat_id=str(PRIVATE), text="after the flood"))
    assert time.monotonic() - started >= 1.0
    assert [m["text"] for m in tg.sent_messages] == ["after the flood"] and tg.calls["sendMessage"] == 2
    assert sent.native_id == str(tg.sent_messages[0]["message_id"])


async def test_send_raises_rate_limited_beyond_the_budget(tg: FakeTelegram, settings: PlatformSettings) -> None:
    connector = TelegramConnector(settings, send_retry_budget=2)
    tg.fail_next("sendMessage", retry_after=1)
    tg.fail_next("sendMessage", retry_after=7)
    started = time.monotonic()
    with pytest.raises(RateLimited) as err:
        await connector.send(make_account(), Outbound(chat_id=str(PRIVATE), text="too many"))
    assert err.value.retry_after == 7 and 1.0 <= time.monotonic() - started < 2.0
    assert tg.sent_messages == [] and tg.calls["sendMessage"] == 2


async def test_send_with_a_rejected_token_needs_reauth(tg: FakeTelegram, connector: TelegramConnector) -> None:
    with pytest.raises(NeedsReauth) as err:
        await connector.send(make_account(token=UNKNOWN), Outbound(chat_id=str(PRIVATE), text="hi"))
    assert "AAnotAKnownToken" not in str(err.value)


# ---------------------------------------------------------------------- connect


async def test_connect_with_a_good_token(tg: FakeTelegram, connector: TelegramConnector) -> None:
    spec = await connector.connect({"botToken": f"  {TOKEN}\n"}, SETUP)
    assert (spec.external_id, spec.name, spec.settings) == (str(BOT_ID), "@loomi_test_bot", {"mode": "polling"})
    assert spec.credentials["bot_token"] == TOKEN and spec.credentials["bot_id"] == BOT_ID
    secret = spec.credentials["webhook_secret"]
    assert len(secret) == 32 and set(secret) <= set(string.ascii_letters + string.digits + "_-")
    other = await connector.connect({"botToken": TOKEN, "mode": "webhook"}, SETUP)
    assert other.credentials["webhook_secret"] != secret
    assert other.settings == {"mode": "webhook", "public_url": SETUP.public_url}  # the listener builds the URL from it
    assert tg.calls["getMe"] == 2


async def test_connect_with_a_bad_token(tg: FakeTelegram, connector: TelegramConnector) -> None:
    with pytest.raises(NeedsReauth) as err:
        await connector.connect({"botToken": UNKNOWN}, SETUP)
    assert "AAnotAKnownToken" not in str(err.value) and err.value.__suppress_context__
    calls = tg.calls["getMe"]
    with pytest.raises(NeedsReauth):
        await connector.connect({"botToken": "not a token/../getMe"}, SETUP)  # never reaches Telegram
    assert tg.calls["getMe"] == calls
    for fields in ({}, {"botToken": ""}, {"botToken": 123}, {"botToken": TOKEN, "mode": "smoke"}):
        with pytest.raises(ValueError):
            await connector.connect(fields, SETUP)


async def test_connect_when_flood_limited(tg: FakeTelegram, connector: TelegramConnector) -> None:
    tg.fail_next("getMe", retry_after=3)
    with pytest.raises(RateLimited) as err:
        await connector.connect({"botToken": TOKEN}, SETUP)
    assert err.value.retry_after == 3


# ---------------------------------------------------------------------- webhook receiver

UPDATE = {"update_id": 730001, "message": {"message_id": 1, "date": 1717000000, "chat": {"id": 5001, "type": "private"},
                                           "from": {"id": 5001, "is_bot": False, "first_name": "Alice"}, "text": "hi"}}


def hook(headers: dict[str, str], body: bytes = json.dumps(UPDATE).encode(), with_account: bool = True) -> WebhookRequest:
    return WebhookRequest(headers=headers, body=body, query={}, account=make_account() if with_account else None)


def test_webhook_with_the_right_secret(connector: TelegramConnector) -> None:
    reply = connector.handle_webhook(hook({"x-telegram-bot-api-secret-token": SECRET, "content-type": "application/json"}))
    assert reply.status == 200 and len(reply.events) == 1
    event = reply.events[0]
    assert event.delivery_id == "730001" and event.external_id is None
    assert event.payload == UPDATE  # exactly as Telegram sent it
    assert connector.handle_webhook(hook({"X-Telegram-Bot-Api-Secret-Token": SECRET})).events == reply.events


@pytest.mark.parametrize("headers", [{"x-telegram-bot-api-secret-token": "wrong"}, {"x-telegram-bot-api-secret-token": SECRET[:-1]},
                                     {"x-telegram-bot-api-secret-token": ""}, {"x-telegram-bot-api-secret-token": "ünïcode"}, {}])
def test_webhook_with_a_wrong_or_missing_secret(connector: TelegramConnector, headers: dict[str, str]) -> None:
    with pytest.raises(WebhookRejected) as err:
        connector.handle_webhook(hook(headers))
    assert err.value.status == 401


def test_webhook_rejects_what_is_not_an_update(connector: TelegramConnector) -> None:
    ok = {"x-telegram-bot-api-secret-token": SECRET}
    for body in (b"not json", b"[1]", b'{"message": {}}', b'{"update_id": "1"}'):
        with pytest.raises(WebhookRejected) as err:
            connector.handle_webhook(hook(ok, body))
        assert err.value.status == 400
    with pytest.raises(WebhookRejected) as err:
        connector.handle_webhook(hook(ok, with_account=False))
    assert err.value.status == 404
    no_secret = hook(ok)
    assert no_secret.account is not None
    no_secret.account.credentials.pop("webhook_secret")
    with pytest.raises(WebhookRejected) as err:
        connector.handle_webhook(no_secret)
    assert err.value.status == 401


async def test_connect_when_telegram_cannot_be_reached() -> None:
    """Nothing listens on port 1: a set-up call says the platform is unreachable (502), not 500."""
    from config.settings import load_settings
    from connectors.base import PlatformUnavailable

    offline = TelegramConnector(load_settings({"LOOMI_TELEGRAM_BASE_URL": "http://127.0.0.1:1"}).platform("telegram"))
    with pytest.raises(PlatformUnavailable):
        await offline.connect({"botToken": TOKEN}, SETUP)
