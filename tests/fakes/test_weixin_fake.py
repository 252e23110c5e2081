"""The iLink fake, driven over plain HTTP the way iLink clients call it (there is no official
Python SDK; Tencent's reference client is the openclaw-weixin npm plugin): if these pass, the
connector tests built on the fake exercise the cursor, long poll, context_token, QR and -14
behaviour those clients rely on."""

from __future__ import annotations

import asyncio
import base64
import time
from typing import Any, AsyncIterator

import httpx
import pytest

from tests.fakes.weixin import FakeWeixin

pytestmark = pytest.mark.asyncio
ALICE = "o9alice@im.wechat"


def _headers(token: str | None) -> dict[str, str]:
    out = {"AuthorizationType": "ilink_bot_token", "X-WECHAT-UIN": base64.b64encode(b"123456789").decode()}
    if token:
        out["Authorization"] = f"Bearer {token}"
    return out


@pytest.fixture
async def fake() -> AsyncIterator[FakeWeixin]:
    async with FakeWeixin(poll_hold=1.0) as server:
        yield server


async def _call(http: httpx.AsyncClient, fake: FakeWeixin, endpoint: str, body: dict[str, Any], token: str | None) -> dict[str, Any]:
    r = await http.post(f"{fake.base_url}/ilink/bot/{endpoint}", json={**body, "base_info": {"channel_version": "t"}},
                        headers=_headers(token))
    assert r.status_code == 200  # iLink's outcome is in the body, never the status
    return r.json() if r.text.strip() else {}


async def test_getupdates_cursor_redelivers_until_acknowledged(fake: FakeWeixin) -> None:
    token = fake.add_bot()
    first = fake.post_message(token, ALICE, "one")
    fake.post_message(token, ALICE, "two")
    async with httpx.AsyncClient(timeout=10) as http:
        got = await _call(http, fake, "getupdates", {"get_updates_buf": ""}, token)
        assert got["ret"] == 0 and [m["item_list"][0]["text_item"]["text"] for m in got["msgs"]] == ["one", "two"]
        msg = got["msgs"][0]
        assert msg["message_id"] == first and msg["message_id"] > 2**53  # uint64 ids survive JSON
        assert (msg["from_user_id"], msg["to_user_id"], msg["message_type"]) == (ALICE, fake.bot_id(token), 1)
        assert msg["context_token"] and got["longpolling_timeout_ms"] == 1000
        again = await _call(http, fake, "getupdates", {"get_updates_buf": ""}, token)  # old cursor: same again
        assert [m["message_id"] for m in again["msgs"]] == [m["message_id"] for m in got["msgs"]]
        started = time.monotonic()
        empty = await _call(http, fake, "getupdates", {"get_updates_buf": got["get_updates_buf"]}, token)
        assert empty["msgs"] == [] and empty["get_updates_buf"] == got["get_updates_buf"]
        assert time.monotonic() - started >= 0.9  # held for the long poll
        assert fake.bad_requests == []


async def test_long_poll_is_released_by_a_message(fake: FakeWeixin) -> None:
    fake.poll_hold = 20
    token = fake.add_bot()
    async with httpx.AsyncClient(timeout=30) as http:
        poll = asyncio.create_task(_call(http, fake, "getupdates", {"get_updates_buf": ""}, token))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        fake.post_message(token, ALICE, "wake up")
        got = await poll
        assert time.monotonic() - started < 1 and len(got["msgs"]) == 1


async def test_sendmessage_needs_the_chats_context_token(fake: FakeWeixin) -> None:
    token = fake.add_bot()
    fake.post_message(token, ALICE, "hi bot")
    ctx = fake.context_token(token, ALICE)
    msg = {"from_user_id": "", "to_user_id": ALICE, "client_id": "c-1", "message_type": 2, "message_state": 2,
           "item_list": [{"type": 1, "text_item": {"text": "hello Alice"}}], "context_token": ctx}
    async with httpx.AsyncClient(timeout=10) as http:
        assert await _call(http, fake, "sendmessage", {"msg": msg}, token) == {}
        refused = await _call(http, fake, "sendmessage", {"msg": {**msg, "context_token": "forged"}}, token)
        assert refused["ret"] == -2
        nobody = await _call(http, fake, "sendmessage", {"msg": {**msg, "to_user_id": "o9bob@im.wechat"}}, token)
        assert nobody["ret"] == -2
    assert [m["item_list"][0]["text_item"]["text"] for m in fake.sent] == ["hello Alice"]


