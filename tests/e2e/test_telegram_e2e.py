"""Telegram end to end: python-telegram-bot against FakeTelegram -> listener -> stream -> store
-> GET /api/messages, exactly once through redeliveries, drops, kill -9 and a Redis restart."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from loomi.embedded_redis import server_binary
from tests.e2e.harness import WorkerProcess, e2e_env, fresh_database, running_hub
from tests.waiting import eventually
from tests.fakes.telegram import FakeTelegram
from tests.conftest import free_port

TOKEN = "123456:AAE2eTestTokenForTheLoopbackFakeXYZ"
ALICE = {"id": 501, "first_name": "Alice", "username": "alice"}
BOB = {"id": 502, "first_name": "Bob"}


async def _connect(hub, headers: dict, mode: str = "polling") -> str:
    r = await hub.client.post("/api/telegram/listener/init", json={"botToken": TOKEN, "mode": mode}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "started"
    return r.json()["account"]["id"]


async def test_messages_edits_replies_redeliveries_and_drops_land_exactly_once(backend: str, tmp_path: Path) -> None:
    async with FakeTelegram() as fake, fresh_database(backend, tmp_path) as db:
        fake.add_bot(TOKEN, 123456, "loomi_bot")
        fake.add_chat(-1001, "supergroup", "Team")
        env = e2e_env(backend, tmp_path, db, LOOMI_TELEGRAM_BASE_URL=fake.base_url)
        async with running_hub(env) as hub:
            headers = await hub.login()
            account_id = await _connect(hub, headers)
            await eventually(lambda: hub.in_state(headers, "connected"), what="listener connected")
            # bad input to init changes nothing
            r = await hub.client.post("/api/telegram/listener/init", json={"botToken": "nope"}, headers=headers)
            assert r.status_code == 400 and r.json()["code"] in ("credentials_rejected", "invalid_input")

            ids = []
            for i in range(60):
                chat = -1001 if i % 2 else 42
                reply = ids[-2][1] if i % 7 == 3 and len(ids) > 2 and ids[-2][0] == chat else None
                ids.append((chat, fake.post_message(TOKEN, chat, ALICE if i % 3 else BOB, f"hello {i}", reply_to_message_id=reply)))
                if i == 20:
                    fake.redeliver_next(TOKEN)
                if i == 30:
                    fake.drop_connections()
                if i % 10 == 0:
                    await asyncio.sleep(0.05)
            fake.edit_message(TOKEN, ids[5][0], ids[5][1], "hello 5, edited")
            fake.edit_message(TOKEN, ids[5][0], ids[5][1], "hello 5, edited twice")

            async def all_in():
                got = await hub.messages(headers)
                return got if len(got) >= 60 and any(m["text"] == "hello 5, edited twice" for m in got) else None

            got = await eventually(all_in, what="60 messages and the edit")
            assert len(got) == 60
            assert {(m["chatId"], m["nativeId"]) for m in got} == {(str(c), str(n)) for c, n in ids}
            edited = next(m for m in got if m["nativeId"] == str(ids[5][1]) and m["chatId"] == str(ids[5][0]))
            assert edited["originalText"] == "hello 5" and edited["editedAt"] is not None
            assert any(m["replyToId"] for m in got)
            assert {m["chatType"] for m in got} == {"dm", "group"}
            assert all(m["accountId"] == account_id and m["platform"] == "telegram" for m in got)

            # sending: stored as outbound, sent through the fake, 429 obeyed
            fake.fail_next("sendMessage", retry_after=1)
            r = await hub.client.post("/api/messages", json={"accountId": account_id, "chatId": "42", "text": "from the hub", "idempotencyKey": "k-1"}, headers=headers)
            assert r.status_code == 201 and r.json()["status"] == "sent", r.text
            again = await hub.client.post("/api/messages", json={"accountId": account_id, "chatId": "42", "text": "from the hub", "idempotencyKey": "k-1"}, headers=headers)
            assert again.json()["id"] == r.json()["id"]
            assert [m["text"] for m in fake.sent_messages].count("from the hub") == 1
            check = (await hub.client.get("/api/messages/check", params={"id": r.json()["id"]}, headers=headers)).json()
            assert check["status"] == "sent" and check["nativeId"] == r.json()["nativeId"]

            accounts = (await hub.client.get("/api/integrations/accounts", headers=headers)).json()["accounts"]
            assert accounts[0]["state"] == "connected" and accounts[0]["lastEventAt"]
            raw = (await hub.client.get("/api/messages/raw", params={"id": got[0]["id"]}, headers=headers)).json()["raw"]
            assert "update_id" in raw and "_loomi" not in raw

            # disconnect stops the listener; later messages are not fetched
            assert (await hub.client.delete(f"/api/integrations/accounts/{account_id}", headers=headers)).status_code == 200
            await eventually(lambda: hub.in_state(headers, "stopped"), what="listener stopped")
            await asyncio.sleep(0.5)
            calls = fake.calls["getUpdates"]
            await asyncio.sleep(1.5)
            assert fake.calls["getUpdates"] == calls


async def test_webhook_mode_verifies_the_secret(backend: str, tmp_path: Path) -> None:
    async with FakeTelegram() as fake, fresh_database(backend, tmp_path) as db:
        fake.add_bot(TOKEN, 123456, "loomi_bot")
        env = e2e_env(backend, tmp_path, db, LOOMI_TELEGRAM_BASE_URL=fake.base_url)
        async with running_hub(env) as hub:
            headers = await hub.login()
            account_id = await _connect(hub, headers, mode="webhook")
            await eventually(lambda: hub.in_state(headers, "connected"), what="webhook set")
            for i in range(5):
                fake.post_message(TOKEN, 42, ALICE, f"hooked {i}")
            got = await eventually(lambda: hub.at_least(headers, 5), what="webhook messages")
            assert sorted(m["text"] for m in got) == [f"hooked {i}" for i in range(5)]
            forged = await hub.client.post(
                f"/api/telegram/webhook/{account_id}",
                json={"update_id": 999, "message": {"message_id": 1, "date": 1, "chat": {"id": 1, "type": "private"}, "text": "forged"}},
                headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"},
            )
            assert forged.status_code == 401
            await asyncio.sleep(0.5)
            assert all(m["text"] != "forged" for m in await hub.messages(headers))
            # disconnecting removes the webhook from Telegram
            before = fake.calls["deleteWebhook"]
            assert (await hub.client.delete(f"/api/integrations/accounts/{account_id}", headers=headers)).status_code == 200
            assert fake.calls["deleteWebhook"] == before + 1


async def test_kill_9_of_the_worker_mid_stream_loses_and_duplicates_nothing(backend: str, tmp_path: Path) -> None:
    async with FakeTelegram() as fake, fresh_database(backend, tmp_path) as db:
        fake.add_bot(TOKEN, 123456, "loomi_bot")
        env = e2e_env(backend, tmp_path, db, LOOMI_TELEGRAM_BASE_URL=fake.base_url, LOOMI_LEASE_MS="10000", LOOMI_HEARTBEAT_SECONDS="2")
        async with running_hub(env, worker=False) as hub:
            headers = await hub.login()
            workers = [WorkerProcess(env, tmp_path / f"worker{i}.log").start() for i in range(2)]
            try:
                await _connect(hub, headers)
                status = await eventually(lambda: _holder(hub, headers), timeout=60, what="a worker holds the listener")
                sent = [fake.post_message(TOKEN, 42, ALICE, f"before {i}") for i in range(100)]
                await eventually(lambda: hub.at_least(headers, 50), what="ingest under way")
                victim = next(w for w in workers if status.endswith(f":{w.pid}"))
                killed_at = time.monotonic()
                victim.kill9()
                sent += [fake.post_message(TOKEN, 42, BOB, f"after {i}") for i in range(100)]
                survivor = next(w for w in workers if w is not victim)
                await eventually(lambda: _holder(hub, headers, f":{survivor.pid}"), timeout=30, what="takeover")
                takeover = time.monotonic() - killed_at
                got = await eventually(lambda: hub.at_least(headers, 200), timeout=60, what="all 200 messages")
                print(f"\ntakeover after kill -9: {takeover:.1f} s")
                assert takeover < 15, takeover
                assert len(got) == 200 and {m["nativeId"] for m in got} == {str(n) for n in sent}
            finally:
                for w in workers:
                    w.stop()


async def _holder(hub, headers, suffix: str = ""):
    account = await hub.first_account(headers)
    if account and account["state"] == "connected" and account["worker"] and account["worker"].endswith(suffix):
        return account["worker"]
    return None


class PrivateRedis:
    """A Redis of our own with an append-only file, so the test can restart it."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, free_port()
        folder.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [server_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("private redis did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.mark.skipif(shutil.which("true") is None, reason="needs a POSIX system")
async def test_redis_restart_mid_stream_loses_nothing(backend: str, tmp_path: Path) -> None:
    redis = PrivateRedis(tmp_path / "redis")
    redis.start()
    try:
        async with FakeTelegram() as fake, fresh_database(backend, tmp_path) as db:
            fake.add_bot(TOKEN, 123456, "loomi_bot")
            env = e2e_env(backend, tmp_path, db, redis_url=f"redis://127.0.0.1:{redis.port}/0", LOOMI_TELEGRAM_BASE_URL=fake.base_url)
            async with running_hub(env) as hub:
                headers = await hub.login()
                await _connect(hub, headers)
                await eventually(lambda: hub.in_state(headers, "connected"), what="connected")
                sent = [fake.post_message(TOKEN, 42, ALICE, f"one {i}") for i in range(50)]
                await asyncio.sleep(0.3)
                redis.stop()
                sent += [fake.post_message(TOKEN, 42, ALICE, f"two {i}") for i in range(50)]
                await asyncio.sleep(1.5)
                redis.start()
                sent += [fake.post_message(TOKEN, 42, ALICE, f"three {i}") for i in range(50)]
                got = await eventually(lambda: hub.at_least(headers, 150), timeout=90, what="all 150 after restart")
                assert len(got) == 150 and {m["nativeId"] for m in got} == {str(n) for n in sent}
    finally:
        redis.stop()


async def test_listener_init_when_telegram_cannot_be_reached(backend: str, tmp_path: Path) -> None:
    async with fresh_database(backend, tmp_path) as db:
        env = e2e_env(backend, tmp_path, db, LOOMI_TELEGRAM_BASE_URL="http://127.0.0.1:1")
        async with running_hub(env, worker=False) as hub:
            headers = await hub.login()
            r = await hub.client.post("/api/telegram/listener/init", json={"botToken": TOKEN}, headers=headers)
            assert r.status_code == 502 and r.json()["code"] == "platform_unreachable", r.text
            assert (await hub.client.get("/api/integrations/accounts", headers=headers)).json()["accounts"] == []
