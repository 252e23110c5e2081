"""WeChat's callback builder and REST fake, checked with wechatpy itself: what the fake signs
and encrypts, wechatpy verifies and decrypts; what wechatpy's client calls, the fake answers."""

from __future__ import annotations

import asyncio
from typing import AsyncIterator

import pytest
from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.enterprise.crypto import WeChatCrypto as WeComCrypto
from wechatpy.exceptions import InvalidSignatureException, WeChatClientException
from wechatpy.utils import check_signature

from connectors.wechat_oa.client import HubWeChatClient
from tests.fakes.wechat_oa import Callbacks, FakeWechatApi

AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


def test_plain_callback_is_signed_as_wechat_signs() -> None:
    cb = Callbacks("loomiToken1", "wx1234567890abcdef", AES_KEY)
    xml, msg_id = cb.message_xml(OPENID, content="你好 <b>&")
    query, body = cb.signed(xml, encrypted=False)
    check_signature("loomiToken1", query["signature"], query["timestamp"], query["nonce"])
    with pytest.raises(InvalidSignatureException):
        check_signature("otherToken", query["signature"], query["timestamp"], query["nonce"])
    msg = parse_message(body)
    assert (msg.type, msg.content, msg.id, msg.source, msg.target) == ("text", "你好 <b>&", msg_id, OPENID, "gh_0123456789ab")


def test_safe_mode_and_wecom_decrypt_with_wechatpy() -> None:
    cb = Callbacks("loomiToken1", "wx1234567890abcdef", AES_KEY)
    xml, _ = cb.message_xml(OPENID, content="secret hello")
    query, body = cb.signed(xml, encrypted=True)
    assert query["encrypt_type"] == "aes" and b"secret hello" not in body
    plain = WeChatCrypto("loomiToken1", AES_KEY, "wx1234567890abcdef").decrypt_message(
        body, query["msg_signature"], query["timestamp"], query["nonce"])
    assert parse_message(plain).content == "secret hello"

    wecom = Callbacks("loomiToken1", "ww0123456789abcdef", AES_KEY, kind="wecom", account_id="ww0123456789abcdef")
    xml, _ = wecom.message_xml("zhangsan", content="work hello")
    query, body = wecom.signed(xml)
    assert "signature" not in query and "encrypt_type" not in query
    crypto = WeComCrypto("loomiToken1", AES_KEY, "ww0123456789abcdef")
    assert "work hello" in crypto.decrypt_message(body, query["msg_signature"], query["timestamp"], query["nonce"])
    check, echo = wecom.url_check("echo-123")
    assert crypto.check_signature(check["msg_signature"], check["timestamp"], check["nonce"], check["echostr"]) == echo


@pytest.fixture
async def api() -> AsyncIterator[FakeWechatApi]:
    async with FakeWechatApi() as fake:
        fake.add_app("wx1234567890abcdef", "s3cret")
        yield fake


async def test_wechatpy_client_fetches_a_token_and_sends(api: FakeWechatApi) -> None:
    client = HubWeChatClient("wx1234567890abcdef", "s3cret")  # wechatpy, token URL under API_BASE_URL
    client.API_BASE_URL = f"{api.base_url}/cgi-bin/"
    answer = await asyncio.to_thread(client.message.send_text, OPENID, "hello follower")
    assert answer["errcode"] == 0 and api.sent == [{"touser": OPENID, "msgtype": "text", "text": {"content": "hello follower"}}]
    assert api.calls["token"] == 1
    api.fail_next("message/custom/send", 45047)
    with pytest.raises(WeChatClientException) as err:
        await asyncio.to_thread(client.message.send_text, OPENID, "again")
    assert err.value.errcode == 45047
    api.window = set()
    with pytest.raises(WeChatClientException) as err:
        await asyncio.to_thread(client.message.send_text, OPENID, "too late")
    assert err.value.errcode == 45015 and len(api.sent) == 1

    wrong = HubWeChatClient("wx1234567890abcdef", "nope")
    wrong.API_BASE_URL = f"{api.base_url}/cgi-bin/"
    with pytest.raises(WeChatClientException) as err:
        await asyncio.to_thread(wrong.fetch_access_token)
    assert err.value.errcode == 40125
