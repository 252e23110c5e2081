"""`loomi serve` as a person runs it: no services configured, embedded Redis, seed curl examples."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[1]


def _wait_for_line(proc: subprocess.Popen, needle: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        if needle in line:
            return line
    raise AssertionError(f"never printed {needle!r}; output: {''.join(seen)}")


@pytest.fixture
def served(tmp_path: Path):
    """`loomi serve` on a taken port, so it must fall back; no Redis or database configured."""
    taken = socket.socket()
    taken.bind(("127.0.0.1", free_port()))
    taken.listen(1)
    fallback = free_port()
    env = {
        "PATH": os.environ["PATH"],
        "LOOMI_HOME": str(tmp_path / "home"),
        "LOOMI_PORT": str(taken.getsockname()[1]),
        "LOOMI_FALLBACK_PORT": str(fallback),
    }
    log = tmp_path / "stderr.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "loomi.cli", "serve"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True
        )
    try:
        line = _wait_for_line(proc, "listening on")
        yield {"proc": proc, "line": line, "port": fallback, "home": tmp_path / "home", "log": log}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        taken.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is what the seed's examples use")
def test_serve_with_nothing_configured_runs_the_seed_examples(served) -> None:
    port, home = served["port"], served["home"]
    assert f"http://127.0.0.1:{port}" in served["line"]
    token_file = home / "token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o700  # the messages database lives here

    # the seed's own shell lines, with only the port and home changed
    script = f"""
