"""A Redis and a PostgreSQL of the test's own, to kill -9, freeze and restart: the shared
ones serve everybody else's tests.

`OwnRedis` runs the same server the backend pairs with (the embedded Redis 6.2 binary for
sqlite, the system's redis-server for postgresql) with an append-only file synced on every
write, as `loomi serve` runs its embedded one: a kill -9 loses nothing acknowledged.
`OwnPostgres` is a throwaway cluster (initdb into a temp folder, trust auth, a free port);
`crash()` is `pg_ctl stop -m immediate`: every backend dies at once, no checkpoint, and the
next start recovers from the WAL, as after a power cut of the server process.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from loomi.embedded_redis import server_binary
from tests.conftest import free_port

PG_BIN = Path(os.environ.get("LOOMI_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _wait_for_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


class OwnRedis:
    def __init__(self, folder: Path, backend: str) -> None:
        self.folder, self.port = folder, free_port()
        folder.mkdir(parents=True, exist_ok=True)
        system = shutil.which("redis-server")
        self.binary = system if backend == "postgresql" and system else server_binary()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "OwnRedis":
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port)
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def freeze(self) -> None:
        """SIGSTOP: connections stay open, nothing answers (a hung server, a full disk)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)


class OwnPostgres:
    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="loomi-chaos-pg-"))  # not under pytest's 0700 tmp: postgres must reach it
        self.data = self.folder / "data"
        self.port = free_port()
        self._as_postgres = os.geteuid() == 0  # initdb and postgres refuse to run as root
        if self._as_postgres:
            shutil.chown(self.folder, "postgres")

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = [str(PG_BIN / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def init(self) -> "OwnPostgres":
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        return self

    def start(self) -> None:
        # fsync off: the crash here is of the server processes, not of the machine, and the
        # kernel keeps what they wrote; it keeps the test fast on a busy disk
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "log"), "-w", "-t", "60", "start")

    def crash(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def remove(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self.crash()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
