"""Conformance driver for a WeChat Official Account: callbacks signed (and every other one
encrypted, safe mode) with wechatpy POSTed to `/api/wechat_oa/webhook/{accountId}`, replies
through the customer-service API of FakeWechatApi; connected through
`POST /api/wechat_oa/listener/init {token, appId, encodingAesKey, appSecret}`.

Abilities: attachment (a voice message with its transcript), send, webhook (forgeries refused). Not: edit,
delete, reaction, mention, reply (the callback carries none), backfill (no history API),
disconnect (nothing to drop: WeChat calls us), rate_limit (WeChat's limits are per-minute and
daily quotas with no retry-after; the connector waits 60 s, past this suite's patience; the
mapping is covered in tests/connectors/wechat_oa).
"""

from __future__ import annotations

from typing import Any

from tests.fakes.wechat_oa import Callbacks, FakeWechatApi

TOKEN, APP_ID, SECRET = "conformanceToken", "wxconformance0001", "conformance-secret"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
FOLLOWER = "oUpF8uConformanceFollower0001"


class Driver:
    platform = "wechat_oa"
    abilities = {"attachment", "send", "webhook"}

    def __init__(self) -> None:
        self.api = FakeWechatApi()
        self.wechat = Callbacks(TOKEN, APP_ID, AES_KEY)
        self.hook = ""
        self.count = 0

    async def start(self) -> dict[str, str]:
        await self.api.__aenter__()
        self.api.add_app(APP_ID, SECRET)
        return {"LOOMI_WECHAT_OA_BASE_URL": self.api.base_url}

    async def stop(self) -> None:
        await self.api.__aexit__(None, None, None)

    async def connect(self, hub: Any, headers: dict[str, str]) -> str:
        r = await hub.client.post("/api/wechat_oa/listener/init", headers=headers,
                                  json={"token": TOKEN, "appId": APP_ID, "encodingAesKey": AES_KEY, "appSecret": SECRET})
        assert r.status_code == 200, r.text
        account_id = str(r.json()["account"]["id"])
        self.hook = f"{hub.url}/api/wechat_oa/webhook/{account_id}"
        query, echo = self.wechat.url_check()
        check = await hub.client.get(f"/api/wechat_oa/webhook/{account_id}", params=query)
        assert check.status_code == 200 and check.text == echo, check.text
        return account_id

    async def post_message(self, text: str, **kw: Any) -> str:
        self.count += 1
        if kw.get("attachment"):  # a voice message, its words in WeChat's speech recognition
            xml, msg_id = self.wechat.message_xml(FOLLOWER, "voice", extra={
                "MediaId": f"media-{self.count}", "Format": "amr", "Recognition": text})
        else:
            xml, msg_id = self.wechat.message_xml(FOLLOWER, content=text)
        status, answer = await self.wechat.deliver(self.hook, xml, encrypted=self.count % 2 == 0)
        assert (status, answer) == (200, "success"), (status, answer)
        return str(msg_id)

    async def edit(self, native_id: str, text: str) -> None:
        raise NotImplementedError("WeChat callbacks carry no edits")

    async def delete(self, native_id: str) -> None:
        raise NotImplementedError("WeChat callbacks carry no recalls")

    async def react(self, native_id: str, emoji: str) -> None:
        raise NotImplementedError("WeChat callbacks carry no reactions")

    async def drop_connection(self) -> None:
        raise NotImplementedError("WeChat calls the hub: there is no connection to drop")

    async def seed_history(self, n: int) -> list[str]:
        raise NotImplementedError("WeChat keeps no history for accounts to read")

    async def forged_webhook(self, hub_url: str, account_id: str) -> int:
        forger = Callbacks("notTheToken1", APP_ID, AES_KEY)
        xml, _ = forger.message_xml(FOLLOWER, content="forged", msg_id=1)
        status, _ = await forger.deliver(f"{hub_url}/api/wechat_oa/webhook/{account_id}", xml, encrypted=False, retries=0)
        return status

    def sent_texts(self) -> list[str]:
        return [s["text"]["content"] for s in self.api.sent if s.get("msgtype") == "text"]

    async def rate_limit_next(self, n: int) -> None:
        raise NotImplementedError("see the module docstring")
