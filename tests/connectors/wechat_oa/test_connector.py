"""connect, send and the abilities, against wechatpy's client and the REST fake."""

from __future__ import annotations

import asyncio
import time

import pytest

from config.settings import PlatformSettings
from connectors.base import (
    AccountState,
    Backfiller,
    Connector,
    CredentialSetup,
    NeedsReauth,
    Outbound,
    RateLimited,
    SetupContext,
    WebhookReceiver,
    WebhookVerifier,
)
from connectors.wechat_oa.connector import WechatOaConnector
from tests.connectors.wechat_oa.conftest import AES_KEY, APP_ID, CORP_ID, OPENID, OTHER, SECRET, TOKEN, oa_account, wecom_account
from tests.fakes.wechat_oa import FakeWechatApi

SETUP = SetupContext(user_id="user-1", public_url="https://hub.example.com")


@pytest.fixture
def connector(settings: PlatformSettings) -> WechatOaConnector:
    return WechatOaConnector(settings, send_retry_budget=2)


def test_abilities(connector: WechatOaConnector) -> None:
    assert isinstance(connector, Connector) and connector.platform == "wechat_oa"
    assert isinstance(connector, CredentialSetup) and isinstance(connector, WebhookReceiver)
    assert isinstance(connector, WebhookVerifier) and not isinstance(connector, Backfiller)


async def test_connect(connector: WechatOaConnector, api: FakeWechatApi) -> None:
    spec = await connector.connect({"token": TOKEN, "appId": APP_ID, "encodingAesKey": AES_KEY, "appSecret": SECRET}, SETUP)
    assert (spec.external_id, spec.settings) == (APP_ID, {"kind": "oa", "public_url": "https://hub.example.com"})
    assert spec.credentials == {"token": TOKEN, "app_id": APP_ID, "encoding_aes_key": AES_KEY, "app_secret": SECRET}
    assert api.calls["token"] == 1  # the secret was checked against WeChat
    receive_only = await connector.connect({"token": TOKEN, "appId": APP_ID}, SETUP)
    assert receive_only.credentials == {"token": TOKEN, "app_id": APP_ID} and api.calls["token"] == 1
    wecom = await connector.connect({"token": TOKEN, "appId": CORP_ID, "encodingAesKey": AES_KEY, "kind": "wecom"}, SETUP)
    assert wecom.settings["kind"] == "wecom"


async def test_connect_refusals(connector: WechatOaConnector, api: FakeWechatApi) -> None:
    with pytest.raises(NeedsReauth) as err:
        await connector.connect({"token": TOKEN, "appId": APP_ID, "appSecret": "wrong"}, SETUP)
    assert "40125" in str(err.value) and "wrong" not in str(err.value)
    bad = [{}, {"token": TOKEN}, {"appId": APP_ID}, {"token": "a!", "appId": APP_ID}, {"token": "ab", "appId": APP_ID},
           {"token": TOKEN, "appId": APP_ID, "encodingAesKey": "short"}, {"token": TOKEN, "appId": APP_ID, "kind": "qq"},
           {"token": TOKEN, "appId": CORP_ID, "kind": "wecom"}, {"token": TOKEN, "appId": APP_ID, "appSecret": ""}]
    for fields in bad:
        with pytest.raises(ValueError):
            await connector.connect(fields, SETUP)


async def test_send_and_limits(connector: WechatOaConnector, api: FakeWechatApi) -> None:
    sent = await connector.send(oa_account(), Outbound(chat_id=OPENID, text="thanks for writing"))
    assert api.sent == [{"touser": OPENID, "msgtype": "text", "text": {"content": "thanks for writing"}}]
    assert sent.chat_id == OPENID and sent.native_id.startswith("loomi-") and abs(sent.sent_at - time.time() * 1000) < 5000
    api.fail_next("message/custom/send", 45047)
    with pytest.raises(RateLimited) as err:  # WeChat's minute limit is past the retry budget: the retry job waits
        await connector.send(oa_account(), Outbound(chat_id=OPENID, text="again"))
    assert err.value.retry_after == 60
    api.window = {OPENID}
    with pytest.raises(Exception) as refused:
        await connector.send(oa_account(), Outbound(chat_id=OTHER, text="cold"))
    assert "45015" in str(refused.value)
    for account in (oa_account(app_secret=""), wecom_account()):
        with pytest.raises(ValueError):
            await connector.send(account, Outbound(chat_id=OPENID, text="x"))
    assert len(api.sent) == 1


async def test_listen_only_reports_connected(connector: WechatOaConnector) -> None:
    states: list[AccountState] = []

    class Ctx:
        account, resume = oa_account(), {}

        async def report(self, state: AccountState, detail: str | None = None) -> None:
            states.append(state)

    task = asyncio.create_task(connector.listen(Ctx()))  # type: ignore[arg-type]
    await asyncio.sleep(0.1)
    assert states == [AccountState.CONNECTED] and not task.done()
    task.cancel()
