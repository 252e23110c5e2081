"""Feishu end to end: the public listener/init route -> the long-connection listener (lark-oapi's
frames against FakeFeishu) and the history backfill -> stream -> store -> GET /api/messages,
exactly once through a dropped socket and a re-sent event; recalls, reactions and edits land on
their rows; sending (rate limited once); a webhook-mode account fed by signed, encrypted
callbacks, forged ones refused."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.e2e.harness import WorkerProcess, e2e_env, fresh_database, running_hub
from tests.fakes.feishu import FakeFeishu
from tests.waiting import eventually

APP, SECRET, BOT = "cli_e2e_app_0001", "e2e-app-secret-0123", "ou_e2e_bot"
HOOK_APP, HOOK_SECRET, KEY, TOKEN = "cli_e2e_hook_0002", "hook-secret", "hook-encrypt-key", "hook-verify-token"
GROUP, DM = "oc_e2e_team", "oc_e2e_dm"


async def test_connect_receive_backfill_send_exactly_once(backend: str, tmp_path: Path) -> None:
    async with FakeFeishu(reconnect_interval=1, reconnect_nonce=0) as fake, fresh_database(backend, tmp_path) as db:
        fake.add_app(APP, SECRET, name="Loomi E2E", bot_open_id=BOT)
        fake.add_user("ou_alice", "Alice")
        fake.add_user("ou_bob", "Bob")
        fake.add_chat(GROUP, "Team", "group")
        fake.add_chat(DM, "Alice", "p2p")
        history = [fake.post_message(GROUP, "ou_alice", f"history {i}", push=False) for i in range(5)]
        fake.edit_message(history[0], "history 0, edited")
        env = e2e_env(backend, tmp_path, db, LOOMI_FEISHU_BASE_URL=fake.base_url)
        async with running_hub(env) as hub:
            headers = await hub.login()
            bad = await hub.client.post("/api/feishu/listener/init", json={"appId": APP, "appSecret": "nope"},
                                        headers=headers)
            assert bad.status_code == 400 and bad.json()["code"] == "credentials_rejected", bad.text
            assert "app secret invalid" in bad.json()["cause"]
            missing = await hub.client.post("/api/feishu/listener/init", json={"appId": APP}, headers=headers)
            assert missing.status_code == 400 and missing.json()["code"] == "invalid_input"
            assert await hub.first_account(headers) is None

            r = await hub.client.post("/api/feishu/listener/init", json={"appId": APP, "appSecret": SECRET},
                                      headers=headers)
            assert r.status_code == 200 and r.json()["status"] == "started", r.text
            account_id = r.json()["account"]["id"]
            await eventually(lambda: hub.in_state(headers, "connected"), what="listener connected")
            await eventually(lambda: hub.at_least(headers, 5), what="history backfilled")

            live: list[str] = []
            for i in range(30):
                chat = GROUP if i % 2 else DM
                live.append(fake.post_message(chat, "ou_bob" if i % 3 else "ou_alice", f"live {i}",
                                              mentions=[BOT] if i % 5 == 0 else None))
                if i == 10:
                    fake.drop_connections()  # the messages sent meanwhile wait at Feishu
                if i == 20:
                    await eventually(lambda: hub.at_least(headers, 5 + 16), what="before the re-send")
                    fake.redeliver(fake.acked_event_ids[0])
            reply = fake.post_message(GROUP, "ou_alice", "answering", reply_to=live[1])
            photo = fake.post_message(GROUP, "ou_alice", message_type="image", content={"image_key": "img_e2e"})
            live += [reply, photo]
            got = await eventually(lambda: hub.at_least(headers, 5 + 32), timeout=60, what="37 messages")
            fake.recall_message(live[3])
            fake.react(live[1], "ou_alice", "THUMBSUP")

            async def recalled_and_reacted() -> bool:
                rows = {m["nativeId"]: m for m in await hub.messages(headers, includeDeleted="true")}
                return bool(rows[live[3]]["deletedAt"] and rows[live[1]]["reactions"])

            await eventually(recalled_and_reacted, what="recall and reaction applied")
            await asyncio.sleep(0.5)
            got = await hub.messages(headers, includeDeleted="true")
            assert len(got) == 37 and {m["nativeId"] for m in got} == set(history + live)
            rows = {m["nativeId"]: m for m in got}
            assert rows[history[0]]["text"] == "history 0, edited" and rows[history[0]]["editedAt"]
            assert rows[reply]["replyToId"] == live[1] and rows[photo]["attachments"][0]["name"] == "img_e2e"
            assert rows[live[0]]["mentions"] == [BOT] and rows[live[0]]["chatType"] == "dm"
            assert [r["emoji"] for r in rows[live[1]]["reactions"]] == ["THUMBSUP"]
            assert all(m["accountId"] == account_id and m["platform"] == "feishu" for m in got)
            assert live[3] not in {m["nativeId"] for m in await hub.messages(headers)}  # recalled: hidden by default

            fake.rate_limit_next(1, reset=1)
            sent = await hub.client.post("/api/messages", json={"accountId": account_id, "chatId": GROUP,
                                                                "text": "from the hub", "idempotencyKey": "f-1"},
                                         headers=headers)
            assert sent.status_code == 201 and sent.json()["status"] == "sent", sent.text
            assert [m["message_id"] for m in fake.sent] == [sent.json()["nativeId"]]

            forged = await hub.client.post(f"/api/feishu/webhook/{account_id}",
                                           json={"schema": "2.0", "header": {"event_id": "x"}, "event": {}})
            assert forged.status_code == 401  # a websocket account has nothing to check callbacks with

            # a second app in webhook mode: Feishu posts encrypted, signed events to its URL
            fake.add_app(HOOK_APP, HOOK_SECRET, name="Hook app")
            r = await hub.client.post("/api/feishu/listener/init", headers=headers, json={
                "appId": HOOK_APP, "appSecret": HOOK_SECRET, "mode": "webhook", "encryptKey": KEY,
                "verificationToken": TOKEN})
            assert r.status_code == 200, r.text
            hook_id = r.json()["account"]["id"]

            async def hook_connected() -> bool:
                accounts = (await hub.client.get("/api/integrations/accounts", headers=headers)).json()["accounts"]
                return any(a["id"] == hook_id and a["state"] == "connected" for a in accounts)

            await eventually(hook_connected, what="webhook-mode account connected")
            url = f"{hub.url}/api/feishu/webhook/{hook_id}"
            challenge = await fake.post_callback(url, {"challenge": "c-123", "token": TOKEN, "type": "url_verification"},
                                                 encrypt_key=KEY)
            assert challenge.status == 200 and (await challenge.json()) == {"challenge": "c-123"}
            hooked = fake.post_message(GROUP, "ou_bob", "over the callback", app_id=HOOK_APP)
            event_id = fake.pending_event_ids[-1]
            tampered = await fake.deliver_http(url, event_id, encrypt_key=KEY, verification_token=TOKEN, tamper=True)
            wrong = await fake.deliver_http(url, event_id, encrypt_key="other", verification_token=TOKEN)
            assert (tampered.status, wrong.status) == (401, 401)
            ok = await fake.deliver_http(url, event_id, encrypt_key=KEY, verification_token=TOKEN)
            again = await fake.deliver_http(url, event_id, encrypt_key=KEY, verification_token=TOKEN)
            assert ok.status == 200 and again.status == 200
            row = await eventually(lambda: hub.with_text(headers, "over the callback"), what="the callback message")
            assert row["nativeId"] == hooked and row["accountId"] == hook_id
            await asyncio.sleep(0.5)
            hook_rows = [m for m in await hub.messages(headers) if m["accountId"] == hook_id]
            assert [m["nativeId"] for m in hook_rows].count(hooked) == 1  # delivered twice and backfilled: one row


async def test_kill_9_of_the_worker_holding_the_socket_loses_and_duplicates_nothing(backend: str, tmp_path: Path) -> None:
    """Two `loomi worker` processes; the one holding the Feishu socket is killed mid-stream.
    Events it received but never acked are re-sent by Feishu to the survivor's socket, events
    sent meanwhile wait at Feishu: every message is stored exactly once."""
    async with FakeFeishu(reconnect_interval=1, reconnect_nonce=0) as fake, fresh_database(backend, tmp_path) as db:
        fake.add_app(APP, SECRET, bot_open_id=BOT)
        fake.add_user("ou_alice", "Alice")
        fake.add_chat(GROUP, "Team", "group")
        env = e2e_env(backend, tmp_path, db, LOOMI_FEISHU_BASE_URL=fake.base_url, LOOMI_LEASE_MS="10000",
                      LOOMI_HEARTBEAT_SECONDS="2")
        async with running_hub(env, worker=False) as hub:
            headers = await hub.login()
            workers = [WorkerProcess(env, tmp_path / f"worker{i}.log").start() for i in range(2)]
            try:
                r = await hub.client.post("/api/feishu/listener/init", json={"appId": APP, "appSecret": SECRET},
                                          headers=headers)
                assert r.status_code == 200, r.text
                holder = await eventually(lambda: _holder(hub, headers), timeout=60, what="a worker holds the listener")
                sent = [fake.post_message(GROUP, "ou_alice", f"before {i}") for i in range(100)]
                await eventually(lambda: hub.at_least(headers, 50), timeout=60, what="ingest under way")
                victim = next(w for w in workers if holder.endswith(f":{w.pid}"))
                killed_at = time.monotonic()
                victim.kill9()
                sent += [fake.post_message(GROUP, "ou_alice", f"after {i}") for i in range(100)]
                survivor = next(w for w in workers if w is not victim)
                await eventually(lambda: _holder(hub, headers, f":{survivor.pid}"), timeout=30, what="takeover")
                takeover = time.monotonic() - killed_at
                got = await eventually(lambda: hub.at_least(headers, 200), timeout=60, what="all 200 messages")
                await asyncio.sleep(1.0)
                got = await hub.messages(headers)
                print(f"\nfeishu takeover after kill -9: {takeover:.1f} s")
                assert takeover < 15, takeover
                assert len(got) == 200 and {m["nativeId"] for m in got} == set(sent)
                assert fake.pending_event_ids == []
            finally:
                for w in workers:
                    w.stop()


async def _holder(hub, headers, suffix: str = ""):  # type: ignore[no-untyped-def]
    account = await hub.first_account(headers)
    if account and account["state"] == "connected" and account["worker"] and account["worker"].endswith(suffix):
        return account["worker"]
    return None
