"""The QR login flow and the pasted bot token, against the loopback iLink API."""

from __future__ import annotations

import pytest

from config.settings import PlatformSettings
from connectors.base import Backfiller, Connector, CredentialSetup, LoginFlow, NeedsReauth, SetupContext, WebhookReceiver
from connectors.registry import connector_class
from connectors.weixin.connector import WeixinConnector
from tests.fakes.weixin import FakeWeixin

SETUP = SetupContext(user_id="user-1", public_url="http://127.0.0.1:3414")


@pytest.fixture
def connector(settings: PlatformSettings) -> WeixinConnector:
    return WeixinConnector(settings)


def test_abilities(connector: WeixinConnector) -> None:
    assert isinstance(connector, Connector) and isinstance(connector, LoginFlow)
    assert not isinstance(connector, CredentialSetup)  # the bot token goes through login_start too
    assert not isinstance(connector, Backfiller) and not isinstance(connector, WebhookReceiver)
    assert connector_class("weixin") is WeixinConnector


async def test_bot_token_is_done_at_once(connector: WeixinConnector, fake: FakeWeixin) -> None:
    token = fake.add_bot(bot_id="e06c1ba7f1b4@im.bot")
    step = await connector.login_start({"botToken": f" {token}\n"}, SETUP)
    assert step.kind == "done" and step.spec is not None
    assert step.spec.credentials == {"bot_token": token, "base_url": fake.base_url}
    assert fake.calls["msg/notifystart"] == 1
    named = await connector.login_start({"botToken": token, "botId": "e06c1ba7f1b4@im.bot"}, SETUP)
    assert named.spec is not None and named.spec.external_id == "e06c1ba7f1b4@im.bot"
    opaque = await connector.login_start({"botToken": token}, SETUP)
    assert opaque.spec is not None and opaque.spec.external_id == step.spec.external_id  # stable without botId


async def test_bot_token_refused(connector: WeixinConnector, fake: FakeWeixin) -> None:
    with pytest.raises(NeedsReauth) as err:
        await connector.login_start({"botToken": "abc@im.bot:not-a-real-token"}, SETUP)
    assert "-14" in str(err.value) and "not-a-real-token" not in str(err.value)
    for fields in ({"botToken": ""}, {"botToken": 5}, {"botToken": "x", "botId": ""}, {"botToken": "x", "baseUrl": "ftp://x"}):
        with pytest.raises(ValueError):
            await connector.login_start(fields, SETUP)
    assert fake.qrcodes == []


async def test_qr_login_walks_to_done(connector: WeixinConnector, fake: FakeWeixin) -> None:
    step = await connector.login_start({}, SETUP)
    assert step.kind == "qr" and step.qr_url and step.qr_url.startswith("https://")
    assert fake.qrcodes == [step.state["qrcode"]] and fake.calls["get_bot_qrcode"] == 1
    state = step.state
    step = await connector.login_next(state, {}, SETUP)
    assert (step.kind, step.message) == ("wait", "waiting for the scan")
    fake.scan(state["qrcode"])
    step = await connector.login_next(step.state, {}, SETUP)
    assert step.kind == "wait" and "confirm" in step.message
    fake.need_verify_code(state["qrcode"], "2468")
    step = await connector.login_next(step.state, {}, SETUP)
    assert (step.kind, step.fields) == ("fields", ["verifyCode"])
    step = await connector.login_next(step.state, {"verifyCode": "2468"}, SETUP)
    assert step.kind == "wait" and step.state["verify_code"] == "2468"
    token = fake.confirm(state["qrcode"], owner="o9me@im.wechat")
    done = await connector.login_next(step.state, {}, SETUP)
    assert done.kind == "done" and done.spec is not None
    assert done.spec.external_id == fake.bot_id(token)
    assert done.spec.credentials == {"bot_token": token, "base_url": fake.base_url, "ilink_user_id": "o9me@im.wechat"}


async def test_expired_qr_fails(connector: WeixinConnector, fake: FakeWeixin) -> None:
    step = await connector.login_start({}, SETUP)
    fake.expire_qrcode(step.state["qrcode"])
    assert (await connector.login_next(step.state, {}, SETUP)).kind == "failed"
    with pytest.raises(ValueError):
        await connector.login_next({}, {}, SETUP)
