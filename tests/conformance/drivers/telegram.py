"""Conformance driver for a Telegram bot: FakeTelegram (Bot API long polling with real offset
semantics), connected through `POST /api/telegram/listener/init {botToken}`.

The Bot API tells bots nothing about deletions and has no history to read, so Telegram is not
asked for `delete` or `backfill`."""

from __future__ import annotations

import time
from typing import Any

import httpx

from tests.fakes.telegram import FakeTelegram

TOKEN = "424242:AAConformanceTokenForTheLoopbackFake"
BOT_ID, GROUP = 424242, -100424242
ALICE = {"id": 601, "first_name": "Alice", "username": "alice"}


class Driver:
    platform = "telegram"
    abilities = {"edit", "reply", "attachment", "mention", "reaction", "send", "webhook", "disconnect", "rate_limit"}

    def __init__(self) -> None:
        self.fake = FakeTelegram()

    async def start(self) -> dict[str, str]:
        await self.fake.start()
        self.fake.add_bot(TOKEN, BOT_ID, "conformance_bot")
        self.fake.add_chat(GROUP, "supergroup", "Conformance")
        return {"LOOMI_TELEGRAM_BASE_URL": self.fake.base_url}

    async def stop(self) -> None:
        await self.fake.stop()

    async def connect(self, hub: Any, headers: dict[str, str]) -> str:
        r = await hub.client.post("/api/telegram/listener/init", json={"botToken": TOKEN}, headers=headers)
        assert r.status_code == 200, r.text
        return str(r.json()["account"]["id"])

    async def post_message(self, text: str, **kw: Any) -> int:
        if kw.get("mention"):
            text = f"@conformance_bot {text}"
        extra = None
        if kw.get("attachment"):
            extra = {"photo": [{"file_id": "AgConf", "file_unique_id": "AQConf", "width": 90, "height": 90,
                                "file_size": 1200}], "caption": text}
            text = None  # type: ignore[assignment]  # a photo carries its words as the caption
        reply = int(kw["reply_to"]) if kw.get("reply_to") else None
        return self.fake.post_message(TOKEN, GROUP, ALICE, text, reply_to_message_id=reply, extra=extra)

    async def edit(self, native_id: str, text: str) -> None:
        self.fake.edit_message(TOKEN, GROUP, int(native_id), text)

    async def delete(self, native_id: str) -> None:
        raise NotImplementedError("the Bot API does not tell bots about deletions")

    async def react(self, native_id: str, emoji: str) -> None:
        self.fake.push_update(TOKEN, "message_reaction", {
            "chat": {"id": GROUP, "type": "supergroup", "title": "Conformance"}, "message_id": int(native_id),
            "user": {"id": ALICE["id"], "is_bot": False, "first_name": "Alice"}, "date": int(time.time()),
            "old_reaction": [], "new_reaction": [{"type": "emoji", "emoji": emoji}]})

    async def drop_connection(self) -> None:
        self.fake.drop_connections()

    async def seed_history(self, n: int) -> list[str]:
        raise NotImplementedError("the Bot API cannot read history")

    async def forged_webhook(self, hub_url: str, account_id: str) -> int:
        update = {"update_id": 99, "message": {"message_id": 99, "date": int(time.time()), "text": "forged",
                                               "chat": {"id": GROUP, "type": "supergroup"}}}
        async with httpx.AsyncClient(base_url=hub_url) as http:
            r = await http.post(f"/api/telegram/webhook/{account_id}", json=update,
                                headers={"X-Telegram-Bot-Api-Secret-Token": "not-the-secret"})
        return r.status_code

    def sent_texts(self) -> list[str]:
        return [str(m.get("text")) for m in self.fake.sent_messages]

    async def rate_limit_next(self, n: int) -> None:
        self.fake.fail_next("sendMessage", status=429, retry_after=1, times=n)
