"""/api/workspace/skills/* through the real app on SQLite and PostgreSQL: CRUD, toggle, metadata
(seed curl 7 as written), uploads of a SKILL.md (the seed document itself) or a zip; zip slip and
zip bombs refused with nothing stored; other people's skills are 404."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from store.schema import skills
from tests.api.test_bad_input import assert_seed_400
from tests.conftest import register

SEED = Path("/work/shared/seed/000_c12e6ea94e6211f8.txt")
MD = "---\nname: summarize\ndescription: Summarize a chat\nversion: 1.2.0\ntags: [chat, notes]\n---\n# Summarize\n\nRead the chat, write five bullets.\n"


def make_zip(entries: dict[str, bytes], *, links: dict[str, str] | None = None, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return buffer.getvalue()


async def upload(client: httpx.AsyncClient, user: dict[str, Any], name: str, data: bytes, ctype: str = "application/zip") -> httpx.Response:
    return await client.post("/api/workspace/skills/upload", files={"file": (name, data, ctype)}, headers=user["headers"])


async def count(hub: Any, user: dict[str, Any]) -> int:
    async with hub.engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).select_from(skills).where(skills.c.user_id == user["user"]["id"]))).scalar_one()


def skill_files(hub: Any, user: dict[str, Any]) -> list[Path]:
    folder = Path(hub.settings.home) / "skills" / user["user"]["id"]
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


async def test_crud_toggle_and_metadata(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    h = user["headers"]
    assert (await client.get("/api/workspace/skills", headers=h)).json()["skills"] == []
    c = await client.post("/api/workspace/skills", json={"content": MD}, headers=h)
    assert c.status_code == 201, c.text
    s = c.json()["skill"]
    assert s["name"] == "summarize" and s["description"] == "Summarize a chat" and s["version"] == "1.2.0"
    assert s["metadata"] == {"version": "1.2.0", "tags": ["chat", "notes"]} and s["enabled"] is True and s["content"] == MD
    f = await client.post("/api/workspace/skills", json={"name": "triage", "description": "Sort the inbox", "content": "Do it.", "enabled": False}, headers=h)
    assert f.status_code == 201, f.text
    t = f.json()["skill"]
    assert t["content"].startswith("---\nname: triage\n") and t["content"].endswith("Do it.") and t["enabled"] is False

    listed = (await client.get("/api/workspace/skills", headers=h)).json()
    assert [x["name"] for x in listed["skills"]] == ["summarize", "triage"] and "content" not in listed["skills"][0]
    assert (await client.get(f"/api/workspace/skills/{s['id']}", headers=h)).json()["skill"]["content"] == MD

    u = await client.put(f"/api/workspace/skills/{s['id']}", json={"description": "Shorter", "enabled": False}, headers=h)
    assert u.status_code == 200 and u.json()["skill"]["description"] == "Shorter" and u.json()["skill"]["enabled"] is False
    tg = await client.post("/api/workspace/skills/toggle", json={"skillId": s["id"]}, headers=h)
    assert tg.json()["skill"]["enabled"] is True
    tg = await client.post("/api/workspace/skills/toggle", json={"skillId": s["id"], "enabled": True}, headers=h)
    assert tg.json()["skill"]["enabled"] is True

    meta = (await client.get("/api/workspace/skills/metadata", headers=h)).json()
    assert meta["total"] == 2 and meta["enabled"] == 1
    assert {m["name"]: m["enabled"] for m in meta["skills"]} == {"summarize": True, "triage": False}
    assert all("content" not in m for m in meta["skills"])
    one = (await client.get("/api/workspace/skills/metadata", params={"skillId": t["id"]}, headers=h)).json()
    assert [m["id"] for m in one["skills"]] == [t["id"]]

    dup = await client.post("/api/workspace/skills", json={"name": "triage", "description": "again"}, headers=h)
    assert dup.status_code == 409 and dup.json()["code"] == "skill_exists"
    rename = await client.put(f"/api/workspace/skills/{s['id']}", json={"name": "triage"}, headers=h)
    assert rename.status_code == 409
    assert (await client.delete(f"/api/workspace/skills/{t['id']}", headers=h)).json() == {"success": True, "deleted": t["id"]}
    assert (await client.get(f"/api/workspace/skills/{t['id']}", headers=h)).status_code == 404
    assert await count(hub, user) == 1


async def test_seed_curl_7_as_written(server: Any, user: dict[str, Any]) -> None:
    """`curl http://localhost:3414/api/workspace/skills -H "Authorization: Bearer $TOKEN"`, then metadata."""
    import asyncio

    for path in ("/api/workspace/skills", "/api/workspace/skills/metadata"):
        proc = await asyncio.create_subprocess_exec(
            "curl", "-s", "-w", "\n%{http_code}", f"{server.url}{path}", "-H", f"Authorization: Bearer {user['token']}",
            stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        body, status = out.decode().rsplit("\n", 1)
        assert status == "200" and '"skills":[]' in body


async def test_upload_the_seed_document_itself(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    r = await upload(client, user, "SKILL.md", SEED.read_bytes(), "text/markdown")
    assert r.status_code == 201, r.text
    s = r.json()["skill"]
    assert s["name"] == "openloomi-api" and s["description"].startswith("openloomi API documentation") and s["version"] == "0.5.1"
    assert s["content"] == SEED.read_text() and s["source"] == "upload"


async def test_upload_a_zip_with_files(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    data = make_zip({"my-skill/SKILL.md": MD.encode(), "my-skill/scripts/run.py": b"print('hi')\n", "my-skill/README.txt": b"readme"})
    r = await upload(client, user, "skill.zip", data)
    assert r.status_code == 201, r.text
    s = r.json()["skill"]
    assert s["name"] == "summarize" and s["files"] == ["README.txt", "scripts/run.py"]
    folder = Path(hub.settings.home) / "skills" / user["user"]["id"] / s["id"]
    assert (folder / "scripts" / "run.py").read_bytes() == b"print('hi')\n"
    await client.delete(f"/api/workspace/skills/{s['id']}", headers=user["headers"])
    assert not folder.exists()


def _bomb_ratio() -> bytes:
    return make_zip({"SKILL.md": MD.encode(), "zeros.bin": b"\0" * (5 << 20)})


def _bomb_count() -> bytes:
    return make_zip({"SKILL.md": MD.encode(), **{f"f{i}.txt": b"x" for i in range(250)}})


def _bomb_total() -> bytes:
    """25 MiB unpacked in ~7 MiB (under the upload limit), each entry only ~4:1: the total limit."""
    import os

    table = bytes(b"abcd"[b & 3] for b in range(256))
    return make_zip({"SKILL.md": MD.encode(), **{f"r{i}.txt": os.urandom(1 << 20).translate(table) for i in range(25)}})


BAD_UPLOADS = [
    ("zip_slip", make_zip({"SKILL.md": MD.encode(), "../evil.txt": b"x"})),
    ("zip_slip", make_zip({"SKILL.md": MD.encode(), "a/../../evil.txt": b"x"})),
    ("zip_slip", make_zip({"SKILL.md": MD.encode(), "/etc/cron.d/evil": b"x"})),
    ("zip_slip", make_zip({"SKILL.md": MD.encode(), "..\\evil.txt": b"x"})),
    ("zip_slip", make_zip({"SKILL.md": MD.encode(), "C:/evil.txt": b"x"})),
    ("zip_slip", make_zip({"SKILL.md": MD.encode()}, links={"escape": "/etc/passwd"})),
    ("zip_bomb", _bomb_ratio()),
    ("zip_bomb", _bomb_count()),
    ("zip_bomb", _bomb_total()),
    ("missing_skill_md", make_zip({"README.md": b"no skill here"})),
    ("missing_skill_md", make_zip({"a/SKILL.md": MD.encode(), "b/x.txt": b"x"})),
    ("invalid_zip", b"PK\x03\x04 this is not really a zip"),
    ("invalid_front_matter", make_zip({"SKILL.md": b"# just a heading\n"})),
    ("invalid_front_matter", make_zip({"SKILL.md": b"---\nname: [unclosed\n---\n"})),
    ("invalid_name", make_zip({"SKILL.md": b"---\nname: ../../etc\ndescription: d\n---\n"})),
]


@pytest.mark.parametrize(("code", "data"), BAD_UPLOADS, ids=[f"{c}-{i}" for i, (c, _) in enumerate(BAD_UPLOADS)])
async def test_bad_zips_are_refused_and_store_nothing(hub: Any, client: httpx.AsyncClient, user: dict[str, Any], code: str, data: bytes) -> None:
    r = await upload(client, user, "skill.zip", data)
    body = assert_seed_400(r)
    assert body["code"] == code, body
    assert await count(hub, user) == 0 and skill_files(hub, user) == []
    assert not (Path(hub.settings.home).parent / "evil.txt").exists()


@pytest.mark.parametrize(
    ("path", "kwargs"),
    [
        ("/api/workspace/skills", {"json": {}}),
        ("/api/workspace/skills", {"json": {"name": "x"}}),
        ("/api/workspace/skills", {"json": {"name": "../x", "description": "d"}}),
        ("/api/workspace/skills", {"json": {"name": "x", "description": "d\x00"}}),
        ("/api/workspace/skills", {"json": {"content": "no front matter"}}),
        ("/api/workspace/skills", {"json": {"content": "---\nname: x\n---\nmissing description"}}),
        ("/api/workspace/skills", {"json": {"content": "---\n!!python/object:os.system ls\n---\n"}}),
        ("/api/workspace/skills", {"json": {"name": "x", "description": "d", "enabled": "sure"}}),
        ("/api/workspace/skills/upload", {"json": {"file": "x"}}),
        ("/api/workspace/skills/upload", {"files": {"nope": ("a.md", MD.encode(), "text/markdown")}}),
        ("/api/workspace/skills/upload", {"files": {"file": ("a.md", b"\xff\xfe\x00bad", "text/markdown")}}),
        ("/api/workspace/skills/toggle", {"json": {}}),
        ("/api/workspace/skills/toggle", {"json": {"skillId": "x", "enabled": "maybe"}}),
    ],
)
async def test_bad_input_is_400_and_stores_nothing(hub: Any, client: httpx.AsyncClient, user: dict[str, Any], path: str, kwargs: dict[str, Any]) -> None:
    assert_seed_400(await client.post(path, headers=user["headers"], **kwargs))
    assert await count(hub, user) == 0


async def test_bad_updates_change_nothing(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    h = user["headers"]
    s = (await client.post("/api/workspace/skills", json={"content": MD}, headers=h)).json()["skill"]
    for body in ({}, {"name": "bad/name"}, {"content": "---\nname: [\n---\n"}, {"enabled": "maybe"}):
        assert_seed_400(await client.put(f"/api/workspace/skills/{s['id']}", json=body, headers=h))
    assert (await client.get(f"/api/workspace/skills/{s['id']}", headers=h)).json()["skill"] == s


async def test_other_peoples_skills_are_404(hub: Any, client: httpx.AsyncClient, user: dict[str, Any]) -> None:
    s = (await client.post("/api/workspace/skills", json={"content": MD}, headers=user["headers"])).json()["skill"]
    other = await register(client)
    o = other["headers"]
    assert (await client.get("/api/workspace/skills", headers=o)).json()["skills"] == []
    assert (await client.get("/api/workspace/skills/metadata", headers=o)).json()["skills"] == []
    for method, path, kwargs in (("GET", f"/api/workspace/skills/{s['id']}", {}), ("PUT", f"/api/workspace/skills/{s['id']}", {"json": {"enabled": False}}),
                                 ("DELETE", f"/api/workspace/skills/{s['id']}", {}), ("POST", "/api/workspace/skills/toggle", {"json": {"skillId": s["id"]}}),
                                 ("GET", f"/api/workspace/skills/metadata?skillId={s['id']}", {})):
        r = await client.request(method, path, headers=o, **kwargs)
        assert r.status_code == 404 and r.json()["code"] == "skill_not_found", (method, path)
    # the same name is free for someone else
    assert (await client.post("/api/workspace/skills", json={"content": MD}, headers=o)).status_code == 201
    assert (await client.get(f"/api/workspace/skills/{s['id']}", headers=user["headers"])).json()["skill"] == s
    assert (await client.get("/api/workspace/skills")).status_code == 401
