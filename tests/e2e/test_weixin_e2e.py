"""WeChat (iLink) end to end: FakeWeixin -> getupdates listener -> stream -> store -> GET
/api/messages, through the public routes (QR login or a bot token), exactly once through
drops, redelivered cursors, a recall, an expired session and kill -9 of the worker."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.e2e.harness import WorkerProcess, e2e_env, fresh_database, running_hub
from tests.fakes.weixin import FakeWeixin
from tests.waiting import eventually

ALICE, BOB = "o9cq80Alice@im.wechat", "o9cq80Bob@im.wechat"
GROUP = "48213377@chatroom"


def _env(backend: str, tmp: Path, db: str, fake: FakeWeixin, **extra: str) -> dict[str, str]:
    return e2e_env(backend, tmp, db, LOOMI_WEIXIN_BASE_URL=fake.base_url, **extra)


async def _connect_token(hub, headers: dict, token: str) -> str:
    r = await hub.client.post("/api/weixin/listener/init", json={"botToken": token}, headers=headers)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "started" and r.json()["step"] == {"kind": "done"}
    return r.json()["account"]["id"]


async def test_qr_login_then_messages_land_exactly_once(backend: str, tmp_path: Path) -> None:
    async with FakeWeixin(poll_hold=5) as fake, fresh_database(backend, tmp_path) as db:
        async with running_hub(_env(backend, tmp_path, db, fake)) as hub:
            headers = await hub.login()
            # a refused token: 400 naming the complaint, nothing stored
            bad = await hub.client.post("/api/weixin/listener/init", json={"botToken": "x@im.bot:revoked"}, headers=headers)
            assert bad.status_code == 400 and bad.json()["code"] == "credentials_rejected" and "-14" in bad.json()["cause"]
            assert await hub.first_account(headers) is None

            # QR login: the account appears only once the scan is confirmed
            start = await hub.client.post("/api/weixin/listener/init", json={}, headers=headers)
            assert start.status_code == 200, start.text
            body = start.json()
            login_id, qrcode = body["loginId"], fake.qrcodes[-1]
            assert body["step"]["kind"] == "qr" and body["qrcodeUrl"] == body["step"]["qrcodeUrl"] and qrcode in body["qrcodeUrl"]
            poll = f"/api/integrations/weixin/login/{login_id}"
            assert (await hub.client.get(poll, headers=headers)).json()["step"]["kind"] == "wait"
            fake.scan(qrcode)
            scanned = (await hub.client.get(poll, headers=headers)).json()
            assert scanned["step"]["kind"] == "wait" and "confirm" in scanned["step"]["message"]
            other = await hub.login()
            assert (await hub.client.get(poll, headers=other)).status_code == 404  # not someone else's login
            assert await hub.first_account(headers) is None
            token = fake.confirm(qrcode, owner="o9me@im.wechat")
            done = (await hub.client.get(poll, headers=headers)).json()
            assert done["step"] == {"kind": "done"} and done["status"] == "started", done
            account_id = done["account"]["id"]
            assert done["account"]["externalId"] == fake.bot_id(token)
            assert (await hub.client.get(poll, headers=headers)).status_code == 404  # the login is spent
            await eventually(lambda: hub.in_state(headers, "connected"), what="listener connected")

            sent: list[str] = []
            for i in range(45):
                who = ALICE if i % 3 else BOB
                quote = int(sent[-1]) if i % 9 == 4 else None
                group = GROUP if i % 5 == 0 else None
                sent.append(str(fake.post_message(token, who, f"hello {i}", quote=quote if not group else None, group_id=group)))
                if i == 20:
                    fake.drop_connections()
                if i == 30:
                    fake.fail_next("getupdates", retry_after=1)
                if i % 10 == 0:
                    await asyncio.sleep(0.05)
            photo = str(fake.post_message(token, ALICE, items=[{"type": 2, "image_item": {"mid_size": 2048, "media": {
                "encrypt_query_param": "abc", "aes_key": "a2V5", "encrypt_type": 1}}}]))
            fake.recall(token, int(sent[7]))
            got = await eventually(lambda: _all_in(hub, headers, 46, sent[7]), what="46 messages and the recall")
            assert sorted(m["nativeId"] for m in got) == sorted([*sent, photo])
            by_id = {m["nativeId"]: m for m in got}
            assert by_id[sent[7]]["deletedAt"] is not None and by_id[sent[8]]["deletedAt"] is None
            assert by_id[sent[13]]["replyToId"] == sent[12]
            assert by_id[sent[5]]["chatId"] == GROUP and by_id[sent[5]]["chatType"] == "group"
            assert by_id[sent[1]]["chatId"] == ALICE and by_id[sent[1]]["chatType"] == "dm"
            assert by_id[photo]["contentType"] == "image" and by_id[photo]["attachments"][0]["size"] == 2048
            assert all(m["accountId"] == account_id and m["platform"] == "weixin" for m in got)
            assert fake.bad_requests == []
            assert len(set(fake.cursors_seen)) >= 3  # the cursor moved on with the batches (and was sent back)

            # disconnect stops the listener
            assert (await hub.client.delete(f"/api/integrations/accounts/{account_id}", headers=headers)).status_code == 200
            await eventually(lambda: hub.in_state(headers, "stopped"), what="listener stopped")
            await asyncio.sleep(0.5)
            calls = fake.calls["getupdates"]
            await asyncio.sleep(1.5)
            assert fake.calls["getupdates"] == calls


async def _all_in(hub, headers, n: int, recalled: str):
    got = await hub.messages(headers, includeDeleted="true")
    done = len(got) >= n and any(m["nativeId"] == recalled and m["deletedAt"] for m in got)
    return got if done else None


async def test_send_answers_with_the_chats_context_token(backend: str, tmp_path: Path) -> None:
    async with FakeWeixin(poll_hold=5) as fake, fresh_database(backend, tmp_path) as db:
        token = fake.add_bot()
        async with running_hub(_env(backend, tmp_path, db, fake)) as hub:
            headers = await hub.login()
            account_id = await _connect_token(hub, headers, token)
            await eventually(lambda: hub.in_state(headers, "connected"), what="connected")
            fake.post_message(token, ALICE, "anyone there?")
            await asyncio.sleep(0.01)  # distinct create_time_ms: the store orders by it
            fake.post_message(token, ALICE, "hello?")  # the newest message's token is the one to answer with
            await eventually(lambda: hub.at_least(headers, 2), what="the questions")
            fake.fail_next("sendmessage", retry_after=1)
            r = await hub.client.post("/api/messages", json={"accountId": account_id, "chatId": ALICE, "text": "yes, here",
                                                             "idempotencyKey": "wx-1"}, headers=headers)
            assert r.status_code == 201, r.text
            assert r.json()["status"] == "sent", r.json()
            assert [m["item_list"][0]["text_item"]["text"] for m in fake.sent] == ["yes, here"]
            assert fake.sent[0]["context_token"] == fake.context_token(token, ALICE)
            assert r.json()["nativeId"] == fake.sent[0]["client_id"]
            # nobody in that chat wrote to the bot: WeChat would refuse, so we do not call it
            cold = await hub.client.post("/api/messages", json={"accountId": account_id, "chatId": BOB, "text": "cold",
                                                                "idempotencyKey": "wx-2"}, headers=headers)
            assert cold.status_code >= 400 and cold.json()["status"] == "failed" and "context_token" in cold.json()["error"]
            assert len(fake.sent) == 1


async def test_expired_session_ends_in_needs_reauth(backend: str, tmp_path: Path) -> None:
    async with FakeWeixin(poll_hold=5) as fake, fresh_database(backend, tmp_path) as db:
        token = fake.add_bot()
        async with running_hub(_env(backend, tmp_path, db, fake)) as hub:
            headers = await hub.login()
            account_id = await _connect_token(hub, headers, token)
            await eventually(lambda: hub.in_state(headers, "connected"), what="connected")
            fake.expire_session(token)
            await eventually(lambda: hub.in_state(headers, "needs_reauth"), what="needs_reauth")
            await eventually(lambda: _released(hub, account_id), what="listener released")
            detail = (await hub.first_account(headers))["stateDetail"]
            assert "-14" in detail and token not in detail
            await asyncio.sleep(0.6)
            assert account_id not in hub.worker.supervisor.running  # nobody restarts it: the person must scan again


async def _released(hub, account_id: str) -> bool:
    return account_id not in hub.worker.supervisor.running


async def test_kill_9_of_the_worker_mid_stream_loses_and_duplicates_nothing(backend: str, tmp_path: Path) -> None:
    """tests/e2e/test_telegram_e2e.py's kill -9 test on WeChat: two `loomi worker` processes,
    the one holding the listener killed while messages flow; all N stored exactly once."""
    async with FakeWeixin(poll_hold=5) as fake, fresh_database(backend, tmp_path) as db:
        token = fake.add_bot()
        env = _env(backend, tmp_path, db, fake, LOOMI_LEASE_MS="10000", LOOMI_HEARTBEAT_SECONDS="2")
        async with running_hub(env, worker=False) as hub:
            headers = await hub.login()
            workers = [WorkerProcess(env, tmp_path / f"worker{i}.log").start() for i in range(2)]
            try:
                await _connect_token(hub, headers, token)
                status = await eventually(lambda: _holder(hub, headers), timeout=60, what="a worker holds the listener")
                sent = [fake.post_message(token, ALICE, f"before {i}") for i in range(100)]
                await eventually(lambda: hub.at_least(headers, 50), what="ingest under way")
                victim = next(w for w in workers if status.endswith(f":{w.pid}"))
                killed_at = time.monotonic()
                victim.kill9()
                sent += [fake.post_message(token, BOB, f"after {i}") for i in range(100)]
                survivor = next(w for w in workers if w is not victim)
                await eventually(lambda: _holder(hub, headers, f":{survivor.pid}"), timeout=30, what="takeover")
                takeover = time.monotonic() - killed_at
                got = await eventually(lambda: hub.at_least(headers, 200), timeout=60, what="all 200 messages")
                print(f"\nweixin takeover after kill -9: {takeover:.1f} s")
                assert takeover < 15, takeover
                assert len(got) == 200 and {m["nativeId"] for m in got} == {str(n) for n in sent}
                assert fake.bad_requests == []
            finally:
                for w in workers:
                    w.stop()


async def _holder(hub, headers, suffix: str = ""):
    account = await hub.first_account(headers)
    if account and account["state"] == "connected" and account["worker"] and account["worker"].endswith(suffix):
        return account["worker"]
    return None
