"""normalize() on callback XML as WeChat writes it (built by tests/fakes/wechat_oa.py)."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.base import Attachment, ChangeKind, ChatType, Envelope
from connectors.wechat_oa.inbound import normalize
from tests.connectors.wechat_oa.conftest import OPENID, oa_account
from tests.fakes.wechat_oa import Callbacks


def env(xml: str, kind: str = "oa") -> Envelope:
    return Envelope("wechat_oa", "acc-oa-1", "1", 1764489999000, {"xml": xml, "kind": kind, "mode": "plain"})


def one(xml: str, kind: str = "oa") -> Any:
    changes = normalize(env(xml, kind), oa_account())
    assert len(changes) == 1 and changes[0].kind is ChangeKind.UPSERT
    return changes[0]


def test_text(wechat: Callbacks) -> None:
    xml, msg_id = wechat.message_xml(OPENID, content="你好, is the shop open? <b>", create_time=1764480000)
    change = one(xml)
    m = change.message
    assert (change.chat_id, change.native_id) == (OPENID, str(msg_id))
    assert (m.chat_type, m.sender_id, m.is_self, m.sent_at) == (ChatType.DM, OPENID, False, 1764480000000)
    assert (m.text, m.content_type, m.attachments) == ("你好, is the shop open? <b>", "text", [])


def test_image_voice_video_location_link(wechat: Callbacks) -> None:
    image = one(wechat.message_xml(OPENID, "image", extra={"PicUrl": "http://mmbiz.qpic.cn/x.jpg", "MediaId": "m1"})[0]).message
    assert image.content_type == "image" and image.attachments == [Attachment(url="http://mmbiz.qpic.cn/x.jpg", content_type="image/jpeg")]
    voice = one(wechat.message_xml(OPENID, "voice", extra={"MediaId": "m2", "Format": "AMR", "Recognition": "明天见"})[0]).message
    assert (voice.content_type, voice.text, voice.attachments[0].content_type) == ("voice", "明天见", "audio/amr")
    video = one(wechat.message_xml(OPENID, "shortvideo", extra={"MediaId": "m3", "ThumbMediaId": "t3"})[0]).message
    assert video.content_type == "video" and video.attachments == [Attachment(content_type="video/mp4")]
    where = one(wechat.message_xml(OPENID, "location", extra={"Location_X": "23.13", "Location_Y": "113.26", "Scale": "20", "Label": "Guangzhou"})[0]).message
    assert (where.content_type, where.text) == ("location", "Guangzhou")
    link = one(wechat.message_xml(OPENID, "link", extra={"Title": "Docs", "Description": "read me", "Url": "https://example.com"})[0]).message
    assert link.text == "Docs\nread me\nhttps://example.com"


def test_events_carry_no_message(wechat: Callbacks) -> None:
    xml, _ = wechat.message_xml(OPENID, "event", extra={"Event": "subscribe"})
    assert normalize(env(xml), oa_account()) == []


def test_wecom_message(wecom: Callbacks) -> None:
    xml, msg_id = wecom.message_xml("zhangsan", content="work hello")
    change = one(xml, "wecom")
    assert (change.chat_id, change.native_id, change.message.text) == ("zhangsan", str(msg_id), "work hello")


@pytest.mark.parametrize("payload", [None, {}, {"xml": ""}, {"xml": "<xml><MsgType>text"}, {"xml": 5}, {"xml": "not xml"}])
def test_unreadable_payloads_raise(payload: Any) -> None:
    with pytest.raises(ValueError):
        normalize(Envelope("wechat_oa", "a", "1", 0, payload), oa_account())
