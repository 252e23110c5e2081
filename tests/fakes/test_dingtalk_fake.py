"""The DingTalk fake, driven by the real `dingtalk-stream` SDK: its unmodified client loop,
handlers, open_connection and get_access_token. If these pass, the connector tests built on
the fake exercise the wire behaviour the SDK sees against DingTalk.

The SDK reads its OpenAPI root once, at import (`DINGTALK_OPENAPI_ENDPOINT`), and
`get_host_ip()` opens a UDP socket towards 8.8.8.8; both are patched per test (monkeypatch),
so nothing leaves the machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any, AsyncIterator

import httpx
import pytest
import websockets
from dingtalk_stream import AckMessage, ChatbotHandler, ChatbotMessage, Credential, DingTalkStreamClient
from dingtalk_stream import stream as sdk_stream

from tests.fakes.dingtalk import BOT_TOPIC, FakeDingTalk
from tests.waiting import wait_until

pytestmark = pytest.mark.asyncio

APP, SECRET = "dingappkey0001", "app-secret-0001"


@pytest.fixture
async def fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDingTalk]:
    async with FakeDingTalk(disconnect_grace=0.5) as fake:
        fake.add_app(APP, SECRET)
        monkeypatch.setattr(DingTalkStreamClient, "OPEN_CONNECTION_API",
                            fake.base_url + "/v1.0/gateway/connections/open")
        monkeypatch.setattr(sdk_stream, "DINGTALK_OPENAPI_ENDPOINT", fake.base_url)
        monkeypatch.setattr(DingTalkStreamClient, "get_host_ip", lambda self: "127.0.0.1")
        yield fake


class Recorder(ChatbotHandler):
    """A chatbot handler as the SDK's examples write one: replies through the session webhook."""

    def __init__(self, reply: bool = False) -> None:
        super().__init__()
        self.messages: list[ChatbotMessage] = []
        self.reply = reply

    async def process(self, callback: Any) -> tuple[int, str]:
        incoming = ChatbotMessage.from_dict(callback.data)
        self.messages.append(incoming)
        if self.reply:
            await asyncio.to_thread(self.reply_text, "pong: " + incoming.text.content, incoming)
        return AckMessage.STATUS_OK, "OK"


@contextlib.asynccontextmanager
async def sdk_client(handler: Recorder) -> AsyncIterator[DingTalkStreamClient]:
    client = DingTalkStreamClient(Credential(APP, SECRET))
    client.register_callback_handler(ChatbotMessage.TOPIC, handler)
    task = asyncio.create_task(client.start())
    try:
        yield client
    finally:
        # start() swallows one CancelledError (and sleeps 10 s): cancel until it is done
        while not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=0.2)


async def test_sdk_receives_acks_and_replies(fake: FakeDingTalk) -> None:
    handler = Recorder(reply=True)
    async with sdk_client(handler):
        await wait_until(lambda: fake.connections(APP) == 1)
        msg_id = fake.post_message(APP, "ping me", sender=("staff-bob", "Bob"))
        await wait_until(lambda: msg_id in fake.acked_msg_ids)
        await wait_until(lambda: len(fake.sent) == 1)
    incoming = handler.messages[0]
    assert (incoming.message_id, incoming.text.content, incoming.sender_staff_id) == (msg_id, "ping me", "staff-bob")
    assert incoming.conversation_type == "1" and incoming.session_webhook.startswith(fake.base_url)
    assert fake.sent[0]["via"] == "session" and fake.sent[0]["text"] == "pong: ping me"
    assert fake.sent[0]["chat_id"] == "user:staff-bob"
    opened = fake.open_requests[0]
    assert opened["clientId"] == APP and opened["subscriptions"] == [{"type": "CALLBACK", "topic": BOT_TOPIC}]
    assert fake.pending(APP) == []


async def test_sdk_answers_ping_and_reconnects_after_disconnect(fake: FakeDingTalk) -> None:
    handler = Recorder()
    async with sdk_client(handler):
        await wait_until(lambda: fake.connections(APP) == 1)
        opaque = fake.ping(APP)
        await wait_until(lambda: opaque in fake.pongs)
        fake.disconnect(APP)  # the SDK closes its socket at once and opens a new connection
        await wait_until(lambda: len(fake.open_requests) == 2, timeout=5)
        await wait_until(lambda: fake.connections(APP) == 1)
        msg_id = fake.post_message(APP, "after the disconnect")
        await wait_until(lambda: msg_id in fake.acked_msg_ids)
    assert [m.text.content for m in handler.messages] == ["after the disconnect"]


