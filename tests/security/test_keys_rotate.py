"""`loomi keys rotate` while the hub runs: a Telegram listener keeps ingesting from its fake
while the command re-seals every credential in a subprocess; afterwards every ciphertext
carries the new key id, the old key can be dropped, and a second run finds nothing to do.

Sessions: tokens are signed with the secret too. Tokens signed by the old key stay valid
while the old key is listed in LOOMI_OLD_SECRET_KEYS, and stop working once it is dropped.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import stat
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from config.settings import load_settings
from loomi.hub import Hub
from loomi.keys import rotate
from store import accounts as account_store
from store.crypto import Vault
from store.db import migrate
from store.model import AccountSpec
from store.schema import accounts
from tests.e2e.harness import e2e_env, fresh_database, running_hub
from tests.fakes.telegram import FakeTelegram
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
BULK = 230  # accounts sealed with the old key besides the listening one: several batches


def kid(secret: str) -> str:
    return Vault(secret).current_kid


async def ciphertexts(hub: Hub) -> list[tuple[str, str]]:
    async with hub.engine.connect() as conn:
        return [tuple(r) for r in (await conn.execute(sa.select(accounts.c.id, accounts.c.credentials).where(accounts.c.credentials.is_not(None))))]


async def bulk_accounts(hub: Hub, user_id: str, n: int) -> None:
    """Accounts with credentials sealed by this hub's key, disabled so no listener starts for them."""
    async with hub.engine.begin() as conn:
        for i in range(n):
            row = await account_store.upsert_account(conn, hub.vault, user_id, "slack", AccountSpec(
                external_id=f"T{i:05d}", name=f"ws {i}", credentials={"token": f"xoxb-bulk-{i}-{secrets.token_hex(6)}"}))
            await conn.execute(accounts.update().where(accounts.c.id == row["id"]).values(enabled=False))


