"""Fixtures for the WeChat Official Account / WeCom connector: one account of each kind, the
callback builder (tests/fakes/wechat_oa.py) and the REST fake wechatpy's client talks to."""

from __future__ import annotations

from typing import AsyncIterator

import pytest

from config.settings import PlatformSettings, load_settings
from connectors.base import Account
from tests.fakes.wechat_oa import Callbacks, FakeWechatApi

TOKEN, APP_ID, SECRET = "loomiToken1", "wx1234567890abcdef", "s3cret-app"
CORP_ID = "ww0123456789abcdef"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
OPENID, OTHER = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o", "oUpF8uAnotherFollower0000001"


def oa_account(**credentials: str) -> Account:
    creds = {"token": TOKEN, "app_id": APP_ID, "encoding_aes_key": AES_KEY, "app_secret": SECRET, **credentials}
    return Account(id="acc-oa-1", user_id="user-1", platform="wechat_oa", external_id=APP_ID, name="OA",
                   credentials={k: v for k, v in creds.items() if v}, settings={"kind": "oa"})


def wecom_account() -> Account:
    return Account(id="acc-wecom-1", user_id="user-1", platform="wechat_oa", external_id=CORP_ID, name="WeCom",
                   credentials={"token": TOKEN, "app_id": CORP_ID, "encoding_aes_key": AES_KEY}, settings={"kind": "wecom"})


@pytest.fixture
def wechat() -> Callbacks:
    return Callbacks(TOKEN, APP_ID, AES_KEY)


@pytest.fixture
def wecom() -> Callbacks:
    return Callbacks(TOKEN, CORP_ID, AES_KEY, kind="wecom", account_id=CORP_ID)


@pytest.fixture
async def api() -> AsyncIterator[FakeWechatApi]:
    async with FakeWechatApi() as fake:
        fake.add_app(APP_ID, SECRET)
        yield fake


@pytest.fixture
def settings(api: FakeWechatApi) -> PlatformSettings:
    return load_settings({"LOOMI_WECHAT_OA_BASE_URL": api.base_url}).platform("wechat_oa")
