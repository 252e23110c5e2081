"""Uploads keep content and record apart, within per-file and per-user limits; registration is a
setting (issue 7, item 11). Each test runs its own hub (tests/e2e/harness.py) with the settings
it needs, on both databases."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import AsyncIterator

import orjson
import pytest

from config.settings import load_settings
from store.schema import users
from tests.e2e.harness import ROOT, RunningHub, e2e_env, fresh_database, running_hub


@pytest.fixture
async def limited(backend: str, tmp_path: Path) -> AsyncIterator[RunningHub]:
    async with fresh_database(backend, tmp_path) as db:
        env = e2e_env(backend, tmp_path, db, LOOMI_UPLOAD_MAX_BYTES="1000", LOOMI_USER_QUOTA_BYTES="2500")
        async with running_hub(env, worker=False, flush=False) as site:
            yield site


async def upload(site: RunningHub, headers: dict, name: str, content: bytes):
    return await site.client.post("/api/ai/v1/upload", headers=headers, files={"file": (name, content, "application/json")})


async def test_a_file_named_file_json_keeps_its_content(limited: RunningHub) -> None:
    headers = await limited.login()
    content = b'{"mine": "the uploaded bytes"}'
    r = await upload(limited, headers, "file.json", content)
    assert r.status_code == 200, r.text
    item = r.json()
    assert item["filename"] == "file.json" and item["bytes"] == len(content)
    folder = Path(limited.hub.settings.home) / "ai-uploads" / (await limited.client.get("/api/remote-auth/user", headers=headers)).json()["id"]
    assert (folder / item["id"]).read_bytes() == content  # content named by its id
    record = orjson.loads((folder / f"{item['id']}.json").read_bytes())
    assert record["id"] == item["id"] and record["filename"] == "file.json"
    assert sorted(p.name for p in folder.iterdir()) == sorted([item["id"], f"{item['id']}.json"])


async def test_per_file_limit_and_per_user_quota(limited: RunningHub) -> None:
    alice, bob = await limited.login(), await limited.login()
    r = await upload(limited, alice, "big.bin", b"x" * 1001)
    assert r.status_code == 413 and r.json()["error"]["code"] == "file_too_large"
    assert "LOOMI_UPLOAD_MAX_BYTES" in r.json()["error"]["message"]
    r = await upload(limited, alice, "huge.bin", b"x" * (3 << 20))  # past the route's body limit: refused unread
    assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
    for _ in range(2):
        assert (await upload(limited, alice, "ok.bin", b"x" * 1000)).status_code == 200
    r = await upload(limited, alice, "third.bin", b"x" * 1000)  # 3000 > 2500
    assert r.status_code == 413 and r.json()["error"]["code"] == "quota_exceeded"
    assert (await upload(limited, alice, "small.bin", b"x" * 500)).status_code == 200  # exactly 2500 fits
    assert (await upload(limited, bob, "bob.bin", b"x" * 1000)).status_code == 200  # a quota is per user
    home = Path(limited.hub.settings.home) / "ai-uploads"
    sizes = {d.name: sum(f.stat().st_size for f in d.iterdir() if not f.name.endswith(".json")) for d in home.iterdir()}
    assert sorted(sizes.values()) == [1000, 2500]  # refused uploads left nothing behind


def test_registration_setting_and_its_default() -> None:
    assert load_settings({}).registration_policy == "open"  # a laptop hub on 127.0.0.1: only this machine reaches it
    assert load_settings({"LOOMI_HOST": "0.0.0.0"}).registration_policy == "invite"  # published: closed by default
    assert load_settings({"LOOMI_PUBLIC_URL": "https://hub.example.org"}).registration_policy == "invite"
    assert load_settings({"LOOMI_HOST": "0.0.0.0", "LOOMI_REGISTRATION": "open"}).registration_policy == "open"
    assert load_settings({"LOOMI_REGISTRATION": "owner-only"}).registration_policy == "owner-only"


@pytest.mark.parametrize("policy", ["owner-only", "invite"])
async def test_closed_registration(backend: str, tmp_path: Path, policy: str) -> None:
    async with fresh_database(backend, tmp_path) as db:
        env = e2e_env(backend, tmp_path, db, LOOMI_REGISTRATION=policy)
        async with running_hub(env, worker=False, flush=False) as site:
            body = {"email": f"stranger{secrets.token_hex(4)}@example.com", "password": "a long password"}
            r = await site.client.post("/api/remote-auth/register", json=body)
            assert r.status_code == 403
            assert r.json()["code"] == ("registration_closed" if policy == "owner-only" else "invite_required")
            r = await site.client.post("/api/remote-auth/register", json={**body, "inviteCode": "made-up"})
            assert r.status_code == 403
            async with site.hub.engine.connect() as conn:  # nothing was created
                assert (await conn.execute(users.select().where(users.c.email == body["email"]))).first() is None


async def test_invite_codes_from_the_cli_and_the_owner(backend: str, tmp_path: Path) -> None:
    async with fresh_database(backend, tmp_path) as db:
        env = e2e_env(backend, tmp_path, db, LOOMI_REGISTRATION="invite")
        # `loomi invite` prints a code (the same database, as a person would run it next to the hub)
        out = subprocess.run(
            [sys.executable, "-m", "loomi.cli", "invite"], cwd=ROOT, env={**env, "PATH": os.environ["PATH"]},
            capture_output=True, text=True, timeout=60,
        )
        assert out.returncode == 0, out.stderr
        code = out.stdout.strip()
        assert len(code) >= 16
        async with running_hub(env, worker=False, flush=False) as site:
            body = {"email": f"friend{secrets.token_hex(4)}@example.com", "password": "a long password", "inviteCode": code}
            r = await site.client.post("/api/remote-auth/register", json=body)
            assert r.status_code == 201, r.text
            r = await site.client.post("/api/remote-auth/register", json={**body, "email": f"x{body['email']}"})
            assert r.status_code == 403 and r.json()["code"] == "invalid_invite"  # single use
            friend = {"Authorization": f"Bearer {(await site.client.post('/api/remote-auth/login', json=body)).json()['token']}"}
            site.client.cookies.clear()
            r = await site.client.post("/api/remote-auth/invites", json={}, headers=friend)
            assert r.status_code == 403  # only the owner invites
            from loomi.owner import ensure_token_file

            owner_token = await ensure_token_file(site.hub)
            r = await site.client.post("/api/remote-auth/invites", json={"days": 1}, headers={"Authorization": f"Bearer {owner_token}"})
            assert r.status_code == 201, r.text
            again = {**body, "email": f"y{body['email']}", "inviteCode": r.json()["code"]}
            assert (await site.client.post("/api/remote-auth/register", json=again)).status_code == 201
