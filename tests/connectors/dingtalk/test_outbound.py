"""send, connect and HTTP-mode callbacks against the loopback DingTalk."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from connectors.base import NeedsReauth, Outbound, RateLimited, SetupContext, WebhookRejected, WebhookRequest
from connectors.dingtalk.connector import DingTalkConnector
from tests.connectors.dingtalk.conftest import APP, SECRET, RecordingContext, make_account, running
from tests.fakes.dingtalk import FakeDingTalk, sign
from tests.waiting import wait_until

SETUP = SetupContext(user_id="user-1", public_url="http://127.0.0.1:3414")


async def test_robot_api_for_dms_and_groups(fake: FakeDingTalk, connector: DingTalkConnector) -> None:
    account = make_account()
    dm = await connector.send(account, Outbound("user:staff-alice", "hi Alice"))
    group = await connector.send(account, Outbound("group:cidG1", "hi team 你好"))
    assert [(s["via"], s["chat_id"], s["text"]) for s in fake.sent] == [
        ("oto", "user:staff-alice", "hi Alice"), ("group", "group:cidG1", "hi team 你好")]
    assert dm.native_id == fake.sent[0]["processQueryKey"] and group.native_id == fake.sent[1]["processQueryKey"]
    assert dm.chat_id == "user:staff-alice" and abs(dm.sent_at - time.time() * 1000) < 5000
    assert fake.sent[0]["body"]["robotCode"] == APP and fake.sent[0]["body"]["msgKey"] == "sampleText"
    assert fake.calls.count("accessToken") == 1  # the token is cached across sends


async def test_session_webhook_while_fresh_then_the_api(fake: FakeDingTalk, connector: DingTalkConnector) -> None:
    account = make_account()
    ctx = RecordingContext(account)
    async with running(connector, ctx):
        await wait_until(lambda: fake.connections(APP) == 1, timeout=10)
        fake.post_message(APP, "hello", group="cidG2")
        await wait_until(lambda: len(ctx.envelopes) == 1)
    sent = await connector.send(account, Outbound("group:cidG2", "answer via session"))
    assert fake.sent[-1]["via"] == "session" and sent.native_id.startswith("session:")
    assert fake.calls.count("accessToken") == 0  # the session webhook needs no token
    fake.expire_sessions()
    later = await connector.send(account, Outbound("group:cidG2", "answer via api"))
    assert [s["via"] for s in fake.sent] == ["session", "group"] and later.native_id == fake.sent[-1]["processQueryKey"]


async def test_a_fresh_session_webhook_in_last_inbound_is_used(fake: FakeDingTalk, connector: DingTalkConnector) -> None:
    """Another process heard the message: only the stored payload can carry the webhook."""
    other = DingTalkConnector(connector.settings)
    ctx = RecordingContext(make_account())
    async with running(other, ctx):
        await wait_until(lambda: fake.connections(APP) == 1, timeout=10)
        fake.post_message(APP, "hello", sender=("staff-zoe", "Zoe"))
        await wait_until(lambda: len(ctx.envelopes) == 1)
    hook = other.hooks.fresh(make_account().id, "user:staff-zoe")
    assert hook is not None and connector.hooks.fresh(make_account().id, "user:staff-zoe") is None
    fresh = {"sessionWebhook": hook, "sessionWebhookExpiredTime": int(time.time() * 1000) + 600_000}
    await connector.send(make_account(), Outbound("user:staff-zoe", "via the stored hook", last_inbound=fresh))
    stale = {**fresh, "sessionWebhookExpiredTime": int(time.time() * 1000)}
    await connector.send(make_account(), Outbound("user:staff-zoe", "via the api", last_inbound=stale))
    await connector.send(make_account(), Outbound("user:staff-zoe", "via the api too", last_inbound=ctx.envelopes[0].payload))
    assert [(s["via"], s["text"]) for s in fake.sent] == [
        ("session", "via the stored hook"), ("oto", "via the api"), ("oto", "via the api too")]


async def test_throttling_within_the_budget_is_waited_out(fake: FakeDingTalk, connector: DingTalkConnector) -> None:
    fake.rate_limit_next(2, path="/v1.0/robot/oToMessages/batchSend", retry_after=0.3)
    started = time.monotonic()
    await connector.send(make_account(), Outbound("user:staff-alice", "eventually"))
    assert time.monotonic() - started >= 0.6 and fake.calls.count("oto") == 3 and len(fake.sent) == 1


async def test_throttling_beyond_the_budget_raises_rate_limited(fake: FakeDingTalk, connector: DingTalkConnector) -> None:
    fake.rate_limit_next(1, path="/v1.0/robot/groupMessages/send", retry_after=30)
    with pytest.raises(RateLimited) as caught:
        await connector.send(make_account(), Outbound("group:cidG1", "later"))
    assert caught.value.retry_after == 30 and fake.sent == []
    fake.rate_limit_next(1, path="/v1.0/robot/groupMessages/send")  # no Retry-After: DingTalk's usual
    started = time.monotonic()
    await connector.send(make_account(), Outbound("group:cidG1", "after a second"))
    assert time.monotonic() - started >= 0.9 and len(fake.sent) == 1


async def test_a_revoked_token_is_renewed_once(fake: FakeDingTalk, connector: DingTalkConnector) -> None:
    await connector.send(make_account(), Outbound("user:staff-alice", "one"))
    fake.revoke_tokens(APP)
    await connector.send(make_account(), Outbound("user:staff-alice", "two"))
    assert [s["text"] for s in fake.sent] == ["one", "two"] and fake.calls.count("accessToken") == 2
    with pytest.raises(NeedsReauth, match="invalidClientSecret"):
        await connector.send(make_account(secret="wrong"), Outbound("user:staff-alice", "three"))


async def test_bad_chat_ids_and_empty_text_are_refused(fake: FakeDingTalk, connector: DingTalkConnector) -> None:
    for outbound in (Outbound("cidG1", "x"), Outbound("group:", "x"), Outbound("user:s1", "  ")):
        with pytest.raises(ValueError):
            await connector.send(make_account(), outbound)
    assert fake.calls == []


async def test_connect_checks_credentials_with_dingtalk(fake: FakeDingTalk, connector: DingTalkConnector) -> None:
    spec = await connector.connect({"clientId": APP, "clientSecret": SECRET}, SETUP)
    assert spec.external_id == APP and spec.credentials == {"client_id": APP, "client_secret": SECRET}
    with pytest.raises(NeedsReauth, match="invalid clientSecret"):
        await connector.connect({"clientId": APP, "clientSecret": "nope"}, SETUP)
    with pytest.raises(NeedsReauth, match="invalidClientId"):
        await connector.connect({"clientId": "someone-else", "clientSecret": SECRET}, SETUP)
    with pytest.raises(ValueError, match="clientSecret"):
        await connector.connect({"clientId": APP}, SETUP)
    fake.rate_limit_next(1, path="/v1.0/oauth2/accessToken", retry_after=7)
    with pytest.raises(RateLimited):
        await connector.connect({"clientId": APP, "clientSecret": SECRET}, SETUP)


def callback(body: bytes, secret: str = SECRET, stamp: str | None = None, signature: str | None = None) -> WebhookRequest:
    stamp = stamp or str(int(time.time() * 1000))
    return WebhookRequest(headers={"timestamp": stamp, "sign": signature or sign(secret, stamp),
                                   "content-type": "application/json"},
                          body=body, query={}, account=make_account())


def test_http_mode_callbacks_are_verified(connector: DingTalkConnector) -> None:
    message = {"msgId": "msgH1", "conversationType": "1", "senderStaffId": "s1", "createAt": 1, "msgtype": "text",
               "text": {"content": "hi"}, "sessionWebhook": "https://oapi.dingtalk.com/robot/sendBySession?session=S"}
    body = json.dumps(message).encode()
    reply = connector.handle_webhook(callback(body))
    assert reply.status == 200 and [e.delivery_id for e in reply.events] == ["msgH1"]
    assert "sessionWebhook" not in reply.events[0].payload
    forged = [
        callback(body, secret="not-the-secret"),
        callback(body, signature="AAAA"),
        callback(body, stamp=str(int(time.time() * 1000) - 2 * 3600 * 1000)),
        WebhookRequest(headers={}, body=body, query={}, account=make_account()),
    ]
    for request in forged:
        with pytest.raises(WebhookRejected) as caught:
            connector.handle_webhook(request)
        assert caught.value.status == 401
    with pytest.raises(WebhookRejected) as no_account:
        connector.handle_webhook(WebhookRequest(headers={}, body=body, query={}))
    assert no_account.value.status == 404
    with pytest.raises(WebhookRejected) as not_json:
        connector.handle_webhook(callback(b"nope"))
    assert not_json.value.status == 400


async def test_connect_does_not_block_the_event_loop(fake: FakeDingTalk, connector: DingTalkConnector) -> None:
    """The OpenAPI calls are async (httpx), unlike the SDK's `requests`: the loop keeps ticking."""
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.create_task(tick())
    await connector.connect({"clientId": APP, "clientSecret": SECRET}, SETUP)
    ticker.cancel()
    assert ticks > 1
