"""WeChat Official Account / WeCom end to end: real signed and encrypted callbacks (built with
wechatpy) -> `/api/wechat_oa/webhook/{accountId}` -> stream -> store, exactly once through
WeChat's retries; the URL check; forgeries refused; sends through wechatpy's client."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.e2e.harness import e2e_env, fresh_database, running_hub
from tests.fakes.wechat_oa import Callbacks, FakeWechatApi
from tests.waiting import eventually

TOKEN, APP_ID, SECRET = "loomiToken1", "wx1234567890abcdef", "s3cret-app"
CORP_ID = "ww0123456789abcdef"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
FOLLOWER = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"


async def test_callbacks_land_exactly_once_and_replies_go_out(backend: str, tmp_path: Path) -> None:
    async with FakeWechatApi() as api, fresh_database(backend, tmp_path) as db:
        api.add_app(APP_ID, SECRET)
        env = e2e_env(backend, tmp_path, db, LOOMI_WECHAT_OA_BASE_URL=api.base_url)
        async with running_hub(env) as hub:
            headers = await hub.login()
            init = "/api/wechat_oa/listener/init"
            wrong = await hub.client.post(init, json={"token": TOKEN, "appId": APP_ID, "appSecret": "nope"}, headers=headers)
            assert wrong.status_code == 400 and wrong.json()["code"] == "credentials_rejected" and "40125" in wrong.json()["cause"]
            missing = await hub.client.post(init, json={"appId": APP_ID}, headers=headers)
            assert missing.status_code == 400 and missing.json()["code"] == "invalid_input"
            assert await hub.first_account(headers) is None
            r = await hub.client.post(init, json={"token": TOKEN, "appId": APP_ID, "encodingAesKey": AES_KEY, "appSecret": SECRET},
                                      headers=headers)
            assert r.status_code == 200 and r.json()["status"] == "started", r.text
            account_id = r.json()["account"]["id"]
            await eventually(lambda: hub.in_state(headers, "connected"), what="connected")
            hook = f"{hub.url}/api/wechat_oa/webhook/{account_id}"
            wechat = Callbacks(TOKEN, APP_ID, AES_KEY)

            # the console's URL check
            query, echo = wechat.url_check()
            check = await hub.client.get(f"/api/wechat_oa/webhook/{account_id}", params=query)
            assert check.status_code == 200 and check.text == echo
            forged_check = await hub.client.get(f"/api/wechat_oa/webhook/{account_id}", params={**query, "nonce": "x"})
            assert forged_check.status_code == 401

            sent: list[str] = []
            for i in range(20):
                xml, msg_id = wechat.message_xml(FOLLOWER if i % 2 else "oUpF8uOtherFollower000000001", content=f"hello {i}")
                status, answer = await wechat.deliver(hook, xml, encrypted=i % 3 == 0)
                assert (status, answer) == (200, "success")
                sent.append(str(msg_id))
            again, _ = wechat.message_xml(FOLLOWER, content="hello 1", msg_id=int(sent[1]))  # WeChat's retry of a message
            assert await wechat.deliver(hook, again) == (200, "success")
            photo, photo_id = wechat.message_xml(FOLLOWER, "image", extra={"PicUrl": "http://mmbiz.qpic.cn/p.jpg", "MediaId": "m1"})
            await wechat.deliver(hook, photo, encrypted=True)
            subscribe, _ = wechat.message_xml(FOLLOWER, "event", extra={"Event": "subscribe"})
            await wechat.deliver(hook, subscribe)
            forged = Callbacks("otherToken9", APP_ID, AES_KEY)
            bad_xml, bad_id = forged.message_xml(FOLLOWER, content="forged", msg_id=99)
            assert (await forged.deliver(hook, bad_xml, retries=0))[0] == 401
            assert (await forged.deliver(hook, bad_xml, encrypted=True, retries=0))[0] == 401

            got = await eventually(lambda: hub.at_least(headers, 21), what="21 messages")
            await asyncio.sleep(0.5)
            got = await hub.messages(headers)
            assert sorted(m["nativeId"] for m in got) == sorted([*sent, str(photo_id)])
            assert str(bad_id) not in {m["nativeId"] for m in got} and "forged" not in {m["text"] for m in got}
            by_id = {m["nativeId"]: m for m in got}
            assert by_id[sent[1]]["text"] == "hello 1" and by_id[sent[1]]["chatId"] == FOLLOWER
            assert by_id[str(photo_id)]["attachments"][0]["url"] == "http://mmbiz.qpic.cn/p.jpg"
            raw = (await hub.client.get("/api/messages/raw", params={"id": by_id[sent[0]]["id"]}, headers=headers)).json()["raw"]
            assert "hello 0" in raw["xml"] and SECRET not in str(raw)

            # replies through the customer-service API (wechatpy, access token from the fake)
            r = await hub.client.post("/api/messages", json={"accountId": account_id, "chatId": FOLLOWER,
                                                             "text": "thanks!", "idempotencyKey": "oa-1"}, headers=headers)
            assert r.status_code == 201 and r.json()["status"] == "sent", r.text
            assert api.sent == [{"touser": FOLLOWER, "msgtype": "text", "text": {"content": "thanks!"}}]


async def test_wecom_callbacks_are_always_encrypted(backend: str, tmp_path: Path) -> None:
    async with fresh_database(backend, tmp_path) as db:
        async with running_hub(e2e_env(backend, tmp_path, db)) as hub:
            headers = await hub.login()
            r = await hub.client.post("/api/wechat_oa/listener/init", headers=headers,
                                      json={"token": TOKEN, "appId": CORP_ID, "encodingAesKey": AES_KEY, "kind": "wecom"})
            assert r.status_code == 200, r.text
            account_id = r.json()["account"]["id"]
            wecom = Callbacks(TOKEN, CORP_ID, AES_KEY, kind="wecom", account_id=CORP_ID)
            query, echo = wecom.url_check()
            check = await hub.client.get(f"/api/wechat_oa/webhook/{account_id}", params=query)
            assert check.status_code == 200 and check.text == echo
            xml, msg_id = wecom.message_xml("zhangsan", content="work hello")
            assert await wecom.deliver(f"{hub.url}/api/wechat_oa/webhook/{account_id}", xml) == (200, "success")
            plain, _ = wecom.message_xml("zhangsan", content="not encrypted")
            assert (await wecom.deliver(f"{hub.url}/api/wechat_oa/webhook/{account_id}", plain, encrypted=False, retries=0))[0] == 401
            got = await eventually(lambda: hub.at_least(headers, 1), what="the WeCom message")
            assert [(m["nativeId"], m["text"]) for m in got] == [(str(msg_id), "work hello")]
