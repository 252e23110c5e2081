"""/api/files/* through the real app on SQLite and PostgreSQL: bytes named by id under the files
folder, size and quota limits, other people's files never visible, bad input stores nothing,
and the person's insights exported as JSON or Markdown (downloaded, or saved as a file)."""

from __future__ import annotations

import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

from api.routes.files import files_root
from store.schema import files as files_table
from tests.api.test_bad_input import assert_seed_400
from tests.conftest import register
from tests.insights.test_brief import insert_insight


def stored(hub: Any, user: dict[str, Any]) -> list[Path]:
    folder = files_root(hub) / user["user"]["id"]
    return sorted(p for p in folder.iterdir()) if folder.exists() else []


async def rows(hub: Any, user: dict[str, Any]) -> int:
    async with hub.engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(files_table)
                                   .where(files_table.c.user_id == user["user"]["id"]))).scalar_one()


async def test_upload_list_get_delete(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    data = os.urandom(5000)
    r = await client.post("/api/files/upload", files={"file": ("../../etc/passwd", data, "application/x-thing")}, headers=user["headers"])
    assert r.status_code == 200, r.text
    f = r.json()["file"]
    assert f["name"] == "passwd" and f["size"] == 5000 and f["sha256"] == hashlib.sha256(data).hexdigest()
    assert f["source"] == "upload" and f["contentType"] == "application/x-thing" and f["id"].startswith("file_")
    # named by id, never by the uploaded name
    assert [p.name for p in stored(hub, user)] == [f["id"]]
    assert (files_root(hub) / user["user"]["id"] / f["id"]).read_bytes() == data

    listed = (await client.get("/api/files/list", headers=user["headers"])).json()
    assert [x["id"] for x in listed["files"]] == [f["id"]] and listed["total"] == 1

    got = await client.get(f"/api/files/{f['id']}", headers=user["headers"])
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-type"].startswith("application/x-thing")
    assert "attachment" in got.headers["content-disposition"] and got.headers["x-content-type-options"] == "nosniff"
    meta = (await client.get(f"/api/files/{f['id']}", params={"meta": "true"}, headers=user["headers"])).json()
    assert meta["file"] == f

    d = await client.delete(f"/api/files/{f['id']}", headers=user["headers"])
    assert d.status_code == 200 and d.json() == {"success": True, "deleted": f["id"]}
    assert stored(hub, user) == [] and await rows(hub, user) == 0
    assert (await client.get(f"/api/files/{f['id']}", headers=user["headers"])).status_code == 404
    assert (await client.delete(f"/api/files/{f['id']}", headers=user["headers"])).status_code == 404


async def test_save_text_and_base64_then_usage(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    a = await client.post("/api/files/save", json={"name": "notes.md", "content": "# Hi\n", "contentType": "text/markdown"}, headers=user["headers"])
    assert a.status_code == 200, a.text
    blob = bytes(range(256))
    b = await client.post("/api/files/save", json={"name": "blob.bin", "content": base64.b64encode(blob).decode(), "encoding": "base64",
                                                   "contentType": "application/octet-stream"}, headers=user["headers"])
    assert b.status_code == 200, b.text
    assert (await client.get(f"/api/files/{b.json()['file']['id']}", headers=user["headers"])).content == blob
    assert (await client.get(f"/api/files/{a.json()['file']['id']}", headers=user["headers"])).content == b"# Hi\n"
    u = (await client.get("/api/files/usage", headers=user["headers"])).json()
    assert u["usedBytes"] == 5 + 256 and u["fileCount"] == 2 and u["bySource"] == {"save": {"files": 2, "bytes": 261}}
    assert u["quotaBytes"] == hub.settings.user_quota_bytes and u["maxFileBytes"] == hub.settings.upload_max_bytes
    listed = (await client.get("/api/files/list", params={"limit": 1}, headers=user["headers"])).json()
    assert listed["total"] == 2 and len(listed["files"]) == 1 and listed["files"][0]["name"] == "blob.bin"  # newest first


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("/api/files/save", {"json": {"name": "x"}}),
        ("/api/files/save", {"json": {"name": "", "content": "a"}}),
        ("/api/files/save", {"json": {"name": "x", "content": ""}}),
        ("/api/files/save", {"json": {"name": "x", "content": "!!!", "encoding": "base64"}}),
        ("/api/files/save", {"json": {"name": "x", "content": "a", "encoding": "rot13"}}),
        ("/api/files/save", {"json": {"name": "x\x00y", "content": "a"}}),
        ("/api/files/save", {"content": b"{not json", "headers": {"content-type": "application/json"}}),
        ("/api/files/upload", {"json": {"file": "x"}}),
        ("/api/files/upload", {"files": {"other": ("a.txt", b"abc", "text/plain")}}),
        ("/api/files/upload", {"files": {"file": ("a.txt", b"", "text/plain")}}),
        ("/api/files/upload", {"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data; boundary=x"}}),
    ],
)
async def test_bad_input_is_400_and_stores_nothing(hub: Any, client: httpx.AsyncClient, user: dict[str, Any], path: str, kwargs: dict[str, Any]) -> None:
    headers = {**user["headers"], **kwargs.pop("headers", {})}
    assert_seed_400(await client.post(path, headers=headers, **kwargs))
    assert stored(hub, user) == [] and await rows(hub, user) == 0


@pytest.mark.parametrize("query", [{"limit": "0"}, {"limit": "1000"}, {"offset": "-1"}, {"source": "nope"}, {"offset": str(10**30)}])
async def test_bad_list_query_is_400(client: httpx.AsyncClient, user: dict[str, Any], query: dict[str, str]) -> None:
    assert_seed_400(await client.get("/api/files/list", params=query, headers=user["headers"]))


