"""`loomi import PATH` for each export: the command function on both databases (the `hub`
fixture), and the real `loomi` process once with its flags; each run twice."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import orjson
import pytest

from imports.command import run_import
from imports.detect import Options
from tests.imports import exports


def _summary(out: str) -> dict:
    return orjson.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize(
    ("name", "data", "options", "total"),
    [
        ("Acme Slack export Jan 1 2023 - Jan 2 2023.zip", exports.slack_zip(), Options(me=exports.ALICE), exports.SLACK_MESSAGES),
        ("result.json", orjson.dumps(exports.telegram_chat(), option=orjson.OPT_INDENT_2), Options(me="user111"), exports.TELEGRAM_MESSAGES),
        ("WhatsApp Chat with Alice.txt", exports.ANDROID_CHAT.encode(), Options(me="Bob"), exports.ANDROID_MESSAGES),
    ],
    ids=["slack", "telegram", "whatsapp"],
)
async def test_command_imports_each_export_once(hub, user: dict, tmp_path: Path, capsys, name, data, options, total) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    assert await run_import(hub, path, user["email"], options) == 0
    first = capsys.readouterr()
    body = _summary(first.out)
    assert (body["imported"], body["failed"]) == (total, 0)
    assert f"stored: {total}/{total} [{'#' * 30}] 100%" in first.err  # the progress bar, finished
    assert await run_import(hub, path, user["email"], options) == 0
    again = _summary(capsys.readouterr().out)
    assert again["imported"] == 0 and again["skipped"] >= total


async def test_command_refuses_a_bad_file_whole(hub, user: dict, tmp_path: Path, capsys) -> None:
    path = tmp_path / "result.json"
    path.write_bytes(orjson.dumps(exports.telegram_chat(broken="date")))
    assert await run_import(hub, path, user["email"], Options(me="Alice")) == 1
    err = capsys.readouterr().err
    assert "chat.messages[3] (id 4): date_unixtime" in err and "nothing was imported" in err
    path.write_bytes(exports.IOS_CHAT.encode())
    assert await run_import(hub, path, user["email"], Options()) == 1  # who is "me"?
    assert "pass me=" in capsys.readouterr().err


def test_loomi_import_process(tmp_path: Path) -> None:
    """The installed entry point in a fresh LOOMI_HOME (SQLite, embedded Redis): flags reach
    the parser, a WhatsApp zip (iOS shares `_chat.txt` in one) imports, then imports nothing."""
    archive = tmp_path / "WhatsApp Chat - Family 家.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("_chat.txt", exports.IOS_CHAT)
        z.writestr("00000012-PHOTO-2023-02-01-21-16-00.jpg", b"\xff\xd8\xff")
    env = {**os.environ, "LOOMI_HOME": str(tmp_path / "home"), "LOOMI_LOG_LEVEL": "warning"}
    env.pop("LOOMI_DATABASE_URL", None)
    env.pop("LOOMI_REDIS_URL", None)
    command = [sys.executable, "-m", "loomi.cli", "import", str(archive), "--me", "Alice", "--tz", "Asia/Shanghai"]
    run = lambda: subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)  # noqa: E731
    first = run()
    assert first.returncode == 0, first.stderr
    body = _summary(first.stdout)
    assert body["format"] == "whatsapp" and body["imported"] == exports.IOS_MESSAGES
    second = _summary(run().stdout)
    assert second["imported"] == 0 and second["reasons"]["already stored (or repeated in the file)"] == exports.IOS_MESSAGES
    bad_zone = subprocess.run([*command[:-1], "Mars/Olympus"], env=env, capture_output=True, text=True, timeout=120)
    assert bad_zone.returncode == 1 and "unknown time zone 'Mars/Olympus'" in bad_zone.stderr
