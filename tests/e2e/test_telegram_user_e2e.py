"""A Telegram user account through the whole hub (API + in-process worker + ingest) on SQLite and
PostgreSQL: sign-in via `/api/telegram/user-listener/init` as the openloomi client sends it
(GET ?userId&authToken) and the generic login steps, messages stored once, a delete, a send, a
revoked session ending in needs_reauth, and the app settings missing -> 503 naming the variable.
FakeTelegram replaces only Telethon's MTProto sender (in-process: the worker must be too)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any, Iterator

import pytest

from connectors.telegram_user import client as tg
from store.schema import accounts
from tests.e2e.harness import e2e_env, fresh_database, running_hub
from tests.fakes.telegram_user import FakeTelegram
from tests.waiting import eventually

ALICE = 5550001
APP = {"LOOMI_TELEGRAM_USER_API_ID": "12345", "LOOMI_TELEGRAM_USER_API_HASH": "0123456789abcdef0123456789abcdef"}


@pytest.fixture
def world() -> Iterator[FakeTelegram]:
    fake = FakeTelegram(password="two step")
    fake.add_user(ALICE, "Alice", "alice")
    saved = tg.CLIENT_CLASS[0]
    tg.CLIENT_CLASS[0] = fake.client_class()
    yield fake
    tg.CLIENT_CLASS[0] = saved
    fake.sever()


async def _me(hub: Any, headers: dict[str, str]) -> dict[str, Any]:
    return (await hub.client.get("/api/remote-auth/user", headers=headers)).json()


async def test_sign_in_receive_delete_send_and_revoke(backend: str, tmp_path: Path, world: FakeTelegram) -> None:
    async with fresh_database(backend, tmp_path) as db, running_hub(e2e_env(backend, tmp_path, db, **APP)) as hub:
        headers = await hub.login()
        token = headers["Authorization"].removeprefix("Bearer ")
        me = await _me(hub, headers)
        assert (await hub.client.get("/api/telegram/user-listener/init")).status_code == 401
        other = await hub.client.get("/api/telegram/user-listener/init", params={"userId": "someone-else", "authToken": token})
        assert other.status_code == 403
        r = await hub.client.get("/api/telegram/user-listener/init", params={"userId": me["id"], "authToken": token})
        assert r.status_code == 200, r.text
        started = r.json()
        assert started["status"] == "login_required" and started["step"]["fields"] == ["phone"]
        path = f"/api/integrations/telegram_user/login/{started['loginId']}"
        stranger = await hub.login()
        assert (await hub.client.post(path, json={"phone": world.phone}, headers=stranger)).status_code == 404
        bad = await hub.client.post(path, json={"phone": "no"}, headers=headers)
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_input"
        steps = []
        for fields in ({"phone": world.phone}, {"code": world.code}, {"password": "wrong"}, {"password": "two step"}):
            r = await hub.client.post(path, json=fields, headers=headers)
            assert r.status_code == 200, r.text
            steps.append(r.json()["step"])
        assert [s.get("fields") for s in steps[:3]] == [["code"], ["password"], ["password"]]
        assert steps[3]["kind"] == "done" and r.json()["account"]["platform"] == "telegram_user"
        account_id = r.json()["account"]["id"]
        assert (await hub.client.get(path, headers=headers)).status_code == 404  # a finished login is gone
        again = await hub.client.get("/api/telegram/user-listener/init", params={"userId": me["id"], "authToken": token})
        assert again.json()["status"] == "already_running" and again.json()["account"]["id"] == account_id
        async with hub.hub.engine.connect() as conn:
            row = (await conn.execute(accounts.select().where(accounts.c.id == account_id))).mappings().one()
        assert world.phone not in str(dict(row)) and row["external_id"] == str(world.me_id)  # session sealed by the vault

        await eventually(lambda: hub.in_state(headers, "connected"), what="connected")
        sent = [world.post(ALICE, f"hello {i}") for i in range(3)]
        got = await eventually(lambda: hub.at_least(headers, 3), what="3 messages")
        assert sorted(m["nativeId"] for m in got) == sorted(str(m.id) for m in sent)
        world.delete(sent[0].id)  # Telegram names no chat for a private-chat deletion
        await eventually(lambda: _deleted(hub, headers, str(sent[0].id)), what="tombstone")

        r = await hub.client.post("/api/messages", headers=headers, json={
            "accountId": account_id, "chatId": str(ALICE), "text": "from the hub", "idempotencyKey": secrets.token_hex(8)})
        assert r.status_code == 201, r.text
        await eventually(lambda: _sent(hub, headers, "from the hub"), what="sent")
        assert world.sent[-1] == {"peer": ALICE, "text": "from the hub", "reply_to": None}
        assert [m["text"] for m in await hub.messages(headers)].count("from the hub") == 1

        world.revoke_all()
        world.kick()
        await eventually(lambda: hub.in_state(headers, "needs_reauth"), what="needs_reauth after the session was revoked")


async def _deleted(hub: Any, headers: dict[str, str], native_id: str) -> bool:
    rows = await hub.messages(headers, includeDeleted="true")
    return any(m["nativeId"] == native_id and m["deletedAt"] for m in rows)


async def _sent(hub: Any, headers: dict[str, str], text: str) -> bool:
    return any(m["text"] == text and m["status"] == "sent" for m in await hub.messages(headers))


async def test_without_the_app_credentials_the_api_names_the_variable(backend: str, tmp_path: Path, world: FakeTelegram) -> None:
    async with fresh_database(backend, tmp_path) as db, running_hub(e2e_env(backend, tmp_path, db), worker=False) as hub:
        headers = await hub.login()
        r = await hub.client.post("/api/telegram/user-listener/init", json={"phone": world.phone}, headers=headers)
        assert r.status_code == 503 and r.json()["code"] == "platform_not_configured"
        assert r.json()["cause"] == "LOOMI_TELEGRAM_USER_API_ID" and world.requests == []
