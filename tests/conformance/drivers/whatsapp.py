"""Conformance driver for a WhatsApp Business number: Meta's deliveries signed with the app
secret POSTed to `/api/whatsapp/webhook/{accountId}` (tests/fakes/whatsapp.py `Meta`), sends
through the Graph API fake; registered through `POST /api/whatsapp/register-socket
{phoneNumberId, accessToken, appSecret, verifyToken}`, then Meta's verification GET.

Abilities: reply (`context.id`), attachment (an image with its caption), reaction, send,
webhook (forgeries refused), rate_limit (130429 answered once). Not: edit and delete (the Cloud
API does not deliver them), mention (none in 1:1 chats), backfill (no history API), disconnect
(nothing to drop: Meta calls the hub; Meta's retries of unanswered deliveries are in
tests/e2e/test_whatsapp_e2e.py).
"""

from __future__ import annotations

from typing import Any

from tests.fakes.whatsapp import FakeGraph, Meta

NUMBER_ID, TOKEN = "109876543210987", "EAAconformanceTokenForTheLoopbackGraphApi"
APP_SECRET, VERIFY = "conformance-app-secret-0123456789", "conformance-verify"
ALICE, ALICE_NAME = "4915123456789", "Alice"


class Driver:
    platform = "whatsapp"
    abilities = {"reply", "attachment", "reaction", "send", "webhook", "rate_limit"}

    def __init__(self) -> None:
        self.graph = FakeGraph()
        self.meta = Meta(APP_SECRET, NUMBER_ID)
        self.hook = ""

    async def start(self) -> dict[str, str]:
        await self.graph.__aenter__()
        self.graph.add_number(NUMBER_ID, TOKEN)
        return {"LOOMI_WHATSAPP_BASE_URL": self.graph.base_url}

    async def stop(self) -> None:
        await self.graph.__aexit__(None, None, None)

    async def connect(self, hub: Any, headers: dict[str, str]) -> str:
        r = await hub.client.post("/api/whatsapp/register-socket", headers=headers, json={
            "phoneNumberId": NUMBER_ID, "accessToken": TOKEN, "appSecret": APP_SECRET, "verifyToken": VERIFY})
        assert r.status_code == 200, r.text
        account = r.json()["account"]
        self.hook = f"{hub.url}/api/whatsapp/webhook/{account['id']}"
        assert account["settings"]["webhookUrl"].endswith(f"/api/whatsapp/webhook/{account['id']}"), account
        query, challenge = Meta.verification(VERIFY)
        check = await hub.client.get(f"/api/whatsapp/webhook/{account['id']}", params=query)
        assert check.status_code == 200 and check.text == challenge, check.text
        return str(account["id"])

    async def post_message(self, text: str, **kw: Any) -> str:
        kind = "image" if kw.get("attachment") else "text"
        delivery, native_id = self.meta.message(ALICE, ALICE_NAME, kind, text=text, reply_to=kw.get("reply_to"))
        assert await self.meta.deliver(self.hook, delivery) == 200
        return native_id

    async def edit(self, native_id: str, text: str) -> None:
        raise NotImplementedError("the Cloud API delivers no edits")

    async def delete(self, native_id: str) -> None:
        raise NotImplementedError("the Cloud API delivers no deletions")

    async def react(self, native_id: str, emoji: str) -> None:
        assert await self.meta.deliver(self.hook, self.meta.reaction(ALICE, ALICE_NAME, native_id, emoji)) == 200

    async def drop_connection(self) -> None:
        raise NotImplementedError("Meta calls the hub: there is no connection to drop")

    async def seed_history(self, n: int) -> list[str]:
        raise NotImplementedError("the Cloud API keeps no history to read")

    async def forged_webhook(self, hub_url: str, account_id: str) -> int:
        delivery, _ = self.meta.message(ALICE, ALICE_NAME, text="forged")
        return await self.meta.deliver(f"{hub_url}/api/whatsapp/webhook/{account_id}", delivery, retries=0,
                                       app_secret="not-the-app-secret")

    def sent_texts(self) -> list[str]:
        return [s["text"]["body"] for s in self.graph.sent if s.get("type") == "text"]

    async def rate_limit_next(self, n: int) -> None:
        self.graph.fail_next(n, status=429, code=130429)
