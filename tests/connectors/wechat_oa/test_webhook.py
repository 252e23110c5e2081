"""The callback route's WeChat half, fed real signed and encrypted callbacks built with
wechatpy: URL checks echo, messages are queued with `success`, forgeries are refused."""

from __future__ import annotations

import time

import pytest

from connectors.base import WebhookRejected, WebhookRequest
from connectors.wechat_oa.inbound import normalize
from connectors.wechat_oa.webhook import handle_webhook, verify_webhook
from tests.connectors.wechat_oa.conftest import OPENID, oa_account, wecom_account
from tests.fakes.wechat_oa import Callbacks
from connectors.base import Envelope


def post(query: dict[str, str], body: bytes, account=None) -> WebhookRequest:
    return WebhookRequest(headers={"content-type": "text/xml"}, body=body, query=query,
                          account=account if account is not None else oa_account())


def test_url_check_echoes(wechat: Callbacks, wecom: Callbacks) -> None:
    query, echo = wechat.url_check()
    assert verify_webhook(WebhookRequest({}, b"", query, oa_account())).text == echo
    query, echo = wecom.url_check("wecom-echo")
    assert verify_webhook(WebhookRequest({}, b"", query, wecom_account())).text == "wecom-echo"


def test_url_check_forged(wechat: Callbacks, wecom: Callbacks) -> None:
    query, _ = wechat.url_check()
    for bad in ({**query, "signature": "0" * 40}, {**query, "nonce": "other"}, {k: v for k, v in query.items() if k != "signature"},
                {**query, "echostr": ""}):
        with pytest.raises(WebhookRejected) as err:
            verify_webhook(WebhookRequest({}, b"", bad, oa_account()))
        assert err.value.status in (400, 401)
    query, _ = wecom.url_check()
    with pytest.raises(WebhookRejected) as err:
        verify_webhook(WebhookRequest({}, b"", {**query, "msg_signature": "f" * 40}, wecom_account()))
    assert err.value.status == 401


def test_plain_message_is_queued_with_success(wechat: Callbacks) -> None:
    xml, msg_id = wechat.message_xml(OPENID, content="plain hello")
    reply = handle_webhook(post(*wechat.signed(xml, encrypted=False)))
    assert reply.status == 200 and reply.text == "success" and len(reply.events) == 1
    event = reply.events[0]
    assert event.delivery_id == str(msg_id) and event.payload == {"xml": xml, "kind": "oa", "mode": "plain"}
    change = normalize(Envelope("wechat_oa", "acc-oa-1", event.delivery_id, 0, event.payload), oa_account())[0]
    assert change.message.text == "plain hello"


def test_safe_mode_and_wecom_are_decrypted(wechat: Callbacks, wecom: Callbacks) -> None:
    xml, msg_id = wechat.message_xml(OPENID, content="encrypted hello")
    query, body = wechat.signed(xml, encrypted=True)
    reply = handle_webhook(post(query, body))
    assert reply.events[0].payload == {"xml": xml, "kind": "oa", "mode": "aes"} and reply.events[0].delivery_id == str(msg_id)
    xml, msg_id = wecom.message_xml("zhangsan", content="work")
    reply = handle_webhook(post(*wecom.signed(xml), account=wecom_account()))
    assert reply.events[0].payload["kind"] == "wecom" and reply.events[0].delivery_id == str(msg_id)


def test_events_are_keyed_by_sender_and_time(wechat: Callbacks) -> None:
    xml, _ = wechat.message_xml(OPENID, "event", create_time=int(time.time()), extra={"Event": "subscribe"})
    event = handle_webhook(post(*wechat.signed(xml, encrypted=False))).events[0]
    assert event.delivery_id.startswith(f"{OPENID}:") and event.delivery_id.endswith(":subscribe")


def test_forged_and_stale_posts_are_refused(wechat: Callbacks) -> None:
    xml, _ = wechat.message_xml(OPENID, content="forged")
    query, body = wechat.signed(xml, encrypted=False)
    forged = [
        ({**query, "signature": "0" * 40}, body),
        ({k: v for k, v in query.items() if k != "signature"}, body),
        (wechat.signed(xml, encrypted=False, timestamp=int(time.time()) - 3600)[0], body),  # replayed an hour later
        ({**query, "timestamp": "soon"}, body),
    ]
    sealed_query, sealed = wechat.signed(xml, encrypted=True)
    forged += [({**sealed_query, "msg_signature": "f" * 40}, sealed),
               (sealed_query, sealed.replace(b"<Encrypt><![CDATA[", b"<Encrypt><![CDATA[AAAA"))]
    other = Callbacks("otherToken9", "wx1234567890abcdef", "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut")
    forged.append(other.signed(xml, encrypted=True))  # right shape, someone else's token and key
    for query_, body_ in forged:
        with pytest.raises(WebhookRejected) as err:
            handle_webhook(post(query_, body_))
        assert err.value.status in (400, 401)


def test_bad_requests(wechat: Callbacks) -> None:
    query, _ = wechat.signed("<xml/>", encrypted=False)
    for body in (b"not xml", b"<xml><FromUserName>x</FromUserName></xml>", b"[]"):
        with pytest.raises(WebhookRejected) as err:
            handle_webhook(post(query, body))
        assert err.value.status == 400
    with pytest.raises(WebhookRejected) as err:
        handle_webhook(WebhookRequest({}, b"", query, None))
    assert err.value.status == 404
    xml, _ = wechat.message_xml(OPENID, content="x")
    with pytest.raises(WebhookRejected) as err:  # safe mode on an account connected without the AES key
        handle_webhook(post(*wechat.signed(xml, encrypted=True), account=oa_account(encoding_aes_key="")))
    assert err.value.status == 400
