"""Conformance driver for Feishu / Lark: FakeFeishu (REST, long-connection websocket, HTTP
callbacks) and a self-built app connected through `POST /api/feishu/listener/init {appId,
appSecret, encryptKey, verificationToken}` (websocket mode; the keys make its callback route
checkable, so forged callbacks can be told apart).

Abilities: delete (recalls), reply, attachment (a rich-text post with an image), mention,
reaction, backfill (message history), send, webhook, disconnect, rate_limit. Not: edit, because
Feishu pushes no edit events to bots; an edit shows only in history (`updated: true`), which
backfill turns into an EDIT (tests/connectors/feishu/test_rest.py, tests/e2e/test_feishu_e2e.py).
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from tests.fakes.feishu import FakeFeishu, encrypt, sign

APP, SECRET, BOT = "cli_conformance_01", "conformance-app-secret", "ou_conformance_bot"
KEY, TOKEN = "conformance-encrypt-key", "conformance-verification-token"
CHAT, ALICE, BOB = "oc_conformance", "ou_alice", "ou_bob"
EMOJI = {"👍": "THUMBSUP", "❤️": "HEART", "😄": "SMILE"}


class Driver:
    platform = "feishu"
    abilities = {"delete", "reply", "attachment", "mention", "reaction", "backfill", "send", "webhook",
                 "disconnect", "rate_limit"}

    def __init__(self) -> None:
        self.fake = FakeFeishu(reconnect_interval=1, reconnect_nonce=0)

    async def start(self) -> dict[str, str]:
        await self.fake.start()
        self.fake.add_app(APP, SECRET, name="Loomi Conformance", bot_open_id=BOT)
        self.fake.add_user(ALICE, "Alice")
        self.fake.add_user(BOB, "Bob")
        self.fake.add_chat(CHAT, "Conformance", "group")
        return {"LOOMI_FEISHU_BASE_URL": self.fake.base_url}

    async def stop(self) -> None:
        await self.fake.stop()

    async def connect(self, hub: Any, headers: dict[str, str]) -> str:
        r = await hub.client.post("/api/feishu/listener/init", headers=headers, json={
            "appId": APP, "appSecret": SECRET, "encryptKey": KEY, "verificationToken": TOKEN})
        assert r.status_code == 200, r.text
        return str(r.json()["account"]["id"])

    async def post_message(self, text: str, **kw: Any) -> str:
        """kw: `reply_to` (a native id), `attachment` (True: a post with an image), `mention`
        (True or an open id: @Bob)."""
        options: dict[str, Any] = {}
        if kw.get("reply_to"):
            options["reply_to"] = str(kw["reply_to"])
        if kw.get("mention"):
            options["mentions"] = [kw["mention"] if isinstance(kw["mention"], str) else BOB]
        if kw.get("attachment"):
            options |= {"message_type": "post", "content": {"title": "", "content": [
                [{"tag": "text", "text": text}], [{"tag": "img", "image_key": "img_v2_conformance"}]]}}
        return self.fake.post_message(CHAT, ALICE, text, **options)

    async def edit(self, native_id: str, text: str) -> None:
        raise NotImplementedError("Feishu pushes no edit events to bots (edits show in history only)")

    async def delete(self, native_id: str) -> None:
        self.fake.recall_message(native_id)

    async def react(self, native_id: str, emoji: str) -> None:
        self.fake.react(native_id, BOB, EMOJI.get(emoji, emoji))

    async def drop_connection(self) -> None:
        self.fake.drop_connections()

    async def seed_history(self, n: int) -> list[str]:
        return [self.fake.post_message(CHAT, BOB, f"history {i}", push=False) for i in range(n)]

    async def forged_webhook(self, hub_url: str, account_id: str) -> int:
        """A well-formed, encrypted event signed with the wrong key."""
        body_obj = {"schema": "2.0", "header": {"event_id": "forged-1", "event_type": "im.message.receive_v1",
                                                "token": TOKEN, "app_id": APP, "create_time": "1"},
                    "event": {"sender": {"sender_id": {"open_id": "ou_mallory"}, "sender_type": "user"},
                              "message": {"message_id": "om_forged", "chat_id": CHAT, "chat_type": "group",
                                          "create_time": "1", "message_type": "text",
                                          "content": json.dumps({"text": "forged"})}}}
        body = json.dumps({"encrypt": encrypt("not-the-encrypt-key", json.dumps(body_obj).encode())}).encode()
        stamp, nonce = "1700000000", "nonce-1"
        async with httpx.AsyncClient(base_url=hub_url) as http:
            r = await http.post(f"/api/feishu/webhook/{account_id}", content=body, headers={
                "X-Lark-Request-Timestamp": stamp, "X-Lark-Request-Nonce": nonce,
                "X-Lark-Signature": sign(stamp, nonce, "not-the-encrypt-key", body)})
        return r.status_code

    def sent_texts(self) -> list[str]:
        return [str(json.loads(m["body"]["content"]).get("text")) for m in self.fake.sent]

    async def rate_limit_next(self, n: int) -> None:
        """The next n API calls answer HTTP 429, code 99991400, `x-ogw-ratelimit-reset: 1`."""
        self.fake.rate_limit_next(n, reset=1)
