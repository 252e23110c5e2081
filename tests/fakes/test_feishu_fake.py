"""The Feishu fake, driven by lark-oapi itself: its REST client (token fetched by the SDK's own
TokenManager, which blocks on `requests`: so the REST calls run in a worker thread here) and its `ws.Client` (run in a thread on a fresh loop, as the SDK's blocking
`start()` requires). If these pass, the fake speaks what the SDK expects."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import lark_oapi as lark
import lark_oapi.ws.client as lark_ws
import pytest
from lark_oapi.api.im.v1 import (
    CreateMessageRequest,
    CreateMessageRequestBody,
    ListChatRequest,
    ListMessageRequest,
    P2ImMessageReceiveV1,
    P2ImMessageRecalledV1,
)
from lark_oapi.core.token.manager import TokenManager

from tests.fakes.feishu import FakeFeishu
from tests.waiting import wait_until

APP, SECRET = "cli_fake_app_1", "fake-secret-1"
CHAT = "oc_team"


@pytest.fixture
async def fs() -> Any:
    async with FakeFeishu() as fake:
        fake.add_app(APP, SECRET, name="Loomi", bot_open_id="ou_bot")
        fake.add_user("ou_alice", "Alice")
        fake.add_chat(CHAT, "Team")
        yield fake


def sdk(fake: FakeFeishu) -> lark.Client:
    TokenManager.cache = type(TokenManager.cache)()  # the SDK caches tokens per app_id process-wide
    return lark.Client.builder().app_id(APP).app_secret(SECRET).domain(fake.base_url).build()


async def test_rest_through_the_sdk(fs: FakeFeishu) -> None:
    client = sdk(fs)
    for i in range(3):
        fs.post_message(CHAT, "ou_alice", f"hello {i}", push=False)
    body = CreateMessageRequestBody.builder().receive_id(CHAT).msg_type("text").content(json.dumps({"text": "hi"})).build()
    sent = await asyncio.to_thread(client.im.v1.message.create,
        CreateMessageRequest.builder().receive_id_type("chat_id").request_body(body).build())
    assert sent.success(), sent.msg
    assert sent.data.message_id.startswith("om_") and sent.data.sender.sender_type == "app"
    assert [m["body"]["content"] for m in fs.sent] == ['{"text": "hi"}']
    page = await asyncio.to_thread(client.im.v1.message.list, ListMessageRequest.builder().container_id_type("chat")
                                            .container_id(CHAT).page_size(2).build())
    assert page.success() and page.data.has_more and len(page.data.items) == 2
    rest = await asyncio.to_thread(client.im.v1.message.list, ListMessageRequest.builder().container_id_type("chat")
                                            .container_id(CHAT).page_size(2).page_token(page.data.page_token).build())
    assert [json.loads(i.body.content)["text"] for i in page.data.items + rest.data.items] == \
        ["hello 0", "hello 1", "hello 2", "hi"]
    chats = await asyncio.to_thread(client.im.v1.chat.list, ListChatRequest.builder().build())
    assert [c.chat_id for c in chats.data.items] == [CHAT]
    assert fs.calls["tenant_access_token"] == 1  # the SDK cached it


async def test_rate_limit_answers_like_feishu(fs: FakeFeishu) -> None:
    client = sdk(fs)
    assert (await asyncio.to_thread(client.im.v1.chat.list, ListChatRequest.builder().build())).success()
    fs.rate_limit_next(1, reset=7)
    limited = await asyncio.to_thread(client.im.v1.chat.list, ListChatRequest.builder().build())
    assert limited.code == 99991400 and limited.raw.status_code == 429
    assert limited.raw.headers["x-ogw-ratelimit-reset"] == "7"
    assert (await asyncio.to_thread(client.im.v1.chat.list, ListChatRequest.builder().build())).success()


async def test_bad_secret_is_refused_with_feishu_message(fs: FakeFeishu) -> None:
    TokenManager.cache = type(TokenManager.cache)()
    client = lark.Client.builder().app_id(APP).app_secret("wrong").domain(fs.base_url).build()
    with pytest.raises(Exception, match="app secret invalid"):
        await asyncio.to_thread(client.im.v1.chat.list, ListChatRequest.builder().build())


class SdkListener:
    """lark.ws.Client on its own thread and loop; records what its handlers saw."""

    def __init__(self, fake: FakeFeishu, fail_first: int = 0) -> None:
        self.received: list[P2ImMessageReceiveV1] = []
        self.recalled: list[P2ImMessageRecalledV1] = []
        self.fail_first = fail_first
        handler = (lark.EventDispatcherHandler.builder("", "")
                   .register_p2_im_message_receive_v1(self._on_message)
                   .register_p2_im_message_recalled_v1(self.recalled.append)
                   .build())
        self.client = lark.ws.Client(APP, SECRET, event_handler=handler, domain=fake.base_url,
                                     log_level=lark.LogLevel.ERROR)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_message(self, data: P2ImMessageReceiveV1) -> None:
        if self.fail_first:
            self.fail_first -= 1
            raise RuntimeError("handler failed")  # the SDK then answers code 500: not an ack
        self.received.append(data)

    def _run(self) -> None:
        lark_ws.loop = self.loop
        asyncio.set_event_loop(self.loop)
        try:
            self.client.start()
        except RuntimeError:  # "Event loop stopped before Future completed": our stop()
            pass

    def __enter__(self) -> "SdkListener":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.mark.parametrize("fragment", [False, True])
async def test_ws_events_reach_the_sdk_and_are_acked(fragment: bool) -> None:
    async with FakeFeishu(fragment=fragment) as fs:
        fs.add_app(APP, SECRET, bot_open_id="ou_bot")
        fs.add_user("ou_alice", "Alice")
        fs.add_chat(CHAT, "Team")
        with SdkListener(fs) as listener:
            await wait_until(lambda: fs.connections == 1)
            first = fs.post_message(CHAT, "ou_alice", "hello", mentions=["ou_bot"])
            fs.recall_message(first)
            await wait_until(lambda: len(listener.received) == 1 and len(listener.recalled) == 1)
            await wait_until(lambda: len(fs.acked_event_ids) == 2)
        msg = listener.received[0].event.message
        assert msg.message_id == first and msg.chat_type == "group"
        assert json.loads(msg.content) == {"text": "@_user_1 hello"} and msg.mentions[0].id.open_id == "ou_bot"
        assert listener.received[0].header.app_id == APP
        assert listener.recalled[0].event.message_id == first
        assert fs.ack_payloads[0]["code"] == 200 and fs.pending_event_ids == []


async def test_unacked_events_are_resent_after_a_drop(fs: FakeFeishu) -> None:
    with SdkListener(fs, fail_first=1) as listener:
        await wait_until(lambda: fs.connections == 1)
        event_count = len(fs.pending_event_ids)
        fs.post_message(CHAT, "ou_alice", "first")
        await wait_until(lambda: len(fs.ack_payloads) == 1)
        assert fs.ack_payloads[0]["code"] == 500 and len(fs.pending_event_ids) == event_count + 1
        fs.drop_connections()  # the SDK reconnects (ReconnectNonce 0, interval 1 s) and gets it again
        await wait_until(lambda: len(listener.received) == 1, timeout=10)
        await wait_until(lambda: fs.pending_event_ids == [])
    assert fs.calls["ws_endpoint"] == 2


async def test_ping_gets_a_pong_with_the_client_config() -> None:
    async with FakeFeishu(ping_interval=1) as fs:
        fs.add_app(APP, SECRET)
        with SdkListener(fs) as listener:
            await wait_until(lambda: fs.pings >= 2, timeout=5)
            assert listener.client._ping_interval == 1


async def test_http_callback_is_encrypted_and_signed(fs: FakeFeishu) -> None:
    from aiohttp import web

    from lark_oapi.core.model import RawRequest

    seen: list[Any] = []
    handler = (lark.EventDispatcherHandler.builder("enc-key", "verif-token")
               .register_p2_im_message_receive_v1(seen.append).build())

    async def receive(request: web.Request) -> web.Response:
        raw = RawRequest()
        raw.uri, raw.body = request.path, await request.read()
        raw.headers = {k: v for k, v in request.headers.items()}
        resp = handler.do(raw)
        return web.Response(status=resp.status_code, body=resp.content)

    app = web.Application()
    app.router.add_post("/cb", receive)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/cb"
    try:
        fs.post_message(CHAT, "ou_alice", "over http")
        event_id = fs.pending_event_ids[-1]
        ok = await fs.deliver_http(url, event_id, encrypt_key="enc-key", verification_token="verif-token")
        forged = await fs.deliver_http(url, event_id, encrypt_key="enc-key", verification_token="verif-token", tamper=True)
        assert ok.status == 200 and forged.status == 500  # the SDK's handler answers 500 on a bad signature
        assert [json.loads(e.event.message.content)["text"] for e in seen] == ["over http"]
    finally:
        await runner.cleanup()