async def test_size_limit_and_quota_are_413_and_store_nothing(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    settings = hub.settings
    old = settings.upload_max_bytes, settings.user_quota_bytes
    settings.upload_max_bytes, settings.user_quota_bytes = 1000, 1500  # the session hub's settings, restored below
    try:
        big = await client.post("/api/files/upload", files={"file": ("a.bin", b"x" * 1001, "application/octet-stream")}, headers=user["headers"])
        assert big.status_code == 413 and big.json()["code"] == "file_too_large" and "LOOMI_UPLOAD_MAX_BYTES" in big.json()["cause"]
        ok = await client.post("/api/files/upload", files={"file": ("a.bin", b"x" * 1000, "application/octet-stream")}, headers=user["headers"])
        assert ok.status_code == 200
        over = await client.post("/api/files/save", json={"name": "b", "content": "y" * 501}, headers=user["headers"])
        assert over.status_code == 413 and over.json()["code"] == "quota_exceeded" and "LOOMI_USER_QUOTA_BYTES" in over.json()["cause"]
        fits = await client.post("/api/files/save", json={"name": "b", "content": "y" * 500}, headers=user["headers"])
        assert fits.status_code == 200
        assert len(stored(hub, user)) == 2 and await rows(hub, user) == 2
        # a delete frees the room at once
        await client.delete(f"/api/files/{ok.json()['file']['id']}", headers=user["headers"])
        again = await client.post("/api/files/save", json={"name": "c", "content": "z" * 900}, headers=user["headers"])
        assert again.status_code == 200
    finally:
        settings.upload_max_bytes, settings.user_quota_bytes = old


async def test_other_peoples_files_are_404(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    mine = (await client.post("/api/files/save", json={"name": "secret.txt", "content": "mine"}, headers=user["headers"])).json()["file"]
    other = await register(client)
    for method in ("GET", "DELETE"):
        r = await client.request(method, f"/api/files/{mine['id']}", headers=other["headers"])
        assert r.status_code == 404 and r.json()["code"] == "file_not_found"
    assert (await client.get("/api/files/list", headers=other["headers"])).json()["files"] == []
    assert (await client.get("/api/files/usage", headers=other["headers"])).json()["usedBytes"] == 0
    assert (await client.get(f"/api/files/{mine['id']}", headers=user["headers"])).content == b"mine"  # still there
    for weird in ("file_../x", "..", "file_%2e%2e"):
        assert (await client.get(f"/api/files/{weird}", headers=user["headers"])).status_code in (400, 404)
    assert (await client.get("/api/files/list")).status_code == 401


async def test_insights_download_json_and_markdown_and_save(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    uid = user["user"]["id"]
    await insert_insight(hub, uid, title="Ship <b>v2</b>", description="Bob asks for the release", importance="high",
                         my_tasks=[{"text": "Send the build", "sourceMessageIds": [], "due": None}], chat_name="Team")
    await insert_insight(hub, uid, title="Lunch", description="Friday")
    other = await register(client)
    await insert_insight(hub, other["user"]["id"], title="Not yours")

    j = await client.get("/api/files/insights/download", params={"format": "json"}, headers=user["headers"])
    assert j.status_code == 200 and j.headers["content-type"] == "application/json"
    assert "attachment" in j.headers["content-disposition"] and ".json" in j.headers["content-disposition"]
    data = orjson.loads(j.content)
    assert data["count"] == 2 and sorted(i["title"] for i in data["insights"]) == ["Lunch", "Ship <b>v2</b>"]
    listed = (await client.get("/api/insights", headers=user["headers"])).json()["insights"]
    assert sorted(data["insights"], key=lambda i: i["id"]) == sorted(listed, key=lambda i: i["id"])  # GET /api/insights' shape

    m = await client.get("/api/files/insights/download", params={"format": "md"}, headers=user["headers"])
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/markdown")
    text = m.text
    assert text.startswith("# Insights") and "## Ship &lt;b&gt;v2&lt;/b&gt;" in text and "- Send the build" in text
    assert "importance: high" in text and "Not yours" not in text and "<b>" not in text

    assert_seed_400(await client.get("/api/files/insights/download", params={"format": "pdf"}, headers=user["headers"]))

    s = await client.post("/api/files/insights/save", json={"format": "md"}, headers=user["headers"])
    assert s.status_code == 200, s.text
    f = s.json()["file"]
    assert f["source"] == "insights" and f["name"].endswith(".md") and f["contentType"].startswith("text/markdown")
    body = (await client.get(f"/api/files/{f['id']}", headers=user["headers"])).text
    assert "## Ship" in body and "Lunch" in body
    assert (await client.get("/api/files/list", params={"source": "insights"}, headers=user["headers"])).json()["total"] == 1
    assert (await client.get(f"/api/files/{f['id']}", headers=other["headers"])).status_code == 404


async def test_files_dir_setting_moves_the_bytes(hub: Any, client: httpx.AsyncClient, user: dict[str, Any], tmp_path: Path) -> None:
    old = hub.settings.files_dir
    hub.settings.files_dir = tmp_path / "elsewhere"  # LOOMI_FILES_DIR, set on the session hub and restored
    try:
        f = (await client.post("/api/files/save", json={"name": "a.txt", "content": "abc"}, headers=user["headers"])).json()["file"]
        assert (tmp_path / "elsewhere" / user["user"]["id"] / f["id"]).read_bytes() == b"abc"
        assert (await client.get(f"/api/files/{f['id']}", headers=user["headers"])).content == b"abc"
    finally:
        hub.settings.files_dir = old