set -e
TOKEN=$(cat {token_file} | base64 -d)
echo "$TOKEN" | cut -d'.' -f2 | base64 -d 2>/dev/null | python3 -m json.tool
curl -s -o /dev/null -w '%{{http_code}}\\n' http://localhost:{port}/api/remote-auth/user -H "Authorization: Bearer $TOKEN"
curl -s -o /dev/null -w '%{{http_code}}\\n' http://localhost:{port}/api/remote-auth/subscription -H "Authorization: Bearer $TOKEN"
curl -s http://localhost:{port}/healthz
"""
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    payload_end = out.stdout.index("}\n") + 1
    payload = json.loads(out.stdout[:payload_end])
    assert {"sub", "email", "iat", "exp"} <= set(payload)
    statuses = out.stdout[payload_end:].split()
    assert statuses[:2] == ["200", "200"]
    health = json.loads(out.stdout[payload_end:].split("\n", 3)[-1])
    assert health["ok"] and health["store"]["dialect"] == "sqlite" and health["redis"]["ok"]
    assert (home / "redis" / "appendonly.aof").exists() or (home / "redis" / "appendonlydir").exists()

    token = base64.b64decode(token_file.read_text()).decode()
    served["proc"].send_signal(signal.SIGINT)
    served["proc"].wait(timeout=20)
    assert served["proc"].returncode == 0
    assert not (home / "redis" / "redis.sock").exists()  # embedded Redis stopped with the hub
    logs = served["log"].read_text()
    assert token not in logs
    assert token.encode() not in (home / "hub.db").read_bytes()


def test_restart_keeps_the_token(served, tmp_path: Path) -> None:
    home = served["home"]
    first = (home / "token").read_text()
    served["proc"].send_signal(signal.SIGINT)
    served["proc"].wait(timeout=20)
    env = {"PATH": os.environ["PATH"], "LOOMI_HOME": str(home), "LOOMI_PORT": str(free_port())}
    proc = subprocess.Popen([sys.executable, "-m", "loomi.cli", "login"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.wait(timeout=60) == 0
    assert (home / "token").read_text() == first


async def test_one_command_hub_ingests_with_its_in_process_worker(tmp_path: Path) -> None:
    """`loomi serve` alone (embedded Redis, SQLite, in-process worker) takes a Telegram bot
    from connect to stored messages: the laptop path end to end."""
    import asyncio

    import httpx

    from tests.fakes.telegram import FakeTelegram

    token = "424242:AAServeTestTokenForTheLoopbackFake0"
    async with FakeTelegram() as fake:
        fake.add_bot(token, 424242, "serve_bot")
        env = {
            "PATH": os.environ["PATH"],
            "LOOMI_HOME": str(tmp_path / "home"),
            "LOOMI_PORT": str(free_port()),
            "LOOMI_TELEGRAM_BASE_URL": fake.base_url,
            "LOOMI_SCAN_SECONDS": "0.2",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "loomi.cli", "serve", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            assert proc.stdout is not None
            line = ""
            while "listening on" not in line:
                line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
                assert line, "serve exited before listening"
            url = line.strip().rsplit(" ", 1)[-1]
            bearer = base64.b64decode((tmp_path / "home" / "token").read_text()).decode()
            headers = {"Authorization": f"Bearer {bearer}"}
            async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                r = await http.post("/api/telegram/listener/init", json={"botToken": token}, headers=headers)
                assert r.status_code == 200, r.text
                sent = [fake.post_message(token, 7, {"id": 7, "first_name": "Ann"}, f"hi {i}") for i in range(10)]
                deadline = time.monotonic() + 30
                got: list = []
                while time.monotonic() < deadline and len(got) < 10:
                    got = (await http.get("/api/messages", headers=headers)).json()["messages"]
                    await asyncio.sleep(0.2)
                assert sorted(int(m["nativeId"]) for m in got) == sorted(sent)
        finally:
            proc.send_signal(signal.SIGINT)
            assert await asyncio.wait_for(proc.wait(), 30) == 0


def _loose_entries(home: Path) -> list[str]:
    """Every path under `home` that its group or others could open."""
    loose = []
    for root, dirs, files in os.walk(home):
        for name in dirs + files:
            path = Path(root) / name
            mode = stat.S_IMODE(path.lstat().st_mode)
            if mode & 0o077:
                loose.append(f"{path.relative_to(home)} {mode:03o}")
    return loose


def test_everything_the_hub_writes_is_private(served) -> None:
    """hub.db and its -wal/-shm, the Redis AOF and its folder, ai-uploads: 0600 / 0700 (issue 7, item 10)."""
    import httpx

    home, port = served["home"], served["port"]
    bearer = base64.b64decode((home / "token").read_text()).decode()
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {bearer}"}, timeout=30) as http:
        r = http.post("/api/ai/v1/upload", files={"file": ("notes.txt", b"private notes", "text/plain")})
        assert r.status_code == 200, r.text
        assert http.put("/api/remote-auth/user", json={"name": "Owner Renamed"}).status_code == 200  # a write: WAL
    created = {str(p.relative_to(home)) for p in home.rglob("*")}
    assert {"hub.db", "hub.db-wal", "hub.db-shm", "redis", "ai-uploads", "token", "secret_key"} <= created, created
    assert any(name.startswith("redis/appendonly") for name in created)
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert _loose_entries(home) == []
    served["proc"].send_signal(signal.SIGINT)
    served["proc"].wait(timeout=20)
    assert _loose_entries(home) == []  # what shutdown wrote too


def test_an_open_home_is_made_private_with_a_warning(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("old")
    os.chmod(home / "notes.txt", 0o644)
    os.chmod(home, 0o755)
    env = {"PATH": os.environ["PATH"], "LOOMI_HOME": str(home)}
    out = subprocess.run([sys.executable, "-m", "loomi.cli", "login"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if "made private" in line]
    assert len(warnings) == 1 and str(home) in warnings[0] and "755" in warnings[0]
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert _loose_entries(home) == []


def test_one_command_run_has_offline_speech_and_transcription(served) -> None:
    """What scripts/serve.sh installs (the offline-audio extra, tests/test_scripts.py) shows up in
    `GET /api/ai/chat` of the running hub (issue 7, item 3)."""
    import httpx

    status = httpx.get(f"http://127.0.0.1:{served['port']}/api/ai/chat", timeout=30).json()
    assert status["offline"]["speech"] is True and status["offline"]["transcriptions"] is True, status
    assert status["offline"]["embeddings"] is True


def test_migrate_alone_writes_a_private_database(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = {"PATH": os.environ["PATH"], "LOOMI_HOME": str(home)}
    out = subprocess.run([sys.executable, "-m", "loomi.cli", "migrate"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert (home / "hub.db").exists() and stat.S_IMODE(home.stat().st_mode) == 0o700
    assert _loose_entries(home) == []


def test_the_open_files_limit_is_raised_for_many_listeners() -> None:
    """A worker holding 1,000 accounts has ~1,060 files open; a soft limit of 1,024 (common)
    would fail the 1,000th listener. Run in a child so this test's own limit is untouched."""
    code = (
        "import resource\n"
        "soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))\n"
        "from loomi.runtime import raise_open_file_limit\n"
        "raise_open_file_limit()\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], hard)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    soft, hard = int(out[0]), int(out[1])
    assert soft > 256 and (soft == hard or hard < 0)
