"""Conformance driver for a QQ bot: FakeQQ (token endpoint, OpenAPI, gateway with RESUME),
connected through `POST /api/qqbot/listener/init {appId, appSecret}`.

QQ tells bots of no edits, recalls or reactions and has no history API for them, and the hub
does not use QQ's HTTP callback mode: those abilities are not asked for."""

from __future__ import annotations

from typing import Any

from tests.fakes.qqbot import FakeQQ

APP, SECRET, BOT = "102000042", "conformance-qq-secret", "bot-openid-conformance"
GROUP, MEMBER = "GROUPCONFORMANCE", "MEMBERCONFORMANCE"


class Driver:
    platform = "qqbot"
    abilities = {"reply", "attachment", "mention", "send", "disconnect", "rate_limit"}

    def __init__(self) -> None:
        self.fake = FakeQQ(heartbeat_interval_ms=1000)

    async def start(self) -> dict[str, str]:
        await self.fake.start()
        self.fake.add_app(APP, SECRET, bot_id=BOT, username="conformance-qq")
        return {"LOOMI_QQBOT_BASE_URL": self.fake.base_url, "LOOMI_QQBOT_TOKEN_URL": self.fake.token_url}

    async def stop(self) -> None:
        await self.fake.stop()

    async def connect(self, hub: Any, headers: dict[str, str]) -> str:
        r = await hub.client.post("/api/qqbot/listener/init", json={"appId": APP, "appSecret": SECRET}, headers=headers)
        assert r.status_code == 200, r.text
        return str(r.json()["account"]["id"])

    async def post_message(self, text: str, **kw: Any) -> str:
        """Every message @-mentions the bot (the only group messages a QQ bot receives)."""
        attachments = [{"content_type": "image/jpeg", "filename": "photo.jpg", "url": "//multimedia.example/p.jpg",
                        "size": 2048}] if kw.get("attachment") else None
        return await self.fake.post_group(APP, GROUP, MEMBER, text, attachments, reply_to=kw.get("reply_to"))

    async def edit(self, native_id: str, text: str) -> None:
        raise NotImplementedError("QQ does not tell bots about edits")

    async def delete(self, native_id: str) -> None:
        raise NotImplementedError("QQ does not tell bots about recalls")

    async def react(self, native_id: str, emoji: str) -> None:
        raise NotImplementedError("QQ does not tell bots about reactions")

    async def drop_connection(self) -> None:
        await self.fake.drop_connections()

    async def seed_history(self, n: int) -> list[str]:
        raise NotImplementedError("QQ has no history API for bots")

    async def forged_webhook(self, hub_url: str, account_id: str) -> int:
        raise NotImplementedError("the hub does not use QQ's HTTP callback mode")

    def sent_texts(self) -> list[str]:
        return self.fake.sent_texts()

    async def rate_limit_next(self, n: int) -> None:
        self.fake.rate_limit_next(n)
