"""History import over HTTP on both databases: JSONL body, multipart file, openloomi's raw
bulk shape, exactly once, bad lines refused whole, accounts created without listeners."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import httpx
import orjson
import sqlalchemy as sa

from store.accounts import list_rows
from store.schema import accounts, messages


def line(i: int, **over: Any) -> dict[str, Any]:
    base = {
        "platform": "slack",
        "account": {"id": "T1", "name": "Acme"},
        "chat": {"id": "C1", "name": "general", "type": "group"},
        "id": f"m{i}",
        "sender": {"id": "U2" if i % 2 else "T1", "name": "Bob" if i % 2 else "Me"},
        "ts": 1_700_000_000_000 + i * 1000 if i % 3 else f"2023-11-14T22:13:{20 + i:02d}Z",
        "text": f"hello {i}",
    }
    base.update(over)
    return base


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"\n".join(orjson.dumps(r) for r in rows) + b"\n"


async def _count(hub, user_id: str) -> int:
    async with hub.engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(messages).where(messages.c.user_id == user_id))).scalar_one()


async def test_jsonl_import_is_exactly_once(client: httpx.AsyncClient, hub, user: dict) -> None:
    rows = [line(i) for i in range(10)] + [line(3, chat={"id": "C2", "type": "dm"}, replyTo="m1", threadId="t1")]
    r = await client.post("/api/messages/import", content=jsonl(rows), headers=user["headers"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["imported"], body["skipped"], body["failed"], body["total"]) == (11, 0, 0, 11)
    assert len(body["accountsCreated"]) == 1 and body["chats"] == 2
    again = (await client.post("/api/messages/import", content=jsonl(rows), headers=user["headers"])).json()
    assert (again["imported"], again["skipped"], again["accountsCreated"]) == (0, 11, [])
    assert await _count(hub, user["user"]["id"]) == 11

    listed = (await client.get("/api/messages", params={"limit": 50}, headers=user["headers"])).json()["messages"]
    by_native = {(m["chatId"], m["nativeId"]): m for m in listed}
    assert by_native[("C1", "m2")]["isSelf"] is True and by_native[("C1", "m1")]["isSelf"] is False
    assert by_native[("C1", "m1")]["senderName"] == "Bob" and by_native[("C1", "m1")]["chatType"] == "group"
    assert by_native[("C2", "m3")]["replyToId"] == "m1" and by_native[("C2", "m3")]["threadId"] == "t1"
    assert by_native[("C1", "m3")]["timestamp"] == 1_700_000_003_000
    assert by_native[("C1", "m0")]["timestamp"] == 1_700_000_000_000  # "2023-11-14T22:13:20Z"


async def test_imported_account_has_no_listener(client: httpx.AsyncClient, hub, user: dict) -> None:
    r = await client.post("/api/messages/import", content=jsonl([line(1, platform="telegram")]), headers=user["headers"])
    (account_id,) = r.json()["accountsCreated"]
    async with hub.engine.connect() as conn:
        row = (await conn.execute(accounts.select().where(accounts.c.id == account_id))).mappings().one()
        listenable = {a["id"] for a in await list_rows(conn, enabled_only=True)}  # what the supervisor scans
    assert row["state"] == "imported" and row["credentials"] is None and row["platform"] == "telegram"
    assert account_id not in listenable


async def test_bad_line_is_named_and_nothing_is_stored(client: httpx.AsyncClient, hub, user: dict) -> None:
    rows = [orjson.dumps(line(i)) for i in range(5)]
    cases = {
        3: b"{not json",
        4: orjson.dumps({**line(9), "ts": "yesterday-ish"}),
        2: orjson.dumps({**line(9), "chat": {"id": "C1", "type": "forum"}}),
        5: orjson.dumps([1, 2]),
    }
    for number, bad in cases.items():
        body = rows[: number - 1] + [bad] + rows[number - 1 :]
        r = await client.post("/api/messages/import", content=b"\n".join(body), headers=user["headers"])
        assert r.status_code == 400, r.text
        err = r.json()
        assert err["code"] == "invalid_import" and f"Line {number}" in err["error"] and f"line {number}:" in err["cause"]
    missing = (await client.post("/api/messages/import", content=orjson.dumps({**line(1), "account": None}), headers=user["headers"])).json()
    assert "account" in missing["cause"]
    empty = await client.post("/api/messages/import", content=b"\n\n", headers=user["headers"])
    assert empty.status_code == 400
    assert await _count(hub, user["user"]["id"]) == 0
    async with hub.engine.connect() as conn:
        assert not (await conn.execute(accounts.select().where(accounts.c.user_id == user["user"]["id"]))).first()


async def test_multipart_file_and_isolation(client: httpx.AsyncClient, hub, user: dict) -> None:
    from tests.conftest import register

    files = {"file": ("history.jsonl", jsonl([line(i) for i in range(4)]), "application/x-ndjson")}
    r = await client.post("/api/messages/import", files=files, headers=user["headers"])
    assert r.status_code == 200 and r.json()["imported"] == 4
    other = await register(client)
    r = await client.post("/api/messages/import", files=files, headers=other["headers"])
    assert r.json()["imported"] == 4  # same native ids, another person's own account
    mine = (await client.get("/api/messages", headers=user["headers"])).json()["messages"]
    assert len(mine) == 4
    no_file = await client.post("/api/messages/import", files={"other": ("x", b"y")}, headers=user["headers"])
    assert no_file.status_code == 400
    anon = await client.post("/api/messages/import", content=jsonl([line(1)]))
    assert anon.status_code == 401


async def test_openloomi_raw_bulk_shape(client: httpx.AsyncClient, hub, user: dict) -> None:
    batch = {
        "messages": [
            {"messageId": "r1", "platform": "discord", "botId": "B1", "channel": "dev", "person": "alice",
             "timestamp": 1_700_000_000_000, "content": "build is red"},
            {"messageId": "r2", "platform": "discord", "botId": "B1", "channel": "dev", "person": "me",
             "timestamp": "2023-11-14T22:14:00Z", "content": "on it", "metadata": {"isSelf": True, "threadTs": "r1"}},
        ]
    }
    r = await client.post("/api/messages/raw", json=batch, headers=user["headers"])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["stored"] == 2 and body["count"] == 2 and body["storage"] in ("sqlite", "postgresql")
    assert (await client.post("/api/messages/raw", json=batch, headers=user["headers"])).json()["stored"] == 0
    listed = (await client.get("/api/messages", params={"platform": "discord"}, headers=user["headers"])).json()["messages"]
    own = {m["nativeId"]: m for m in listed}
    assert own["r2"]["isSelf"] and own["r2"]["threadId"] == "r1" and own["r1"]["person"] == "alice" and own["r1"]["chatId"] == "dev"
    bad = await client.post("/api/messages/raw", json={"messages": [batch["messages"][0], {"messageId": "x"}]}, headers=user["headers"])
    assert bad.status_code == 400 and "Line 2" in bad.json()["error"] and "platform" in bad.json()["cause"]
    assert (await client.post("/api/messages/raw", json={"messages": []}, headers=user["headers"])).status_code == 400


def test_cli_import(tmp_path) -> None:
    """`loomi import` in a fresh LOOMI_HOME (SQLite, embedded Redis): counts, then a re-import."""
    import os

    path = tmp_path / "h.jsonl"
    path.write_bytes(jsonl([line(i) for i in range(7)]))
    env = {**os.environ, "LOOMI_HOME": str(tmp_path / "home"), "LOOMI_LOG_LEVEL": "warning"}
    env.pop("LOOMI_DATABASE_URL", None)
    env.pop("LOOMI_REDIS_URL", None)
    run = lambda: subprocess.run([sys.executable, "-m", "loomi.cli", "import", str(path)], env=env, capture_output=True, text=True, timeout=120)  # noqa: E731
    first = run()
    assert first.returncode == 0, first.stderr
    assert orjson.loads(first.stdout.strip().splitlines()[-1])["imported"] == 7 and "stored: 7/7" in first.stderr
    second = run()
    assert orjson.loads(second.stdout.strip().splitlines()[-1])["skipped"] == 7
    path.write_bytes(jsonl([line(1)]) + b'{"platform": "slack"}\n')
    bad = run()
    assert bad.returncode == 1 and "line 2" in bad.stderr
