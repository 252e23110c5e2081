"""WhatsApp Cloud API end to end: register a number through `/api/whatsapp/register-socket`,
Meta's verification GET, signed deliveries -> `/api/whatsapp/webhook/{accountId}` -> stream ->
store exactly once through Meta's redeliveries, forgeries refused with nothing stored, one
reaction per person (replaced, taken back), a reply
sent through the Graph API fake, and Meta's status deliveries recorded on that outbound row
(never moving back: read stays read when a late `delivered` arrives)."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

from tests.e2e.harness import RunningHub, e2e_env, fresh_database, running_hub
from tests.fakes.whatsapp import FakeGraph, Meta
from tests.waiting import eventually

NUMBER_ID, TOKEN = "106540352242922", "EAAGm0PX4ZCpsBAe2eTokenForTheLoopbackGraph"
APP_SECRET, VERIFY = "e2e-app-secret-0123456789abcdef", "e2e-verify"
ALICE, BOB = "16505551234", "447700900123"


async def _stored(hub: RunningHub, headers: dict[str, str], account_id: str) -> list[dict[str, Any]]:
    return await hub.messages(headers, accountId=account_id, includeDeleted="true")


async def test_register_receive_send_and_statuses(backend: str, tmp_path: Path) -> None:
    async with FakeGraph() as graph, fresh_database(backend, tmp_path) as db:
        graph.add_number(NUMBER_ID, TOKEN, verified_name="Loomi Cafe")
        env = e2e_env(backend, tmp_path, db, LOOMI_WHATSAPP_BASE_URL=graph.base_url)
        async with running_hub(env) as hub:
            headers = await hub.login()
            fields = {"phoneNumberId": NUMBER_ID, "accessToken": TOKEN, "appSecret": APP_SECRET, "verifyToken": VERIFY}
            register = "/api/whatsapp/register-socket"
            wrong = await hub.client.post(register, json={**fields, "accessToken": "EAAwrongwrongwrongwrong"}, headers=headers)
            assert wrong.status_code == 400 and wrong.json()["code"] == "credentials_rejected"
            assert "Error validating access token" in wrong.json()["cause"]
            missing = await hub.client.post(register, json={"phoneNumberId": NUMBER_ID}, headers=headers)
            assert missing.status_code == 400 and missing.json()["code"] == "invalid_input"
            assert await hub.first_account(headers) is None
            r = await hub.client.post(register, json=fields, headers=headers)
            assert r.status_code == 200 and r.json()["status"] == "started", r.text
            account = r.json()["account"]
            account_id = account["id"]
            assert account["name"] == "Loomi Cafe (+1 555-000-1234)" and account["externalId"] == NUMBER_ID
            assert account["settings"] == {"webhookUrl": f"{hub.url}/api/whatsapp/webhook/{account_id}"}
            await eventually(lambda: hub.in_state(headers, "connected"), what="connected")

            # Meta's verification when the URL is saved in the app dashboard
            path = f"/api/whatsapp/webhook/{account_id}"
            query, challenge = Meta.verification(VERIFY)
            check = await hub.client.get(path, params=query)
            assert check.status_code == 200 and check.text == challenge and check.headers["content-type"].startswith("text/plain")
            assert (await hub.client.get(path, params={**query, "hub.verify_token": "guess"})).status_code == 403

            meta, hook = Meta(APP_SECRET, NUMBER_ID), f"{hub.url}{path}"
            ids = []
            for i in range(12):
                delivery, native_id = meta.message(ALICE if i % 2 else BOB, "Alice" if i % 2 else "Bob", text=f"hi {i} ✓")
                assert await meta.deliver(hook, delivery) == 200
                ids.append(native_id)
                if i == 3:
                    assert await meta.deliver(hook, delivery) == 200  # Meta redelivers: stored once
            forged, _ = meta.message(ALICE, "Alice", text="forged")
            assert await meta.deliver(hook, forged, app_secret="not-the-secret", retries=2) == 401
            assert [s for s, _ in meta.delivered[-3:]] == [401, 401, 401]  # Meta retried; refused each time
            stored = await eventually(lambda: hub.at_least(headers, 12, accountId=account_id), what="12 messages")
            assert sorted(m["nativeId"] for m in stored) == sorted(ids)
            assert {m["chatId"] for m in stored} == {ALICE, BOB} and all(m["chatType"] == "dm" for m in stored)

            # one reaction per person: a new emoji replaces Alice's, an empty one takes it back
            async def reactions() -> list[str]:
                (target,) = [m for m in await _stored(hub, headers, account_id) if m["nativeId"] == ids[1]]
                return [r["emoji"] for r in target["reactions"]]

            for emoji, expected in (("👍", ["👍"]), ("❤️", ["❤️"]), ("", [])):
                assert await meta.deliver(hook, meta.reaction(ALICE, "Alice", ids[1], emoji)) == 200
                await eventually(lambda: _equal(reactions(), expected), what=f"reactions {expected}")

            # answer Alice, as a reply; then Meta reports on our message
            sent = await hub.client.post("/api/messages", headers=headers, json={
                "accountId": account_id, "chatId": ALICE, "text": "thanks!", "replyToId": ids[1],
                "idempotencyKey": secrets.token_hex(6)})
            assert sent.status_code == 201 and sent.json()["status"] == "sent", sent.text
            wamid = sent.json()["nativeId"]
            assert graph.sent[-1]["to"] == ALICE and graph.sent[-1]["context"] == {"message_id": ids[1]}
            assert graph.sent[-1]["id"] == wamid

            async def status() -> str:
                (ours,) = [m for m in await _stored(hub, headers, account_id) if m["nativeId"] == wamid]
                return ours["status"]

            for reported, expected in (("delivered", "delivered"), ("sent", "delivered"), ("read", "read"), ("delivered", "read")):
                assert await meta.deliver(hook, meta.status(wamid, reported, ALICE)) == 200
                if reported == expected:
                    await eventually(lambda: _is(status(), expected), what=f"status {expected}")
                else:
                    await asyncio.sleep(1)  # a late report had its chance to (wrongly) downgrade
                    assert await status() == expected
            before = await _stored(hub, headers, account_id)
            assert await meta.deliver(hook, meta.status("wamid.notours", "read", ALICE)) == 200
            await asyncio.sleep(1)
            after = await _stored(hub, headers, account_id)
            assert len(after) == len(before) == 13 and [m["status"] for m in after] == [m["status"] for m in before]


async def _is(value: Any, expected: str) -> bool:
    return await value == expected


async def _equal(value: Any, expected: list[str]) -> bool:
    return await value == expected