async def run_cli(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "loomi.cli", *args, cwd=ROOT, env={"PATH": os.environ["PATH"], **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 120)
    return proc.returncode or 0, out.decode()


async def test_rotate_while_a_listener_ingests(backend: str, tmp_path: Path) -> None:
    old, new = "old-" + secrets.token_hex(16), "new-" + secrets.token_hex(16)
    bot = "515151:AARotateTestTokenForTheLoopbackFake"
    async with FakeTelegram() as fake, fresh_database(backend, tmp_path) as database:
        fake.add_bot(bot, 515151, "rotate_bot")
        base = e2e_env(backend, tmp_path, database, LOOMI_TELEGRAM_BASE_URL=fake.base_url)
        async with running_hub({**base, "LOOMI_SECRET_KEY": old}) as rh:  # before: everything under the old key
            headers = await rh.login()
            r = await rh.client.post("/api/telegram/listener/init", json={"botToken": bot}, headers=headers)
            assert r.status_code == 200, r.text
            user_id = (await rh.client.get("/api/remote-auth/user", headers=headers)).json()["id"]
            await bulk_accounts(rh.hub, user_id, BULK)
            login_key = "loomi:login:" + secrets.token_urlsafe(8)
            sealed = rh.hub.vault.encrypt({"user_id": user_id, "platform": "telegram_user", "state": {"s": 1}}, bound_to=login_key)
            await rh.hub.redis.set(login_key, sealed, ex=500)
            first = fake.post_message(bot, 7, {"id": 7, "first_name": "Ann"}, "before the switch")
            await eventually(lambda: rh.at_least(headers, 1), what="the first message stored")
        assert {c.split(".")[0] for _, c in await ciphertexts(rh.hub)} == {kid(old)}

        # the operator's switch: the new key current, the old one listed; the hub restarts
        switched = {**base, "LOOMI_SECRET_KEY": new, "LOOMI_OLD_SECRET_KEYS": old}
        async with running_hub(switched, flush=False) as rh:
            assert (await rh.client.get("/api/messages", headers=headers)).status_code == 200  # old-key session still accepted
            sent = [first]
            rotating = asyncio.create_task(run_cli(switched, "keys", "rotate", "--batch", "20"))
            while not rotating.done():  # messages keep arriving during the rotation
                sent.append(fake.post_message(bot, 7, {"id": 7, "first_name": "Ann"}, f"during {len(sent)}"))
                await asyncio.sleep(0.05)
            code, out = rotating.result()
            assert code == 0, out
            assert f"accounts re-sealed: {BULK + 1}" in out and "sign-in flows re-sealed: 1" in out and "still under an old key: 0" in out, out
            sent.append(fake.post_message(bot, 7, {"id": 7, "first_name": "Ann"}, "after the rotation"))
            got = await eventually(lambda: rh.at_least(headers, len(sent)), what="every message stored", timeout=60)
            assert sorted(int(m["nativeId"]) for m in got) == sorted(sent)  # each once, none lost
            assert len(sent) >= 3
            assert {c.split(".")[0] for _, c in await ciphertexts(rh.hub)} == {kid(new)}
            assert (await rh.hub.redis.get(login_key)).decode().startswith(kid(new) + ".")
            assert 0 < await rh.hub.redis.ttl(login_key) <= 500  # the flow keeps its expiry
            again = await rotate(rh.hub)
            assert (again.resealed, again.remaining, again.logins_resealed) == (0, 0, 0)  # idempotent

        # the old key dropped: every credential opens with the new key alone; old sessions end
        settings = load_settings({**base, "LOOMI_SECRET_KEY": new})
        hub = await Hub.open(settings)
        try:
            async with hub.engine.connect() as conn:
                rows = await account_store.list_rows(conn)
            opened = [account_store.to_account(row, hub.vault) for row in rows if row["credentials"]]
            assert len(opened) == BULK + 1 and sum(bot in str(a.credentials) for a in opened) == 1
            assert hub.tokens.decode(headers["Authorization"].split()[1]) is None
        finally:
            await hub.close()


async def test_an_interrupted_rotation_resumes_and_concurrent_writes_win(backend: str, tmp_path: Path) -> None:
    """Batches commit one by one; a second run takes only what is left. A credential a worker
    rewrote during the pass is kept (the update is guarded by the ciphertext it replaces)."""
    old, new = "old-" + secrets.token_hex(16), "new-" + secrets.token_hex(16)
    async with fresh_database(backend, tmp_path) as database:
        base = e2e_env(backend, tmp_path, database)
        settings = load_settings({**base, "LOOMI_SECRET_KEY": old})
        await migrate(settings.database)
        hub = await Hub.open(settings)
        await hub.redis.flushdb()  # the e2e database of this backend's Redis: nothing sealed by another test
        try:
            async with hub.engine.begin() as conn:
                from store.users import create_user
                user = await create_user(conn, email=f"k{secrets.token_hex(3)}@example.com", name="K", password_hash=None)
            await bulk_accounts(hub, user["id"], 50)
        finally:
            await hub.close()
        hub = await Hub.open(load_settings({**base, "LOOMI_SECRET_KEY": new, "LOOMI_OLD_SECRET_KEYS": old}))
        try:
            rows = await ciphertexts(hub)
            # a worker refreshes one account's credentials (under the new key) just before the pass
            refreshed = rows[0][0]
            async with hub.engine.begin() as conn:
                await account_store.save_credentials(conn, hub.vault, refreshed, {"token": "xoxb-refreshed"}, None)
            # stopped part-way (as if killed after three batches): what was done stays done
            part = await rotate(hub, batch=7, limit=21)
            assert (part.resealed, part.remaining) == (21, 28)
            report = await rotate(hub, batch=7)
            assert (report.resealed, report.remaining, report.unreadable, report.changed_meanwhile) == (28, 0, 0, 0)
            async with hub.engine.connect() as conn:
                assert (await account_store.load_account(conn, hub.vault, refreshed)).credentials == {"token": "xoxb-refreshed"}
            assert (await rotate(hub)).resealed == 0
        finally:
            await hub.close()


async def test_new_key_replaces_a_generated_key_and_running_processes_follow(backend: str, tmp_path: Path) -> None:
    """`--new-key` when the key was generated into LOOMI_HOME: the new key is written there, the
    old one kept in LOOMI_HOME/old_secret_keys (both 0600), everything re-sealed; a process
    that was running all along opens the new ciphertexts (its Vault re-reads the key files on
    an unknown key id) and seals with the new key from then on."""
    async with fresh_database(backend, tmp_path) as database:
        env = {k: v for k, v in e2e_env(backend, tmp_path, database).items() if k != "LOOMI_SECRET_KEY"}
        settings = load_settings(env)
        await migrate(settings.database)
        running = await Hub.open(settings)  # the hub that keeps running through the rotation
        await running.redis.flushdb()
        home = Path(env["LOOMI_HOME"])
        try:
            old = (home / "secret_key").read_text().strip()
            async with running.engine.begin() as conn:
                from store.users import create_user
                user = await create_user(conn, email=f"g{secrets.token_hex(3)}@example.com", name="G", password_hash=None)
            await bulk_accounts(running, user["id"], 12)
            code, out = await run_cli(env, "keys", "rotate", "--new-key", "--batch", "5")
            assert code == 0 and "accounts re-sealed: 12" in out, out
            new = (home / "secret_key").read_text().strip()
            assert new != old and (home / "old_secret_keys").read_text().split() == [old]
            for name in ("secret_key", "old_secret_keys"):
                assert stat.S_IMODE((home / name).stat().st_mode) == 0o600
            assert {c.split(".")[0] for _, c in await ciphertexts(running)} == {kid(new)}
            async with running.engine.begin() as conn:
                rows = await account_store.list_rows(conn)
                assert all(account_store.to_account(r, running.vault).credentials["token"].startswith("xoxb-bulk-") for r in rows)
                await account_store.save_credentials(conn, running.vault, rows[0]["id"], {"token": "xoxb-after"}, None)
            assert running.vault.current_kid == kid(new)  # it writes under the new key too
            assert {c.split(".")[0] for _, c in await ciphertexts(running)} == {kid(new)}
            refused, out = await run_cli({**env, "LOOMI_SECRET_KEY": "explicit"}, "keys", "rotate", "--new-key")
            assert refused == 2 and "LOOMI_OLD_SECRET_KEYS" in out  # an operator's key is the operator's to change
        finally:
            await running.close()


async def test_one_command_hub_rotates_its_generated_key_while_serving(tmp_path: Path) -> None:
    """The laptop path: `loomi serve` (embedded Redis, SQLite, the key it generated) ingests
    from a Telegram bot while `loomi keys rotate --new-key` runs beside it (adopting the same
    embedded Redis). Messages keep landing; afterwards the serving process sends through the
    re-sealed account (its worker opens the new ciphertext: the Vault re-read the key files)
    and the owner's token from before still works (the old key stays listed)."""
    import base64

    import httpx

    from tests.conftest import free_port

    bot = "525252:AARotateServeTokenForTheLoopbackFake"
    async with FakeTelegram() as fake:
        fake.add_bot(bot, 525252, "serve_rotate_bot")
        home = tmp_path / "home"
        env = {"PATH": os.environ["PATH"], "LOOMI_HOME": str(home), "LOOMI_PORT": str(free_port()),
               "LOOMI_TELEGRAM_BASE_URL": fake.base_url, "LOOMI_SCAN_SECONDS": "0.2", "LOOMI_LOG_LEVEL": "warning"}
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "loomi.cli", "serve", cwd=ROOT, env=env,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        try:
            assert proc.stdout is not None
            line = ""
            while "listening on" not in line:
                line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
                assert line, "serve exited before listening"
            url = line.strip().rsplit(" ", 1)[-1]
            headers = {"Authorization": "Bearer " + base64.b64decode((home / "token").read_text()).decode()}
            old = (home / "secret_key").read_text().strip()
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                r = await http.post("/api/telegram/listener/init", json={"botToken": bot}, headers=headers)
                assert r.status_code == 200, r.text
                account_id = r.json()["account"]["id"]
                sent = [fake.post_message(bot, 9, {"id": 9, "first_name": "Bo"}, "before")]
                rotating = asyncio.create_task(run_cli(env, "keys", "rotate", "--new-key"))
                while not rotating.done():
                    sent.append(fake.post_message(bot, 9, {"id": 9, "first_name": "Bo"}, f"during {len(sent)}"))
                    await asyncio.sleep(0.1)
                code, out = rotating.result()
                assert code == 0 and "accounts re-sealed: 1" in out, out
                new = (home / "secret_key").read_text().strip()
                assert new != old and (home / "old_secret_keys").read_text().split() == [old]

                async def stored() -> list[dict[str, Any]] | None:
                    got = (await http.get("/api/messages", headers=headers, params={"limit": 500})).json()["messages"]
                    return got if len(got) >= len(sent) else None

                got = await eventually(stored, what="every message stored", timeout=60)
                assert sorted(int(m["nativeId"]) for m in got if m["direction"] == "inbound") == sorted(sent)
                r = await http.post("/api/messages", json={"accountId": account_id, "chatId": "9", "text": "after rotating"}, headers=headers)
                assert r.status_code == 201, r.text
                await eventually(lambda: _async_true(any(m.get("text") == "after rotating" for m in fake.sent_messages)),
                                 what="the serving process sent through the re-sealed account")
        finally:
            proc.send_signal(2)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
        settings = load_settings({"LOOMI_HOME": str(home)})
        hub = await Hub.open(settings, redis_url="redis://127.0.0.1:1/0")  # the database only; Redis is not used
        try:
            assert {c.split(".")[0] for _, c in await ciphertexts(hub)} == {kid(new)}
        finally:
            await hub.close()


async def _async_true(value: bool) -> bool:
    return value


async def test_credentials_no_listed_key_opens_are_a_clear_503_and_can_be_disconnected(client: Any, hub: Hub) -> None:
    """An old key dropped too early: sending through the account says what happened (503
    credentials_unreadable, never a bare 500), and the account can still be disconnected."""
    from tests.conftest import register

    user = await register(client)
    async with hub.engine.begin() as conn:
        row = await account_store.upsert_account(conn, hub.vault, user["user"]["id"], "slack", AccountSpec(
            external_id="T" + secrets.token_hex(4), name="lost key", credentials={"token": "xoxb-lost"}))
        lost = Vault("a-key-nobody-lists-" + secrets.token_hex(8)).encrypt({"token": "xoxb-lost"}, bound_to=row["id"])
        await conn.execute(accounts.update().where(accounts.c.id == row["id"]).values(credentials=lost))
    r = await client.post("/api/messages", headers=user["headers"], json={"accountId": row["id"], "chatId": "C1", "text": "hi"})
    assert r.status_code == 503 and r.json()["code"] == "credentials_unreadable", r.text
    assert "xoxb-lost" not in r.text
    gone = await client.delete(f"/api/integrations/accounts/{row['id']}", headers=user["headers"])
    assert gone.status_code == 200, gone.text
    report = await rotate(hub)
    assert report.unreadable == 0  # disconnecting forgot the unreadable credentials
