"""Slack, Telegram and WhatsApp exports through POST /api/messages/import on SQLite and
PostgreSQL (the `client`/`user` fixtures run the real app on a real socket): each imported
twice (the second run stores nothing), what lands in the store checked field by field, and a
malformed entry refused with a 400 that names it while nothing is stored."""

from __future__ import annotations

from typing import Any

import httpx
import orjson
import sqlalchemy as sa

from store.schema import accounts, messages
from tests.imports import exports


async def _import(client: httpx.AsyncClient, user: dict, name: str, data: bytes, **params: str) -> httpx.Response:
    return await client.post("/api/messages/import", files={"file": (name, data, "application/octet-stream")},
                             params=params, headers=user["headers"])


async def _twice(client: httpx.AsyncClient, user: dict, name: str, data: bytes, total: int, **params: str) -> dict[str, Any]:
    first = await _import(client, user, name, data, **params)
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["imported"], body["failed"], body["total"]) == (total, 0, total), body
    again = await _import(client, user, name, data, **params)
    assert again.status_code == 200, again.text
    second = again.json()
    assert second["imported"] == 0 and second["reactions"] == 0 and second["accountsCreated"] == []
    assert second["skipped"] == body["skipped"] + total and second["reasons"]["already stored (or repeated in the file)"] == total
    return body


async def _listed(client: httpx.AsyncClient, user: dict, platform: str) -> dict[str, dict[str, Any]]:
    r = await client.get("/api/messages", params={"platform": platform, "limit": 500}, headers=user["headers"])
    assert r.status_code == 200, r.text
    return {m["nativeId"]: m for m in r.json()["messages"]}


async def _stored(hub, user: dict) -> tuple[int, int]:
    async with hub.engine.connect() as conn:
        uid = user["user"]["id"]
        count = lambda t: sa.select(sa.func.count()).select_from(t).where(t.c.user_id == uid)  # noqa: E731
        return (await conn.execute(count(messages))).scalar_one(), (await conn.execute(count(accounts))).scalar_one()


async def test_slack_export_zip(client: httpx.AsyncClient, hub, user: dict) -> None:
    body = await _twice(client, user, "Acme Slack export Jan 1 2023 - Jan 2 2023.zip", exports.slack_zip(),
                        exports.SLACK_MESSAGES, me="Alice Wang")
    assert body["format"] == "slack" and body["chats"] == 4 and body["reactions"] == 3 and len(body["accountsCreated"]) == 1
    got = await _listed(client, user, "slack")
    assert len(got) == exports.SLACK_MESSAGES
    t0 = exports.T0
    parent, reply = got[f"{t0 + 60}.000200"], got[f"{t0 + 120}.000300"]
    assert parent["text"] == "Ship it by Friday? 🚀" and parent["isSelf"] is True and parent["chatId"] == "C0GENERAL"
    assert sorted((r["emoji"], r["senderId"]) for r in parent["reactions"]) == [
        ("+1", exports.BOB), ("rocket", exports.BOB), ("rocket", exports.CAROL)]
    assert reply["threadId"] == parent["nativeId"] and reply["replyToId"] == parent["nativeId"]
    assert reply["text"] == "好的，周五前完成 ✅" and reply["isSelf"] is False and reply["senderName"] == "小明"
    assert reply["editedAt"] == "2023-01-01T12:03:00.000Z" and reply["timestamp"] == (t0 + 120) * 1000
    shared = got[f"{t0 + 86_400}.000100"]
    assert shared["text"] == "مرحبا بالجميع" and shared["attachments"][0]["name"] == "plan.pdf"
    assert shared["attachments"][0]["content_type"] == "application/pdf" and shared["attachments"][0]["size"] == 12345
    assert got[f"{t0}.000100"]["contentType"] == "system"  # channel_join, as the live connector stores it
    assert got[f"{t0 + 40}.000100"]["chatType"] == "dm" and got[f"{t0 + 70}.000100"]["chatType"] == "group"
    assert got[f"{t0 + 30}.000100"]["chatId"] == "G0SECRET"
    async with hub.engine.connect() as conn:
        account = (await conn.execute(accounts.select().where(accounts.c.id == body["accountsCreated"][0]))).mappings().one()
    assert (account["platform"], account["external_id"], account["name"], account["state"]) == ("slack", exports.TEAM, "Acme", "imported")


async def test_slack_export_in_a_top_folder_without_me(client: httpx.AsyncClient, user: dict) -> None:
    body = await _twice(client, user, "export.zip", exports.slack_zip(top_folder="Acme Slack export"), exports.SLACK_MESSAGES)
    assert not any(m["isSelf"] for m in (await _listed(client, user, "slack")).values())
    assert body["format"] == "slack"


