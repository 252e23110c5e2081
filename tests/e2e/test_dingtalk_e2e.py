"""DingTalk end to end: the public listener/init route -> the Stream-mode listener (dingtalk-stream
SDK pieces against FakeDingTalk) -> stream -> store -> GET /api/messages, exactly once through a
dropped socket, a `disconnect` and a redelivery; sending through the session webhook and the robot
API; signed HTTP-mode callbacks, forged ones refused."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

from tests.e2e.harness import WorkerProcess, e2e_env, fresh_database, running_hub
from tests.fakes.dingtalk import FakeDingTalk, sign
from tests.waiting import eventually

APP, SECRET = "dinge2eappkey001", "e2e-app-secret-0123456789"


async def test_connect_receive_send_exactly_once(backend: str, tmp_path: Path) -> None:
    async with FakeDingTalk(disconnect_grace=0.3) as fake, fresh_database(backend, tmp_path) as db:
        fake.add_app(APP, SECRET)
        env = e2e_env(backend, tmp_path, db, LOOMI_DINGTALK_BASE_URL=fake.base_url)
        async with running_hub(env) as hub:
            headers = await hub.login()
            # bad input changes nothing
            bad = await hub.client.post("/api/dingtalk/listener/init", json={"clientId": APP, "clientSecret": "no"},
                                        headers=headers)
            assert bad.status_code == 400 and bad.json()["code"] == "credentials_rejected", bad.text
            assert "invalid clientSecret" in bad.json()["cause"]
            missing = await hub.client.post("/api/dingtalk/listener/init", json={"clientId": APP}, headers=headers)
            assert missing.status_code == 400 and missing.json()["code"] == "invalid_input"
            assert await hub.first_account(headers) is None

            r = await hub.client.post("/api/dingtalk/listener/init", json={"clientId": APP, "clientSecret": SECRET},
                                      headers=headers)
            assert r.status_code == 200 and r.json()["status"] == "started", r.text
            account_id = r.json()["account"]["id"]
            await eventually(lambda: hub.in_state(headers, "connected"), what="listener connected")

            sent: list[str] = []
            for i in range(40):
                group = "cidTeam" if i % 2 else None
                sent.append(fake.post_message(APP, f"hello {i}", group=group,
                                              sender=("staff-bob", "Bob") if i % 3 else ("staff-alice", "Alice")))
                if i == 10:
                    fake.drop_connections(APP)
                if i == 20:
                    fake.redeliver(APP, sent[0])
                if i == 30:
                    fake.disconnect(APP)
                if i % 10 == 0:
                    await asyncio.sleep(0.05)
            quoted = fake.post_message(APP, "answering", group="cidTeam", reply_to=sent[1], at=["staff-carol"])
            sent.append(quoted)
            got = await eventually(lambda: hub.at_least(headers, 41), timeout=60, what="41 messages")
            await asyncio.sleep(0.5)
            got = await hub.messages(headers)
            assert len(got) == 41 and {m["nativeId"] for m in got} == set(sent)
            assert {m["chatId"] for m in got} == {"group:cidTeam", "user:staff-alice", "user:staff-bob"}
            assert {m["chatType"] for m in got} == {"dm", "group"}
            reply = next(m for m in got if m["nativeId"] == quoted)
            assert reply["replyToId"] == sent[1]
            assert all(m["accountId"] == account_id and m["platform"] == "dingtalk" for m in got)
            raw = (await hub.client.get("/api/messages/raw", params={"id": got[0]["id"]}, headers=headers)).json()["raw"]
            assert "msgId" in raw and "sessionWebhook" not in raw

            # sending: the group's fresh session webhook, then the robot API for a DM, throttled once
            r = await hub.client.post("/api/messages", json={"accountId": account_id, "chatId": "group:cidTeam",
                                                             "text": "from the hub", "idempotencyKey": "k-1"},
                                      headers=headers)
            assert r.status_code == 201 and r.json()["status"] == "sent", r.text
            fake.rate_limit_next(1, path="/v1.0/robot/oToMessages/batchSend")
            r2 = await hub.client.post("/api/messages", json={"accountId": account_id, "chatId": "user:staff-dave",
                                                              "text": "to Dave", "idempotencyKey": "k-2"},
                                       headers=headers)
            assert r2.status_code == 201 and r2.json()["status"] == "sent", r2.text
            assert [(s["via"], s["chat_id"], s["text"]) for s in fake.sent] == [
                ("session", "group:cidTeam", "from the hub"), ("oto", "user:staff-dave", "to Dave")]
            assert r2.json()["nativeId"] == fake.sent[1]["processQueryKey"]

            # HTTP-mode callbacks: signed ones stored, forged ones refused
            body = {"msgId": "msgHTTP1", "conversationType": "1", "senderStaffId": "staff-erin", "senderNick": "Erin",
                    "createAt": int(time.time() * 1000), "msgtype": "text", "text": {"content": "over http"}}
            stamp = str(int(time.time() * 1000))
            forged = await hub.client.post(f"/api/dingtalk/webhook/{account_id}", content=json.dumps(body),
                                           headers={"timestamp": stamp, "sign": sign("wrong", stamp)})
            assert forged.status_code == 401
            ok = await hub.client.post(f"/api/dingtalk/webhook/{account_id}", content=json.dumps(body),
                                       headers={"timestamp": stamp, "sign": sign(SECRET, stamp)})
            assert ok.status_code == 200, ok.text
            await eventually(lambda: hub.with_text(headers, "over http"), what="the HTTP-mode message")
            final = await hub.messages(headers)
            assert len(final) == 44  # 41 + the HTTP one + our two sends, recorded as outbound rows
            assert sorted(m["text"] for m in final if m["nativeId"] not in set(sent) | {"msgHTTP1"}) == [
                "from the hub", "to Dave"]


async def test_the_conformance_driver_through_the_hub(backend: str, tmp_path: Path) -> None:
    """tests/conformance/drivers/dingtalk.py against a real hub, until the shared suite runs it."""
    from tests.conformance.drivers.dingtalk import Driver

    driver = Driver()
    extra = await driver.start()
    try:
        async with fresh_database(backend, tmp_path) as db:
            async with running_hub(e2e_env(backend, tmp_path, db, **extra)) as hub:
                headers = await hub.login()
                account_id = await driver.connect(hub, headers)
                await eventually(lambda: hub.in_state(headers, "connected"), what="connected")
                first = await driver.post_message("plain")
                quoted = await driver.post_message("quoting", reply_to=first)
                picture = await driver.post_message("with a picture", attachment=True)
                mention = await driver.post_message("ping", mention="staff-carol")
                await driver.drop_connection()
                during = await driver.post_message("during the drop")
                got = await eventually(lambda: hub.at_least(headers, 5), timeout=30, what="5 messages")
                by_id = {m["nativeId"]: m for m in got}
                assert set(by_id) == {first, quoted, picture, mention, during}
                assert by_id[quoted]["replyToId"] == first
                assert by_id[picture]["attachments"] and by_id[picture]["text"] == "with a picture"
                assert "staff-carol" in by_id[mention]["mentions"]
                assert await driver.forged_webhook(hub.url, account_id) == 401
                await driver.rate_limit_next(1)
                r = await hub.client.post("/api/messages", json={"accountId": account_id, "chatId": "user:staff-alice",
                                                                 "text": "hub says hi", "idempotencyKey": "c-1"},
                                          headers=headers)
                assert r.status_code == 201 and r.json()["status"] == "sent", r.text
                assert driver.sent_texts() == ["hub says hi"]
                assert driver.fake.calls.count("oto") == 2  # a 429, waited out, then the send
    finally:
        await driver.stop()


async def test_kill_9_of_the_worker_mid_stream_loses_and_duplicates_nothing(backend: str, tmp_path: Path) -> None:
    """The pipeline's kill -9 test on DingTalk: messages the dead worker took but never acked are
    pushed again by DingTalk to the survivor's connection and stored once."""
    async with FakeDingTalk() as fake, fresh_database(backend, tmp_path) as db:
        fake.add_app(APP, SECRET)
        env = e2e_env(backend, tmp_path, db, LOOMI_DINGTALK_BASE_URL=fake.base_url, LOOMI_LEASE_MS="10000",
                      LOOMI_HEARTBEAT_SECONDS="2")
        async with running_hub(env, worker=False) as hub:
            headers = await hub.login()
            workers = [WorkerProcess(env, tmp_path / f"worker{i}.log").start() for i in range(2)]
            try:
                r = await hub.client.post("/api/dingtalk/listener/init",
                                          json={"clientId": APP, "clientSecret": SECRET}, headers=headers)
                assert r.status_code == 200, r.text
                holder = await eventually(lambda: _holder(hub, headers), timeout=60, what="a worker holds the listener")
                sent = [fake.post_message(APP, f"before {i}") for i in range(100)]
                await eventually(lambda: hub.at_least(headers, 50), what="ingest under way")
                victim = next(w for w in workers if holder.endswith(f":{w.pid}"))
                killed_at = time.monotonic()
                victim.kill9()
                sent += [fake.post_message(APP, f"after {i}", group="cidTeam") for i in range(100)]
                survivor = next(w for w in workers if w is not victim)
                await eventually(lambda: _holder(hub, headers, f":{survivor.pid}"), timeout=30, what="takeover")
                takeover = time.monotonic() - killed_at
                got = await eventually(lambda: hub.at_least(headers, 200), timeout=60, what="all 200 messages")
                await asyncio.sleep(1.0)
                got = await hub.messages(headers)
                print(f"\ndingtalk takeover after kill -9: {takeover:.1f} s")
                assert takeover < 15, takeover
                assert len(got) == 200 and {m["nativeId"] for m in got} == set(sent)

                async def all_acked() -> bool:
                    return fake.pending(APP) == []

                await eventually(all_acked, what="every message acked")
            finally:
                for w in workers:
                    w.stop()


