"""Conformance driver for a Telegram user account: FakeTelegram answers Telethon's TL requests
in-process (tests/fakes/telegram_user.py: only the MTProto transport is replaced, since a
loopback MTProto server is impractical), so this driver needs the suite's in-process worker.
The account signs in through `POST /api/telegram/user-listener/init` and the generic
`/api/integrations/telegram_user/login/{loginId}` steps (phone -> code -> 2FA password).

Alice writes to the person in a private chat; replies, mentions (a mention-name entity) and
photos too. A dropped connection is every socket dying: the listener restarts and gap recovery
backfills. Telegram has no webhooks."""

from __future__ import annotations

from typing import Any

from connectors.telegram_user import client as tg
from tests.fakes.telegram_user import FakeTelegram

ALICE = 5550001


class Driver:
    platform = "telegram_user"
    abilities = {"edit", "delete", "reply", "attachment", "mention", "reaction", "backfill", "send", "disconnect",
                 "rate_limit"}

    def __init__(self) -> None:
        self.fake = FakeTelegram(password="conformance 2fa")
        self._client_class = tg.CLIENT_CLASS[0]

    async def start(self) -> dict[str, str]:
        self.fake.add_user(ALICE, "Alice", "alice")
        tg.CLIENT_CLASS[0] = self.fake.client_class()
        return {"LOOMI_TELEGRAM_USER_API_ID": "12345", "LOOMI_TELEGRAM_USER_API_HASH": "0123456789abcdef0123456789abcdef"}

    async def stop(self) -> None:
        tg.CLIENT_CLASS[0] = self._client_class
        self.fake.sever()

    async def connect(self, hub: Any, headers: dict[str, str]) -> str:
        r = await hub.client.post("/api/telegram/user-listener/init", json={}, headers=headers)
        assert r.status_code == 200 and r.json()["step"]["fields"] == ["phone"], r.text
        path = f"/api/integrations/telegram_user/login/{r.json()['loginId']}"
        for fields, expect in (({"phone": self.fake.phone}, ["code"]), ({"code": self.fake.code}, ["password"]),
                               ({"password": "conformance 2fa"}, None)):
            r = await hub.client.post(path, json=fields, headers=headers)
            assert r.status_code == 200, r.text
            if expect is not None:
                assert r.json()["step"]["fields"] == expect, r.text
        assert r.json()["step"]["kind"] == "done", r.text
        return str(r.json()["account"]["id"])

    async def post_message(self, text: str, **kw: Any) -> str:
        message = self.fake.post(ALICE, text, reply_to=int(kw["reply_to"]) if kw.get("reply_to") else None,
                                 mention=self.fake.me_id if kw.get("mention") else None,
                                 media=self.fake.photo() if kw.get("attachment") else None)
        return str(message.id)

    async def edit(self, native_id: str, text: str) -> None:
        self.fake.edit(int(native_id), text)

    async def delete(self, native_id: str) -> None:
        self.fake.delete(int(native_id))

    async def react(self, native_id: str, emoji: str) -> None:
        self.fake.react(int(native_id), emoji, by=ALICE)

    async def drop_connection(self) -> None:
        self.fake.sever()

    async def seed_history(self, n: int) -> list[str]:
        return [str(self.fake.post(ALICE, f"history {i}", history_only=True).id) for i in range(n)]

    async def forged_webhook(self, hub_url: str, account_id: str) -> int:
        raise NotImplementedError("MTProto has no webhooks")

    def sent_texts(self) -> list[str]:
        return [str(s["text"]) for s in self.fake.sent]

    async def rate_limit_next(self, n: int) -> None:
        self.fake.flood_next += [1] * n