async def test_telegram_single_chat(client: httpx.AsyncClient, user: dict) -> None:
    data = orjson.dumps(exports.telegram_chat(), option=orjson.OPT_INDENT_2)
    asked = await _import(client, user, "result.json", data)
    assert asked.status_code == 400 and "me=" in asked.json()["cause"] and "Alice (user111)" in asked.json()["cause"]
    body = await _twice(client, user, "result.json", data, exports.TELEGRAM_MESSAGES, me="Alice")
    assert body["format"] == "telegram" and body["reactions"] == 1
    assert body["reasons"]["service messages (joins, pins, calls, title changes)"] == 1 and body["skipped"] == 1
    got = await _listed(client, user, "telegram_user")
    assert set(got) == {"2", "3", "4", "5", "6", "7"}
    assert got["2"]["text"] == "你好 👋 everyone" and got["2"]["isSelf"] is True and got["2"]["chatId"] == "-1001234567890"
    assert got["2"]["chatName"] == "家庭 Family" and got["2"]["chatType"] == "group" and got["2"]["senderId"] == "111"
    assert got["3"]["text"] == "see שלום and https://example.com" and got["3"]["editedAt"] == "2023-01-01T12:05:00.000Z"
    assert got["4"]["replyToId"] == "3" and got["4"]["reactions"][0]["emoji"] == "👍" and got["4"]["reactions"][0]["senderId"] == "222"
    assert got["5"]["contentType"] == "image" and got["5"]["attachments"][0]["size"] == 54321
    assert got["6"]["attachments"][0]["name"] == "contract.pdf"  # "(File not included…)": the name from file_name
    assert got["7"]["text"] == "😂" and got["7"]["attachments"][0]["content_type"] == "image/webp"


async def test_telegram_whole_account_export_joins_the_connected_account(client: httpx.AsyncClient, hub, user: dict) -> None:
    """The person already connected their Telegram account (connectors/telegram_user: account
    id = their user id): the export's history lands in it, in the chats it reports."""
    from store.ids import new_id, now_ms

    connected = new_id("acct")
    async with hub.engine.begin() as conn:
        await conn.execute(accounts.insert().values(
            id=connected, user_id=user["user"]["id"], platform="telegram_user", external_id="111", name="Alice",
            credentials=None, settings={}, resume={}, enabled=False, state="stopped", created_at=now_ms(), updated_at=now_ms()))
    body = await _twice(client, user, "result.json", orjson.dumps(exports.telegram_full()), exports.TELEGRAM_MESSAGES + 2)
    assert body["accountsCreated"] == []
    got = await _listed(client, user, "telegram_user")
    assert {m["accountId"] for m in got.values()} == {connected}
    assert got["10"]["isSelf"] is True and got["11"]["isSelf"] is False and got["10"]["chatType"] == "dm"
    assert got["10"]["chatId"] == "222" and got["2"]["chatId"] == "-1001234567890"


async def test_whatsapp_ios_and_android(client: httpx.AsyncClient, user: dict) -> None:
    ios = await _twice(client, user, "_chat.txt", exports.IOS_CHAT.encode(), exports.IOS_MESSAGES, me="Alice", chat="Family 家",
                       tz="Asia/Shanghai")
    assert ios["format"] == "whatsapp" and ios["reasons"]["deleted messages"] == 1
    assert ios["reasons"]["system lines (encryption notice, joins, subject changes)"] == 2
    android = await _twice(client, user, "WhatsApp Chat with Alice.txt", exports.ANDROID_CHAT.encode(), exports.ANDROID_MESSAGES,
                           me="Bob")
    assert android["accountsCreated"] == []  # the same person's WhatsApp export account
    got = list((await _listed(client, user, "whatsapp")).values())
    assert len(got) == exports.IOS_MESSAGES + exports.ANDROID_MESSAGES
    by_text = {m["text"]: m for m in got}
    hello = by_text["你好 👋\nsecond line of the same message"]
    assert hello["isSelf"] is True and hello["chatName"] == "Family 家" and hello["chatType"] == "group"
    assert hello["timestamp"] == 1_675_257_310_000  # 2023-02-01 21:15:10 in Asia/Shanghai
    assert by_text["שלום עולם"]["editedAt"] is not None and by_text["שלום עולם"]["timestamp"] == 1_676_293_500_000  # 9:05 PM
    oks = [m for m in got if m["text"] == "ok"]
    assert len(oks) == 2 and oks[0]["nativeId"] != oks[1]["nativeId"] and oks[0]["senderName"] == "+1 555 010 0199"
    photo = next(m for m in got if m["attachments"] and m["attachments"][0]["name"] == "00000012-PHOTO-2023-02-01-21-16-00.jpg")
    assert photo["contentType"] == "file" and photo["attachments"][0]["content_type"] == "image/jpeg"
    flat = by_text["our new flat 🏠"]
    assert flat["attachments"][0]["name"] == "IMG-20230201-WA0001.jpg" and flat["isSelf"] is False
    assert flat["chatName"] == "Alice" and flat["chatType"] == "dm" and flat["timestamp"] == 1_675_286_160_000  # UTC by default
    assert by_text["明天见"]["isSelf"] is True


