"""Events API webhook: v0 signatures (slack_sdk's SignatureVerifier), staleness, url_verification."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from aiohttp import web

from config.settings import PlatformSettings, load_settings
from connectors.base import Account, Envelope, WebhookRejected, WebhookRequest
from connectors.slack.connector import SlackConnector
from tests.connectors.slack.conftest import SIGNING_SECRET
from tests.fakes.slack import FakeSlack, sign

NOW = 1_700_000_000
BODY = {"token": "t", "team_id": "T0FAKE", "api_app_id": "A1", "type": "event_callback", "event_id": "Ev1",
        "event_time": NOW, "event": {"type": "message", "channel": "C1", "user": "U1", "text": "hi",
                                     "ts": f"{NOW}.000100", "channel_type": "channel"}}


def request(body: Any, *, at: int = NOW, secret: str = SIGNING_SECRET, raw: bytes | None = None) -> WebhookRequest:
    data = raw if raw is not None else json.dumps(body).encode()
    headers = {"x-slack-request-timestamp": str(at), "x-slack-signature": sign(secret, str(at), data),
               "content-type": "application/json"}
    return WebhookRequest(headers=headers, body=data, query={})


@pytest.fixture
def connector(settings: PlatformSettings) -> SlackConnector:
    slack = SlackConnector(settings)
    slack.webhook.now = lambda: NOW + 10
    return slack


def test_signed_event_callback(connector: SlackConnector) -> None:
    reply = connector.handle_webhook(request(BODY))
    assert (reply.status, reply.body) == (200, None)
    (event,) = reply.events
    assert (event.delivery_id, event.external_id) == ("Ev1", "T0FAKE")
    assert event.payload == {k: v for k, v in BODY.items() if k != "token"}  # the verification token is not kept


def test_forged(connector: SlackConnector) -> None:
    with pytest.raises(WebhookRejected) as err:
        connector.handle_webhook(request(BODY, secret="not-the-secret"))
    assert err.value.status == 401
    tampered = request(BODY)
    tampered.body = tampered.body.replace(b'"hi"', b'"hacked"')
    with pytest.raises(WebhookRejected) as err:
        connector.handle_webhook(tampered)
    assert err.value.status == 401
    for missing in ("x-slack-signature", "x-slack-request-timestamp"):
        unsigned = request(BODY)
        del unsigned.headers[missing]
        with pytest.raises(WebhookRejected) as err:
            connector.handle_webhook(unsigned)
        assert err.value.status == 401
    with pytest.raises(WebhookRejected) as err:
        connector.handle_webhook(request(None, raw=b"\xff\xfe not utf-8"))
    assert err.value.status == 401


def test_stale(connector: SlackConnector) -> None:
    with pytest.raises(WebhookRejected) as err:
        connector.handle_webhook(request(BODY, at=NOW - 5 * 60 - 1))  # correctly signed, 5 min + 11 s old
    assert (err.value.status, err.value.reason) == (401, "stale Slack request")
    assert connector.handle_webhook(request(BODY, at=NOW - 5 * 60 + 20)).events  # 4 min 50 s: fine


def test_url_verification(connector: SlackConnector) -> None:
    body = {"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification"}
    reply = connector.handle_webhook(request(body))
    assert (reply.status, reply.body, reply.events) == (200, {"challenge": body["challenge"]}, [])
    with pytest.raises(WebhookRejected):  # the challenge is signed too
        connector.handle_webhook(request(body, secret="forged"))


def test_malformed_and_other_types(connector: SlackConnector) -> None:
    with pytest.raises(WebhookRejected) as err:
        connector.handle_webhook(request(None, raw=b"payload=%7B%7D"))
    assert err.value.status == 400
    with pytest.raises(WebhookRejected) as err:
        connector.handle_webhook(request({"type": "event_callback", "team_id": "T0FAKE"}))
    assert err.value.status == 400
    limited = connector.handle_webhook(request({"type": "app_rate_limited", "team_id": "T0FAKE",
                                                "minute_rate_limited": NOW, "api_app_id": "A1"}))
    assert (limited.status, limited.events) == (200, [])


def test_no_signing_secret_rejects_everything(fake: FakeSlack) -> None:
    bare = SlackConnector(load_settings({"LOOMI_SLACK_BASE_URL": fake.base_url}).platform("slack"))
    with pytest.raises(WebhookRejected) as err:
        bare.handle_webhook(request(BODY))
    assert err.value.status == 500


async def test_fake_slack_delivery_verifies_and_normalizes(fake: FakeSlack, settings: PlatformSettings) -> None:
    """The same body FakeSlack signs and POSTs, fed through the receiver with the real clock."""
    received: list[Any] = []
    slack = SlackConnector(settings)

    async def route(req: web.Request) -> web.Response:
        wr = WebhookRequest(headers={k.lower(): v for k, v in req.headers.items()}, body=await req.read(), query={})
        try:
            reply = slack.handle_webhook(wr)
        except WebhookRejected as rejected:
            return web.json_response({"error": rejected.reason}, status=rejected.status)
        received.extend(reply.events)
        return web.json_response(reply.body or {}, status=reply.status)

    app = web.Application()
    app.router.add_post("/api/slack/events", route)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/slack/events"
    try:
        fake.add_channel("C2", "random")
        (ok,) = await fake.deliver_http(url, SIGNING_SECRET, {"type": "message", "channel": "C2", "user": "U1",
                                                               "text": "over http", "ts": f"{int(time.time())}.000001",
                                                               "channel_type": "channel"})
        assert ok.status == 200
        forged = await fake.deliver_http(url, "wrong", {"type": "message"}, retry_delays=[])
        assert [d.status for d in forged] == [401]
        challenge = await fake.deliver_http(url, SIGNING_SECRET, None)
        assert json.loads(challenge[0].body)["challenge"]
    finally:
        await runner.cleanup()
    (event,) = received
    account = Account("acct", "usr", "slack", fake.team_id, "Fake", {"bot_user_id": fake.bot_user_id, "bot_id": fake.bot_id})
    (change,) = slack.normalize(Envelope("slack", "acct", event.delivery_id, 0, event.payload, "webhook"), account)
    assert change.message.text == "over http" and change.chat_id == "C2"

