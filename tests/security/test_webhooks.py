"""Forged, stale and replayed webhooks on every platform webhook route: refused, stored once.

Each platform's conformance rig (its fake on 127.0.0.1, an account connected through the API,
the hub's API + worker) receives deliveries signed the way the platform signs them:
- forged (wrong secret/signature, from the driver): refused, nothing stored;
- stale (a correct signature over a timestamp older than the platform's window: Slack 5 min,
  Feishu 5 min, DingTalk 1 h, WeChat OA 600 s): refused, nothing stored;
- replayed (the same valid delivery twice): stored exactly once.
Telegram (a secret token header) and WhatsApp (an HMAC of the body) sign no timestamp, so they
have no "stale" case; a replay is what they can do, and it stores once.
After a refused delivery a valid one is sent and awaited, so "nothing stored" is checked once
ingest has provably moved past the refused one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import pytest

from store import accounts as account_store
from tests.conformance.drivers import dingtalk, feishu, slack
from tests.conformance.test_conformance import Rig, rig  # noqa: F401 - the rig fixture, one per platform
from tests.fakes.dingtalk import sign as dingtalk_sign
from tests.fakes.feishu import encrypt as feishu_encrypt, sign as feishu_sign


@dataclass
class Delivery:
    path: str
    content: bytes
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


def _slack(r: Rig, text: str, stamp: int) -> Delivery:
    body = json.dumps({"type": "event_callback", "team_id": r.driver.fake.team_id, "event_id": "Ev" + secrets.token_hex(5),
                       "event": {"type": "message", "channel": slack.CHANNEL, "user": slack.ALICE, "text": text,
                                 "ts": f"{time.time():.6f}"}})
    sig = "v0=" + hmac.new(slack.SIGNING_SECRET.encode(), f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
    return Delivery("/api/slack/events", body.encode(),
                    {"content-type": "application/json", "x-slack-request-timestamp": str(stamp), "x-slack-signature": sig})


def _dingtalk(r: Rig, text: str, stamp: int) -> Delivery:
    ms = stamp * 1000
    body = {"conversationId": "cidSecuritySuite", "msgId": "msg" + secrets.token_hex(8), "senderNick": "Alice",
            "senderStaffId": "staff-alice", "createAt": ms, "conversationType": "1", "robotCode": dingtalk.APP,
            "msgtype": "text", "text": {"content": text}}
    return Delivery(f"/api/dingtalk/webhook/{r.account_id}", json.dumps(body).encode(),
                    {"content-type": "application/json", "timestamp": str(ms), "sign": dingtalk_sign(dingtalk.SECRET, str(ms))})


def _feishu(r: Rig, text: str, stamp: int) -> Delivery:
    event = {"schema": "2.0", "header": {"event_id": "ev" + secrets.token_hex(6), "event_type": "im.message.receive_v1",
                                         "token": feishu.TOKEN, "app_id": feishu.APP, "create_time": str(stamp * 1000)},
             "event": {"sender": {"sender_id": {"open_id": "ou_alice"}, "sender_type": "user"},
                       "message": {"message_id": "om_" + secrets.token_hex(6), "chat_id": feishu.CHAT, "chat_type": "group",
                                   "create_time": str(stamp * 1000), "message_type": "text", "content": json.dumps({"text": text})}}}
    body = json.dumps({"encrypt": feishu_encrypt(feishu.KEY, json.dumps(event).encode())}).encode()
    nonce = secrets.token_hex(4)
    return Delivery(f"/api/feishu/webhook/{r.account_id}", body, {
        "content-type": "application/json", "X-Lark-Request-Timestamp": str(stamp), "X-Lark-Request-Nonce": nonce,
        "X-Lark-Signature": feishu_sign(str(stamp), nonce, feishu.KEY, body)})


def _wechat_oa(r: Rig, text: str, stamp: int) -> Delivery:
    from tests.conformance.drivers import wechat_oa

    xml, _ = r.driver.wechat.message_xml(wechat_oa.FOLLOWER, content=text)
    query, body = r.driver.wechat.signed(xml, encrypted=False, timestamp=stamp)
    return Delivery(f"/api/wechat_oa/webhook/{r.account_id}", body, {"Content-Type": "text/xml"}, query)


def _whatsapp(r: Rig, text: str, stamp: int) -> Delivery:
    from tests.conformance.drivers import whatsapp

    delivery, _ = r.driver.meta.message(whatsapp.ALICE, whatsapp.ALICE_NAME, text=text)
    body, headers = r.driver.meta.signed(delivery)
    return Delivery(f"/api/whatsapp/webhook/{r.account_id}", body, headers)


async def _telegram(r: Rig, text: str, stamp: int) -> Delivery:
    from tests.conformance.drivers import telegram

    async with r.hub.hub.engine.connect() as conn:
        account = await account_store.load_account(conn, r.hub.hub.vault, r.account_id)
    assert account is not None
    update = {"update_id": secrets.randbelow(10**8) + 10**6, "message": {
        "message_id": secrets.randbelow(10**8) + 10**6, "date": stamp, "text": text,
        "from": {"id": 777, "is_bot": False, "first_name": "Ann"}, "chat": {"id": telegram.GROUP, "type": "supergroup", "title": "G"}}}
    return Delivery(f"/api/telegram/webhook/{r.account_id}", json.dumps(update).encode(),
                    {"content-type": "application/json", "X-Telegram-Bot-Api-Secret-Token": account.credentials["webhook_secret"]})


Builder = Callable[[Rig, str, int], Any]
# platform -> (a valid delivery of `text` signed at `stamp`, the stale window in seconds or None)
PLATFORMS: dict[str, tuple[Builder, int | None]] = {
    "slack": (_slack, 300), "feishu": (_feishu, 300), "dingtalk": (_dingtalk, 3600), "wechat_oa": (_wechat_oa, 600),
    "whatsapp": (_whatsapp, None), "telegram": (_telegram, None),
}
webhook_platforms = pytest.mark.parametrize("rig", sorted(PLATFORMS), indirect=True)
# WhatsApp and Telegram sign no timestamp: a replay is their only staleness (tested for all)
timestamped_platforms = pytest.mark.parametrize("rig", sorted(p for p, (_, window) in PLATFORMS.items() if window), indirect=True)


def test_every_platform_with_a_webhook_is_covered() -> None:
    from tests.conformance.test_conformance import having

    assert set(having("webhook")) <= set(PLATFORMS), set(having("webhook")) - set(PLATFORMS)


async def _build(r: Rig, text: str, stamp: int) -> Delivery:
    built = PLATFORMS[r.platform][0](r, text, stamp)
    return await built if hasattr(built, "__await__") else built


async def _post(r: Rig, d: Delivery) -> int:
    return (await r.hub.client.post(d.path, content=d.content, headers=d.headers, params=d.params)).status_code


async def _proves_ingest_moved_on(r: Rig) -> None:
    """A valid delivery after the refused one, awaited: ingest has passed the refused one."""
    text = "after " + secrets.token_hex(4)
    assert await _post(r, await _build(r, text, int(time.time()))) < 300
    await r.one(text)


@webhook_platforms
async def test_a_valid_delivery_replayed_stores_once(rig: Rig) -> None:
    text = "replayed " + secrets.token_hex(4)
    delivery = await _build(rig, text, int(time.time()))
    first, second = await _post(rig, delivery), await _post(rig, delivery)
    assert first < 300 and second < 500, (first, second)
    await rig.one(text)  # exactly one, once it is there
    await _proves_ingest_moved_on(rig)
    assert len(await rig.with_text(text)) == 1


@timestamped_platforms
async def test_a_stale_delivery_is_refused_and_stores_nothing(rig: Rig) -> None:
    window = PLATFORMS[rig.platform][1]
    assert window is not None
    text = "stale " + secrets.token_hex(4)
    status = await _post(rig, await _build(rig, text, int(time.time()) - window - 120))
    assert status in (400, 401, 403), f"{rig.platform}: a stale delivery got {status}"
    just_inside = "fresh enough " + secrets.token_hex(4)  # the window is the platform's, not narrower
    assert await _post(rig, await _build(rig, just_inside, int(time.time()) - window + 60)) < 300
    await rig.one(just_inside)
    await _proves_ingest_moved_on(rig)
    assert await rig.with_text(text) == []


@webhook_platforms
async def test_a_forged_delivery_is_refused_and_stores_nothing(rig: Rig) -> None:
    status = await rig.driver.forged_webhook(rig.hub.url, rig.account_id)
    assert status in (400, 401, 403), f"{rig.platform}: a forged webhook got {status}"
    await _proves_ingest_moved_on(rig)
    assert await rig.with_text("forged") == []
