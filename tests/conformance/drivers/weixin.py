"""Conformance driver for a WeChat personal account (iLink bot API): FakeWeixin (getupdates
long poll with the opaque cursor), connected through `POST /api/weixin/listener/init {botToken}`.

Abilities: delete (a recall arrives with `delete_time_ms`), reply (a quote's `ref_msg`),
attachment (an image item), send (with the chat's newest context_token), disconnect, rate
limit (HTTP 429 + Retry-After on sendmessage). Not: edit, mention, reaction (iLink carries
none), backfill (no history call; the cursor keeps what we missed), webhook (long poll only).
"""

from __future__ import annotations

from typing import Any

from tests.fakes.weixin import FakeWeixin

ALICE = "o9cq80Conformance@im.wechat"


class Driver:
    platform = "weixin"
    abilities = {"delete", "reply", "attachment", "send", "disconnect", "rate_limit"}

    def __init__(self) -> None:
        self.fake = FakeWeixin(poll_hold=5)
        self.token = ""

    async def start(self) -> dict[str, str]:
        await self.fake.start()
        self.token = self.fake.add_bot(owner="o9owner@im.wechat")
        return {"LOOMI_WEIXIN_BASE_URL": self.fake.base_url}

    async def stop(self) -> None:
        await self.fake.stop()

    async def connect(self, hub: Any, headers: dict[str, str]) -> str:
        r = await hub.client.post("/api/weixin/listener/init", json={"botToken": self.token}, headers=headers)
        assert r.status_code == 200, r.text
        return str(r.json()["account"]["id"])

    async def post_message(self, text: str, **kw: Any) -> str:
        items = None
        if kw.get("attachment"):
            items = [{"type": 1, "text_item": {"text": text}},
                     {"type": 2, "image_item": {"mid_size": 4096, "media": {"encrypt_query_param": "Y29uZg==",
                                                                           "aes_key": "a2V5", "encrypt_type": 1}}}]
        quote = int(kw["reply_to"]) if kw.get("reply_to") else None
        return str(self.fake.post_message(self.token, ALICE, text, items=items, quote=quote))

    async def edit(self, native_id: str, text: str) -> None:
        raise NotImplementedError("iLink carries no edits (WeChat messages cannot be edited)")

    async def delete(self, native_id: str) -> None:
        self.fake.recall(self.token, int(native_id))

    async def react(self, native_id: str, emoji: str) -> None:
        raise NotImplementedError("iLink carries no reactions")

    async def drop_connection(self) -> None:
        self.fake.drop_connections()

    async def seed_history(self, n: int) -> list[str]:
        raise NotImplementedError("iLink has no history call")

    async def forged_webhook(self, hub_url: str, account_id: str) -> int:
        raise NotImplementedError("iLink only long-polls: there is no webhook to forge")

    def sent_texts(self) -> list[str]:
        return [item["text_item"]["text"] for msg in self.fake.sent for item in msg["item_list"] if item.get("type") == 1]

    async def rate_limit_next(self, n: int) -> None:
        self.fake.fail_next("sendmessage", times=n, retry_after=1)
