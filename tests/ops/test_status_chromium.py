"""`/status` in a real browser: headless Chromium (Debian's `chromium`, which scripts/test.sh
installs) loads the page through a single-use status link, its DOM is checked, and a
screenshot is taken (kept at $LOOMI_STATUS_SCREENSHOT when set, for a person to look at).

Skipped only when no Chromium binary is on this machine.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
from bs4 import BeautifulSoup

from loomi.hub import Hub
from tests.conftest import RunningServer
from tests.ops.helpers import add_account, ingest_all, queue_updates
from workers import keys

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary (apt-get install chromium; scripts/test.sh does)")


async def chromium(profile: Path, *args: str) -> tuple[int, str, str]:
    """Run headless Chromium without blocking the event loop that serves the page."""
    assert CHROMIUM is not None
    process = await asyncio.create_subprocess_exec(
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
        "--hide-scrollbars", f"--user-data-dir={profile}", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 120)
    return process.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def link(client: httpx.AsyncClient, server: RunningServer, user: dict[str, Any]) -> str:
    response = await client.post("/api/status/link", headers=user["headers"])
    assert response.status_code == 200
    return server.url + response.json()["url"]


async def test_status_page_in_headless_chromium(hub: Hub, server: RunningServer, client: httpx.AsyncClient, user: dict[str, Any], tmp_path: Path) -> None:
    account = await add_account(hub, user["user"]["id"], "Browser Team")
    await hub.redis.hset(keys.status(account), mapping={"state": "connected", "worker": "host-b:7"})
    await queue_updates(hub, account, 7)
    await ingest_all(hub)

    code, dom, err = await chromium(tmp_path / "profile", "--dump-dom", await link(client, server, user))
    assert code == 0, err[-2000:]
    soup = BeautifulSoup(dom, "html.parser")
    rows = soup.select("tr.account")
    assert [r["data-account-id"] for r in rows] == [account], dom[:2000]
    assert rows[0]["data-state"] == "connected" and "Browser Team" in rows[0].get_text()
    assert soup.select_one("#messages-last-hour").text == "7"
    bars = soup.select("svg#ingest-chart rect.bar")
    assert len(bars) == 60 and int(bars[-1]["data-count"]) + int(bars[-2]["data-count"]) == 7  # this minute (or the last)

    shot = tmp_path / "status.png"
    code, _, err = await chromium(tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,700", await link(client, server, user))
    assert code == 0 and shot.is_file(), err[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000  # a rendered page, not a blank
    keep = os.environ.get("LOOMI_STATUS_SCREENSHOT")
    if keep:
        shutil.copyfile(shot, keep)
