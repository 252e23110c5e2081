"""/api/workspace files through the real app on SQLite and PostgreSQL: write, read, list, preview
and delete inside the person's workspace; every hostile path (a table, sent byte for byte) and
every symlink is a 400 that reads, writes and deletes nothing; other people's workspaces are
never reachable."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.test_bad_input import assert_seed_400
from tests.conftest import register
from tests.workspace.rawhttp import raw_request

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def ws_root(hub: Any, user: dict[str, Any]) -> Path:
    return Path(hub.settings.home) / "workspace" / user["user"]["id"]


async def test_put_get_list_preview_delete(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    h = user["headers"]
    r = await client.put("/api/workspace/file/notes/today.md", content=b"# Plan\n\n- ship\n<script>x</script>", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["file"]["path"] == "notes/today.md" and r.json()["file"]["kind"] == "markdown"
    j = await client.put("/api/workspace/file/artifacts/report.txt", json={"content": "done"}, headers=h)
    assert j.status_code == 200
    b = await client.put("/api/workspace/file/artifacts/dot.png", json={"content": base64.b64encode(PNG).decode(), "encoding": "base64"}, headers=h)
    assert b.status_code == 200
    assert (ws_root(hub, user) / "artifacts" / "dot.png").read_bytes() == PNG

    got = await client.get("/api/workspace/file/notes/today.md", headers=h)
    assert got.status_code == 200 and got.content.startswith(b"# Plan") and got.headers["content-type"].startswith("text/markdown")
    assert got.headers["content-security-policy"] == "sandbox" and got.headers["x-content-type-options"] == "nosniff"

    files = (await client.get("/api/workspace/files", headers=h)).json()
    assert [f["path"] for f in files["files"]] == ["artifacts/dot.png", "artifacts/report.txt", "notes/today.md"]
    assert (await client.get("/api/workspace/files", params={"dir": "notes"}, headers=h)).json()["total"] == 1
    assert (await client.get("/api/workspace/files", params={"dir": "missing"}, headers=h)).json()["files"] == []
    arts = (await client.get("/api/workspace/artifacts", headers=h)).json()
    assert [a["path"] for a in arts["artifacts"]] == ["artifacts/dot.png", "artifacts/report.txt"]
    assert arts["artifacts"][0]["kind"] == "image" and arts["artifacts"][1]["size"] == 4

    md = (await client.get("/api/workspace/preview", params={"path": "notes/today.md"}, headers=h)).json()["preview"]
    assert md["kind"] == "markdown" and "<h1>Plan</h1>" in md["html"] and "<script>" not in md["html"]  # raw HTML escaped
    txt = (await client.get("/api/workspace/preview", params={"path": "artifacts/report.txt"}, headers=h)).json()["preview"]
    assert txt["kind"] == "text" and txt["text"] == "done" and txt["truncated"] is False
    img = (await client.get("/api/workspace/preview", params={"path": "artifacts/dot.png"}, headers=h)).json()["preview"]
    assert img["kind"] == "image" and base64.b64decode(img["dataUrl"].split(",", 1)[1]) == PNG

    d = await client.delete("/api/workspace/file/notes/today.md", headers=h)
    assert d.status_code == 200 and not (ws_root(hub, user) / "notes" / "today.md").exists()
    assert (await client.get("/api/workspace/file/notes/today.md", headers=h)).status_code == 404
    assert (await client.delete("/api/workspace/file/notes/today.md", headers=h)).status_code == 404
    assert (await client.delete("/api/workspace/file/notes", headers=h)).status_code == 200  # an empty folder
    assert (await client.delete("/api/workspace/file/artifacts", headers=h)).status_code == 400  # not empty


async def test_large_text_preview_is_truncated(client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    await client.put("/api/workspace/file/big.txt", content=b"a" * 900_000, headers=user["headers"])
    p = (await client.get("/api/workspace/preview", params={"path": "big.txt"}, headers=user["headers"])).json()["preview"]
    assert p["truncated"] is True and len(p["text"]) == 20_000 and p["size"] == 900_000


HOSTILE = [
    b"/api/workspace/file/../../etc/passwd",
    b"/api/workspace/file/a/../../../secret.txt",
    b"/api/workspace/file/..",
    b"/api/workspace/file/../secret.txt",
    b"/api/workspace/file/./a.txt",
    b"/api/workspace/file/a//b",
    b"/api/workspace/file//etc/passwd",
    b"/api/workspace/file/%2fetc%2fpasswd",
    b"/api/workspace/file/..%2f..%2fsecret.txt",
    b"/api/workspace/file/..%2F..%2Fsecret.txt",
    b"/api/workspace/file/..%5c..%5csecret.txt",
    b"/api/workspace/file/%2e%2e/%2e%2e/secret.txt",
    b"/api/workspace/file/%252e%252e%252fsecret.txt",
    b"/api/workspace/file/..%252f..%252fsecret.txt",
    b"/api/workspace/file/%25252e%25252e",
    b"/api/workspace/file/a%00.txt",
    b"/api/workspace/file/a%2500.txt",
    b"/api/workspace/file/C:/Windows/win.ini",
    b"/api/workspace/file/a%5cb",
    b"/api/workspace/file/",
    b"/api/workspace/file/a%0a.txt",
]
UNROUTED = {b"/api/workspace/file/a%0a.txt"}  # Starlette's `path` convertor stops at a newline: the router's 404


@pytest.mark.parametrize("raw", HOSTILE, ids=[p.decode()[20:] or "empty" for p in HOSTILE])
async def test_hostile_paths_are_400_and_touch_nothing(hub: Any, server: Any, user: dict[str, Any], raw: bytes) -> None:
    home = Path(hub.settings.home)
    secret = home / "secret.txt"
    secret.write_text("do not touch")
    auth = {"Authorization": user["headers"]["Authorization"]}
    for method, body in (("GET", b""), ("PUT", b"overwritten"), ("DELETE", b"")):
        status, text = await raw_request(server.port, method, raw, auth, body)
        assert status == (404 if raw in UNROUTED else 400), (method, raw, status, text)
        if text.startswith(b"{"):
            assert b'"error"' in text and b'"code"' in text
    assert secret.read_text() == "do not touch"
    root = ws_root(hub, user)
    assert not root.exists() or [p for p in root.rglob("*") if p.is_file()] == []


async def test_symlinks_are_never_followed(hub: Any, client: httpx.AsyncClient, user: dict[str, Any], tmp_path: Path) -> None:
    h = user["headers"]
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sentinel.txt").write_text("outside")
    await client.put("/api/workspace/file/inside.txt", content=b"in", headers=h)
    root = ws_root(hub, user)
    os.symlink(outside, root / "out")  # a folder link leading out
    os.symlink(outside / "sentinel.txt", root / "link.txt")  # a file link leading out
    os.symlink("inside.txt", root / "same.txt")  # even one that stays inside is not followed
    for path in ("out/sentinel.txt", "link.txt", "same.txt"):
        for method, kwargs in (("GET", {}), ("PUT", {"content": b"x"}), ("DELETE", {})):
            r = await client.request(method, f"/api/workspace/file/{path}", headers=h, **kwargs)
            assert_seed_400(r)
            assert r.json()["code"] == "unsafe_path"
        assert_seed_400(await client.get("/api/workspace/preview", params={"path": path}, headers=h))
    assert_seed_400(await client.put("/api/workspace/file/out/new.txt", content=b"x", headers=h))
    assert sorted(p.name for p in outside.iterdir()) == ["sentinel.txt"] and (outside / "sentinel.txt").read_text() == "outside"
    assert os.path.islink(root / "link.txt") and os.path.islink(root / "out")
    listed = [f["path"] for f in (await client.get("/api/workspace/files", headers=h)).json()["files"]]
    assert listed == ["inside.txt"]  # links are not listed either
    assert_seed_400(await client.get("/api/workspace/files", params={"dir": "out"}, headers=h))


@pytest.mark.parametrize("path", ["../x", "/etc/passwd", "a\\..\\b", "a/../b", "a%2fb", "a\x00b", ""])
async def test_hostile_query_paths_are_400(client: httpx.AsyncClient, user: dict[str, Any], path: str) -> None:
    assert_seed_400(await client.get("/api/workspace/preview", params={"path": path}, headers=user["headers"]))
    if path:
        assert_seed_400(await client.get("/api/workspace/files", params={"dir": path}, headers=user["headers"]))


async def test_bad_put_bodies_store_nothing(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    h = {**user["headers"], "content-type": "application/json"}
    for body in (b"{bad", b"[1]", b'{"content": 5}', b'{"content": "!!", "encoding": "base64"}', b'{"content": "a", "encoding": "rot13"}'):
        assert_seed_400(await client.put("/api/workspace/file/a.txt", content=body, headers=h))
    assert not (ws_root(hub, user) / "a.txt").exists()
    big = await client.put("/api/workspace/file/a.txt", content=b"x" * (2 << 20), headers=user["headers"])
    assert big.status_code == 413 and not (ws_root(hub, user) / "a.txt").exists()


async def test_quota_counts_the_workspace(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    old = hub.settings.user_quota_bytes
    hub.settings.user_quota_bytes = 100  # LOOMI_USER_QUOTA_BYTES on the session hub, restored below
    try:
        assert (await client.put("/api/workspace/file/a.txt", content=b"x" * 80, headers=user["headers"])).status_code == 200
        r = await client.put("/api/workspace/file/b.txt", content=b"x" * 21, headers=user["headers"])
        assert r.status_code == 413 and r.json()["code"] == "quota_exceeded" and not (ws_root(hub, user) / "b.txt").exists()
    finally:
        hub.settings.user_quota_bytes = old


async def test_other_peoples_workspaces_are_unreachable(hub: Any, server: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    await client.put("/api/workspace/file/private.txt", content=b"mine", headers=user["headers"])
    other = await register(client)
    o = other["headers"]
    assert (await client.get("/api/workspace/file/private.txt", headers=o)).status_code == 404
    assert (await client.delete("/api/workspace/file/private.txt", headers=o)).status_code == 404
    assert (await client.get("/api/workspace/files", headers=o)).json()["files"] == []
    uid = user["user"]["id"]
    status, _ = await raw_request(server.port, "GET", f"/api/workspace/file/../{uid}/private.txt".encode(), o)
    assert status == 400
    assert (ws_root(hub, user) / "private.txt").read_bytes() == b"mine"
    for method, path in (("GET", "/api/workspace/files"), ("GET", "/api/workspace/artifacts"), ("GET", "/api/workspace/file/a"),
                         ("PUT", "/api/workspace/file/a"), ("GET", "/api/workspace/preview?path=a")):
        assert (await client.request(method, path)).status_code == 401