async def test_expired_session_and_unknown_token_answer_minus_14(fake: FakeWeixin) -> None:
    token = fake.add_bot()
    async with httpx.AsyncClient(timeout=10) as http:
        assert (await _call(http, fake, "msg/notifystart", {}, token))["ret"] == 0
        assert (await _call(http, fake, "getupdates", {"get_updates_buf": ""}, "nope"))["ret"] == -14
        poll = asyncio.create_task(_call(http, fake, "getupdates", {"get_updates_buf": ""}, token))
        await asyncio.sleep(0.2)
        fake.expire_session(token)  # a hanging poll ends with -14 too
        assert (await poll)["errcode"] == -14


async def test_missing_headers_are_recorded(fake: FakeWeixin) -> None:
    token = fake.add_bot()
    async with httpx.AsyncClient(timeout=10) as http:
        await http.post(f"{fake.base_url}/ilink/bot/msg/notifystart", json={}, headers={"Authorization": f"Bearer {token}"})
    assert fake.bad_requests == ["msg/notifystart: AuthorizationType", "msg/notifystart: X-WECHAT-UIN",
                                 "msg/notifystart: POST with base_info"]


async def test_rate_limit_and_dropped_connection(fake: FakeWeixin) -> None:
    token = fake.add_bot()
    fake.fail_next("sendmessage", retry_after=3, times=2)
    async with httpx.AsyncClient(timeout=10) as http:
        for _ in range(2):
            r = await http.post(f"{fake.base_url}/ilink/bot/sendmessage", json={}, headers=_headers(token))
            assert r.status_code == 429 and r.headers["Retry-After"] == "3"
        fake.fail_next("getupdates", status=200, body={"ret": -1, "errmsg": "system busy"})
        assert (await _call(http, fake, "getupdates", {"get_updates_buf": ""}, token))["ret"] == -1
        poll = asyncio.create_task(http.post(f"{fake.base_url}/ilink/bot/getupdates", json={"base_info": {}},
                                             headers=_headers(token)))
        await asyncio.sleep(0.2)
        fake.drop_connections()
        with pytest.raises(httpx.TransportError):
            await poll


async def test_qr_login_walks_to_confirmed(fake: FakeWeixin) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        qr = (await http.post(f"{fake.base_url}/ilink/bot/get_bot_qrcode?bot_type=3", json={"local_token_list": []})).json()
        assert qr["qrcode"] and qr["qrcode_img_content"].startswith("https://")
        status = f"{fake.base_url}/ilink/bot/get_qrcode_status"

        async def state(**extra: str) -> dict[str, Any]:
            return (await http.get(status, params={"qrcode": qr["qrcode"], **extra})).json()

        assert (await state())["status"] == "wait"
        fake.scan(qr["qrcode"])
        assert (await state())["status"] == "scaned"
        fake.need_verify_code(qr["qrcode"], "4321")
        assert (await state(verify_code="0000"))["status"] == "need_verifycode"
        assert (await state(verify_code="4321"))["status"] == "scaned"
        token = fake.confirm(qr["qrcode"], owner="o9me@im.wechat")
        done = await state()
        assert done == {"ret": 0, "status": "confirmed", "bot_token": token, "ilink_bot_id": fake.bot_id(token),
                        "baseurl": fake.base_url, "ilink_user_id": "o9me@im.wechat"}
        assert (await _call(http, fake, "msg/notifystart", {}, token))["ret"] == 0
        other = (await http.get(f"{fake.base_url}/ilink/bot/get_bot_qrcode", params={"bot_type": "3"})).json()
        fake.expire_qrcode(other["qrcode"])
        assert (await http.get(status, params={"qrcode": other["qrcode"]})).json()["status"] == "expired"


async def test_recall_quote_and_group(fake: FakeWeixin) -> None:
    token = fake.add_bot()
    first = fake.post_message(token, ALICE, "question")
    fake.post_message(token, ALICE, "answer this", quote=first)
    fake.post_message(token, ALICE, "in a group", group_id="g1@chatroom")
    fake.recall(token, first)
    msgs = fake.pending(token)
    assert msgs[1]["item_list"][0]["ref_msg"]["svr_id"] == first
    assert msgs[2]["group_id"] == "g1@chatroom" and fake.context_token(token, "g1@chatroom") == msgs[2]["context_token"]
    assert msgs[3]["message_id"] == first and msgs[3]["delete_time_ms"] > 0
    assert [m["seq"] for m in msgs] == sorted(m["seq"] for m in msgs)