async def test_whatsapp_needs_to_know_who_you_are(client: httpx.AsyncClient, hub, user: dict) -> None:
    data = exports.ANDROID_CHAT.encode()
    r = await _import(client, user, "chat.txt", data)
    assert r.status_code == 400 and "senders: " in r.json()["cause"] and "Alice" in r.json()["cause"]
    typo = await _import(client, user, "chat.txt", data, me="Bobby")
    assert typo.status_code == 400 and "'Bobby' sent nothing" in typo.json()["cause"]
    assert await _stored(hub, user) == (0, 0)
    guessed = await _import(client, user, "chat.txt", data, guessMe="true")
    assert guessed.status_code == 200 and guessed.json()["imported"] == exports.ANDROID_MESSAGES
    mine = {m["senderName"] for m in (await _listed(client, user, "whatsapp")).values() if m["isSelf"]}
    assert len(mine) == 1  # Alice and Bob wrote two each: one of them, consistently


async def test_malformed_entries_are_named_and_nothing_is_stored(client: httpx.AsyncClient, hub, user: dict) -> None:
    slack = await _import(client, user, "x.zip", exports.slack_zip(broken="ts"), me="alice")
    assert slack.status_code == 400, slack.text
    assert slack.json()["code"] == "invalid_import" and "general/2023-01-02.json, message 2" in slack.json()["cause"]
    telegram = await _import(client, user, "result.json", orjson.dumps(exports.telegram_chat(broken="date")), me="Alice")
    assert telegram.status_code == 400 and "messages[3] (id 4): date_unixtime" in telegram.json()["cause"]
    truncated = orjson.dumps(exports.telegram_chat(), option=orjson.OPT_INDENT_2)[:-40]
    cut = await _import(client, user, "result.json", truncated, me="Alice")
    assert cut.status_code == 400 and cut.json()["cause"].startswith("line ")
    bad_date = exports.ANDROID_CHAT.replace("13/02/23, 09:01", "13/13/23, 09:01")
    whatsapp = await _import(client, user, "chat.txt", bad_date.encode(), me="Bob")
    assert whatsapp.status_code == 400 and whatsapp.json()["error"].startswith("Line 6 is invalid")
    assert "13/13/23" in whatsapp.json()["cause"]
    zip_of_nothing = await _import(client, user, "x.zip", exports.slack_zip()[:30] + b"\0" * 100)
    assert zip_of_nothing.status_code == 400
    assert await _stored(hub, user) == (0, 0)  # not one message, not one account


async def test_a_failure_while_writing_leaves_nothing(client: httpx.AsyncClient, hub, user: dict, monkeypatch) -> None:
    """The store refuses mid-import (here: the reaction pass raises, as a database error
    would): the transaction rolls back the messages and the account written before it."""
    import imports.apply as apply_module

    real = apply_module.apply_changes
    calls = {"n": 0}

    async def failing(conn, items):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("database went away")
        return await real(conn, items)

    monkeypatch.setattr(apply_module, "apply_changes", failing)
    with_error = await _import(client, user, "x.zip", exports.slack_zip(), me="alice")
    assert with_error.status_code == 500 and calls["n"] == 2
    assert await _stored(hub, user) == (0, 0)


async def test_options_as_multipart_fields(client: httpx.AsyncClient, user: dict) -> None:
    """A browser form sends `me` next to the file; a bad option is a 400 like a bad query."""
    data = orjson.dumps(exports.telegram_chat())
    files = {"file": ("result.json", data, "application/json")}
    r = await client.post("/api/messages/import", files=files, data={"me": "Bob", "format": "telegram"}, headers=user["headers"])
    assert r.status_code == 200, r.text
    assert {m["nativeId"] for m in (await _listed(client, user, "telegram_user")).values() if m["isSelf"]} == {"3", "5", "7"}
    bad = await client.post("/api/messages/import", files=files, data={"format": "icq"}, headers=user["headers"])
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_input" and "format" in bad.json()["cause"]
    wrong = await client.post("/api/messages/import", files=files, data={"format": "slack"}, headers=user["headers"])
    assert wrong.status_code == 400 and "a Slack export is a zip" in wrong.json()["cause"]