async def _holder(hub: Any, headers: dict[str, str], suffix: str = "") -> str | None:
    account = await hub.first_account(headers)
    if account and account["state"] == "connected" and account["worker"] and account["worker"].endswith(suffix):
        return str(account["worker"])
    return None


async def test_a_rotated_secret_puts_the_account_in_needs_reauth(backend: str, tmp_path: Path) -> None:
    async with FakeDingTalk() as fake, fresh_database(backend, tmp_path) as db:
        fake.add_app(APP, SECRET)
        async with running_hub(e2e_env(backend, tmp_path, db, LOOMI_DINGTALK_BASE_URL=fake.base_url)) as hub:
            headers = await hub.login()
            r = await hub.client.post("/api/dingtalk/listener/init", json={"clientId": APP, "clientSecret": SECRET},
                                      headers=headers)
            assert r.status_code == 200, r.text
            await eventually(lambda: hub.in_state(headers, "connected"), what="connected")
            fake.rotate_secret(APP, "a-new-secret")
            fake.drop_connections(APP)  # the next connections/open is refused
            await eventually(lambda: hub.in_state(headers, "needs_reauth"), what="needs_reauth")
            opens = len(fake.open_requests)
            await asyncio.sleep(1.0)
            assert len(fake.open_requests) == opens  # no retrying with credentials DingTalk refused
