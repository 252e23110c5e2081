"""iMessage end to end: a chat.db with the real schema being written like the Messages app
writes it -> `/api/imessage/init-self-listener` -> the worker's poller -> stream -> store,
exactly once: the history on connecting, live messages, replies, tapbacks on their messages,
a group's name; a missing database refused naming its path; sending refused clearly; and a
`kill -9` of the worker mid-stream losing and duplicating nothing (the ROWID saved with the
queue is where the next worker starts)."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import RunningHub, WorkerProcess, e2e_env, fresh_database, running_hub
from tests.fakes.imessage import ChatDb
from tests.waiting import eventually

ALICE, BOB = "+15551230001", "bob@example.com"
INIT = "/api/imessage/init-self-listener"


async def _by_text(hub: RunningHub, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    return {m["text"]: m for m in await hub.messages(headers)}


async def test_history_live_replies_tapbacks_and_refusals(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home-without-messages"))  # this machine is no Mac
    messages = ChatDb(tmp_path / "chat.db")
    direct, group = messages.chat([ALICE]), messages.chat([ALICE, BOB], name="Climbing 🧗")
    history = [messages.message(direct if i % 3 else group, ALICE if i % 2 else BOB, f"history {i} ✓",
                                in_text_column=i % 5 == 0) for i in range(40)]
    messages.message(group, None, "I'm in (from me)")
    try:
        async with fresh_database(backend, tmp_path) as db:
            async with running_hub(e2e_env(backend, tmp_path, db)) as hub:
                headers = await hub.login()
                default = await hub.client.post(INIT, json={}, headers=headers)
                assert default.status_code == 400 and default.json()["code"] == "invalid_input"
                assert f"{tmp_path}/home-without-messages/Library/Messages/chat.db" in default.json()["error"]
                missing = await hub.client.post(INIT, json={"dbPath": "/nowhere/chat.db"}, headers=headers)
                assert missing.status_code == 400 and "/nowhere/chat.db" in missing.json()["error"]
                assert await hub.first_account(headers) is None

                r = await hub.client.post(INIT, json={"dbPath": str(messages.path)}, headers=headers)
                assert r.status_code == 200 and r.json()["status"] == "started", r.text
                account_id = r.json()["account"]["id"]
                await eventually(lambda: hub.in_state(headers, "connected"), what="polling")
                stored = await eventually(lambda: hub.at_least(headers, 41), what="the history")
                assert sorted(m["nativeId"] for m in stored if not m["isSelf"]) == sorted(history)
                mine = [m for m in stored if m["isSelf"]]
                assert len(mine) == 1 and mine[0]["direction"] == "outbound" and mine[0]["chatName"] == "Climbing 🧗"

                parent = messages.message(direct, ALICE, "dinner at 8?")
                reply = messages.message(direct, None, "yes!", reply_to=parent)
                messages.react(direct, ALICE, reply, "👍")
                photo = messages.message(direct, ALICE, "\ufffcthe view", attachment={"name": "IMG_1.HEIC", "mime_type": "image/heic"})
                texts = await eventually(lambda: _reacted(hub, headers, "yes!"), what="the tapback on its message")
                assert texts["yes!"]["replyToId"] == parent and texts["yes!"]["reactions"][0]["emoji"] == "👍"
                assert texts["the view"]["nativeId"] == photo and texts["the view"]["attachments"][0]["name"] == "IMG_1.HEIC"

                again = await hub.client.post(INIT, json={"dbPath": str(messages.path)}, headers=headers)
                assert again.json()["status"] == "already_running" and again.json()["account"]["id"] == account_id

                sent = await hub.client.post("/api/messages", headers=headers, json={
                    "accountId": account_id, "chatId": f"iMessage;-;{ALICE}", "text": "hello from the hub",
                    "idempotencyKey": secrets.token_hex(6)})
                assert sent.status_code == 502 and sent.json()["status"] == "failed" and "AppleScript" in sent.json()["error"]
                await asyncio.sleep(1.5)  # a duplicate from re-polling would show by now
                final = await hub.messages(headers)
                assert len(final) == 41 + 3 + 1 and len({m["nativeId"] for m in final}) == len(final)
    finally:
        messages.close()


async def _reacted(hub: RunningHub, headers: dict[str, str], text: str) -> dict[str, dict[str, Any]] | None:
    found = await _by_text(hub, headers)
    return found if text in found and found[text]["reactions"] and "the view" in found else None


async def test_kill_9_of_the_polling_worker_loses_and_duplicates_nothing(backend: str, tmp_path: Path) -> None:
    messages = ChatDb(tmp_path / "chat.db")
    chat = messages.chat([ALICE])
    env = e2e_env(backend, tmp_path, "", LOOMI_LEASE_MS="4000", LOOMI_HEARTBEAT_SECONDS="1")
    try:
        async with fresh_database(backend, tmp_path) as db:
            env["LOOMI_DATABASE_URL"] = db
            async with running_hub(env, worker=False) as hub:
                headers = await hub.login()
                workers = [WorkerProcess(env, tmp_path / f"worker{i}.log").start() for i in range(2)]
                try:
                    r = await hub.client.post(INIT, json={"dbPath": str(messages.path)}, headers=headers)
                    assert r.status_code == 200, r.text
                    holder = await eventually(lambda: _holder(hub, headers), timeout=60, what="a worker polls")
                    written = [messages.message(chat, ALICE, f"before {i}") for i in range(150)]
                    await eventually(lambda: hub.at_least(headers, 30), timeout=60, what="ingest under way")
                    victim = next(w for w in workers if holder.endswith(f":{w.pid}"))
                    killed_at = time.monotonic()
                    victim.kill9()
                    written += [messages.message(chat, BOB, f"after {i}") for i in range(150)]
                    survivor = next(w for w in workers if w is not victim)
                    await eventually(lambda: _holder(hub, headers, f":{survivor.pid}"), timeout=30, what="takeover")
                    takeover = time.monotonic() - killed_at
                    await eventually(lambda: hub.at_least(headers, 300), timeout=60, what="all 300")
                    await asyncio.sleep(1.5)
                    got = await hub.messages(headers)
                    print(f"\nimessage takeover after kill -9: {takeover:.1f} s")
                    assert len(got) == 300 and {m["nativeId"] for m in got} == set(written)
                finally:
                    for w in workers:
                        w.stop()
    finally:
        messages.close()


async def _holder(hub: RunningHub, headers: dict[str, str], suffix: str = "") -> str | None:
    account = await hub.first_account(headers)
    if account and account["state"] == "connected" and account["worker"] and account["worker"].endswith(suffix):
        return str(account["worker"])
    return None