async def test_unacked_messages_are_redelivered_on_the_next_connection(fake: FakeDingTalk) -> None:
    client = DingTalkStreamClient(Credential(APP, SECRET))
    client.register_callback_handler(ChatbotMessage.TOPIC, Recorder())
    first = fake.post_message(APP, "one")
    second = fake.post_message(APP, "two")

    async def connect_and_read(n: int, ack: bool) -> list[dict[str, Any]]:
        opened = await asyncio.to_thread(client.open_connection)  # the SDK's own (blocking) call
        frames = []
        async with websockets.connect(f"{opened['endpoint']}?ticket={opened['ticket']}") as ws:
            for _ in range(n):
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), 5)))
            if ack:
                for frame in frames:
                    await ws.send(json.dumps({"code": 200, "headers": {"messageId": frame["headers"]["messageId"]},
                                              "message": "OK", "data": "{}"}))
                await wait_until(lambda: fake.pending(APP) == [])
        return frames

    unacked = await connect_and_read(2, ack=False)
    again = await connect_and_read(2, ack=True)
    assert [json.loads(f["data"])["msgId"] for f in unacked] == [first, second]
    assert [f["headers"]["messageId"] for f in again] == [f["headers"]["messageId"] for f in unacked]
    assert fake.acked_msg_ids == [first, second]


async def test_tickets_are_single_use_and_bad_credentials_are_refused(fake: FakeDingTalk) -> None:
    client = DingTalkStreamClient(Credential(APP, SECRET))
    client.register_callback_handler(ChatbotMessage.TOPIC, Recorder())
    opened = await asyncio.to_thread(client.open_connection)
    uri = f"{opened['endpoint']}?ticket={opened['ticket']}"
    async with websockets.connect(uri):
        pass
    with pytest.raises(websockets.InvalidStatus):
        async with websockets.connect(uri):
            pass
    bad = DingTalkStreamClient(Credential(APP, "wrong"))
    bad.register_callback_handler(ChatbotMessage.TOPIC, Recorder())
    assert await asyncio.to_thread(bad.open_connection) is None  # the SDK swallows the 401


async def test_access_token_through_the_sdk(fake: FakeDingTalk) -> None:
    good = DingTalkStreamClient(Credential(APP, SECRET))
    token = await asyncio.to_thread(good.get_access_token)
    assert isinstance(token, str) and len(token) == 32
    assert await asyncio.to_thread(DingTalkStreamClient(Credential(APP, "nope")).get_access_token) is None
    async with httpx.AsyncClient(base_url=fake.base_url) as http:
        r = await http.post("/v1.0/oauth2/accessToken", json={"appKey": APP, "appSecret": "nope"})
    assert r.status_code == 400 and r.json()["code"] == "invalidClientSecret"


async def test_robot_api_sends_and_throttles(fake: FakeDingTalk) -> None:
    token = await asyncio.to_thread(DingTalkStreamClient(Credential(APP, SECRET)).get_access_token)
    headers = {"x-acs-dingtalk-access-token": token}
    async with httpx.AsyncClient(base_url=fake.base_url) as http:
        r = await http.post("/v1.0/robot/oToMessages/batchSend", headers=headers, json={
            "robotCode": APP, "userIds": ["staff-alice"], "msgKey": "sampleText",
            "msgParam": json.dumps({"content": "hi Alice"})})
        assert r.status_code == 200 and r.json()["processQueryKey"]
        fake.rate_limit_next(1, path="/v1.0/robot/groupMessages/send", retry_after=2)
        body = {"robotCode": APP, "openConversationId": "cidGROUP", "msgKey": "sampleText",
                "msgParam": json.dumps({"content": "hi all"})}
        limited = await http.post("/v1.0/robot/groupMessages/send", headers=headers, json=body)
        assert limited.status_code == 429 and limited.json()["code"].startswith("Throttling")
        assert limited.headers["Retry-After"] == "2"
        ok = await http.post("/v1.0/robot/groupMessages/send", headers=headers, json=body)
        assert ok.status_code == 200
        forged = await http.post("/v1.0/robot/groupMessages/send", headers={"x-acs-dingtalk-access-token": "x"},
                                 json=body)
        assert forged.status_code == 401 and forged.json()["code"] == "InvalidAuthentication"
    assert [(s["via"], s["chat_id"], s["text"]) for s in fake.sent] == [
        ("oto", "user:staff-alice", "hi Alice"), ("group", "group:cidGROUP", "hi all")]


async def test_group_messages_mentions_media_and_expired_sessions(fake: FakeDingTalk) -> None:
    handler = Recorder()
    async with sdk_client(handler):
        await wait_until(lambda: fake.connections(APP) == 1)
        fake.post_message(APP, "@Loomi see @Carol", group="cidG1", at=["staff-carol"])
        fake.post_message(APP, None, msgtype="picture", content={"downloadCode": "dl1", "pictureDownloadCode": "p1"})
        await wait_until(lambda: len(handler.messages) == 2)
    group, picture = handler.messages
    assert group.conversation_type == "2" and group.conversation_id == "cidG1" and group.is_in_at_list
    assert [u.staff_id for u in group.at_users] == [None, "staff-carol"]
    assert picture.message_type == "picture" and picture.image_content.download_code == "dl1"
    fake.expire_sessions()
    async with httpx.AsyncClient() as http:
        r = await http.post(group.session_webhook, json={"msgtype": "text", "text": {"content": "late"}})
    assert r.json()["errcode"] != 0 and fake.sent == []
