"""The HTTP event callback: real requests from the fake (encrypted, signed, with the verification
token) through a tiny aiohttp route that calls handle_webhook, and forged ones refused."""

from __future__ import annotations

import json
import time
from typing import Any, AsyncIterator

import pytest
from aiohttp import web

from connectors.base import Account, WebhookRejected, WebhookRequest
from connectors.feishu.connector import FeishuConnector
from connectors.feishu.webhook import handle_webhook
from tests.connectors.feishu.conftest import ALICE, GROUP, make_account
from tests.fakes.feishu import FakeFeishu, encrypt, sign

KEY, TOKEN = "encrypt-key-0123", "verification-token-abc"


class Route:
    """`/api/feishu/webhook/{accountId}` reduced to what the connector decides."""

    def __init__(self, connector: FeishuConnector, account: Account) -> None:
        self.connector, self.account = connector, account
        self.events: list[Any] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        webhook = WebhookRequest(headers={k.lower(): v for k, v in request.headers.items()},
                                 body=await request.read(), query=dict(request.query), account=self.account)
        try:
            reply = self.connector.handle_webhook(webhook)
        except WebhookRejected as err:
            return web.json_response({"error": err.reason}, status=err.status)
        self.events += reply.events
        return web.json_response(reply.body or {}, status=reply.status)


@pytest.fixture
async def route(connector: FeishuConnector) -> AsyncIterator[Route]:
    r = Route(connector, make_account(encrypt_key=KEY, verification_token=TOKEN))
    app = web.Application()
    app.router.add_post("/api/feishu/webhook/{account_id}", r.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    r.url = f"http://127.0.0.1:{runner.addresses[0][1]}/api/feishu/webhook/acc-feishu-1"
    yield r
    await runner.cleanup()


async def test_encrypted_signed_event_is_accepted_and_normalized(fs: FakeFeishu, route: Route) -> None:
    message_id = fs.post_message(GROUP, ALICE, "over the callback")
    event_id = fs.pending_event_ids[-1]
    resp = await fs.deliver_http(route.url, event_id, encrypt_key=KEY, verification_token=TOKEN)
    assert resp.status == 200
    [event] = route.events
    assert event.delivery_id == event_id and event.external_id == "cli_loomi_test"
    assert "token" not in event.payload["header"]  # the verification token is never queued
    from connectors.base import Envelope

    [change] = route.connector.normalize(Envelope("feishu", "acc-feishu-1", event_id, 1, event.payload, "webhook"),
                                         route.account)
    assert change.native_id == message_id and change.message.text == "over the callback"


async def test_url_verification_echoes_the_challenge(fs: FakeFeishu, route: Route) -> None:
    challenge = {"challenge": "ajls384kdjx98XX", "token": TOKEN, "type": "url_verification"}
    resp = await fs.post_callback(route.url, challenge, encrypt_key=KEY)
    assert resp.status == 200 and json.loads(await resp.text()) == {"challenge": "ajls384kdjx98XX"}
    wrong = await fs.post_callback(route.url, {**challenge, "token": "guess"}, encrypt_key=KEY)
    assert wrong.status == 401 and route.events == []


@pytest.mark.parametrize("forgery", ["tampered", "wrong_key", "wrong_token", "plain", "unsigned"])
async def test_forged_callbacks_are_refused(fs: FakeFeishu, route: Route, forgery: str) -> None:
    fs.post_message(GROUP, ALICE, "x")
    event_id = fs.pending_event_ids[-1]
    if forgery == "unsigned":
        body_obj = fs.event_body(event_id)
        body_obj["header"]["token"] = TOKEN
        body = json.dumps({"encrypt": encrypt(KEY, json.dumps(body_obj).encode())}).encode()
        resp = await fs._session.post(route.url, data=body)
    else:
        resp = await fs.deliver_http(
            route.url, event_id, tamper=forgery == "tampered",
            encrypt_key={"wrong_key": "other-key", "plain": None}.get(forgery, KEY),
            verification_token="bad" if forgery == "wrong_token" else TOKEN)
    assert resp.status in (400, 401) and route.events == []


def test_stale_or_accountless_or_unconfigured_requests_are_refused() -> None:
    body_obj = {"schema": "2.0", "header": {"event_id": "e1", "event_type": "im.message.receive_v1", "token": TOKEN,
                                            "app_id": "cli_loomi_test"}, "event": {}}
    body = json.dumps({"encrypt": encrypt(KEY, json.dumps(body_obj).encode())}).encode()
    stamp, nonce = str(int(time.time()) - 3600), "n1"
    headers = {"x-lark-request-timestamp": stamp, "x-lark-request-nonce": nonce,
               "x-lark-signature": sign(stamp, nonce, KEY, body)}
    account = make_account(encrypt_key=KEY, verification_token=TOKEN)
    with pytest.raises(WebhookRejected, match="stale"):
        handle_webhook(WebhookRequest(headers, body, {}, account))
    fresh = handle_webhook(WebhookRequest(headers, body, {}, account), now=lambda: int(stamp) + 10)
    assert [e.delivery_id for e in fresh.events] == ["e1"]
    with pytest.raises(WebhookRejected) as err:
        handle_webhook(WebhookRequest(headers, body, {}, None))
    assert err.value.status == 404
    with pytest.raises(WebhookRejected) as err:
        handle_webhook(WebhookRequest(headers, body, {}, make_account()))
    assert err.value.status == 401


def test_token_only_accounts_check_the_token_on_plain_bodies() -> None:
    account = make_account(verification_token=TOKEN)
    body_obj = {"schema": "2.0", "header": {"event_id": "e2", "token": TOKEN, "event_type": "x", "app_id": "a"},
                "event": {}}
    ok = handle_webhook(WebhookRequest({}, json.dumps(body_obj).encode(), {}, account))
    assert [e.delivery_id for e in ok.events] == ["e2"]
    body_obj["header"]["token"] = "nope"
    with pytest.raises(WebhookRejected):
        handle_webhook(WebhookRequest({}, json.dumps(body_obj).encode(), {}, account))
