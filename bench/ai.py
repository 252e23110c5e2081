"""Latency the AI gateway adds over calling its upstream directly, measured in the same run.

Usage::

    .venv/bin/python bench/ai.py [--n 300] [--words 20]

Starts the fake OpenAI-compatible upstream (tests/fakes/openai_upstream.py) and a hub
(SQLite, embedded Redis unless LOOMI_REDIS_URL is set, LOOMI_AI_BASE_URL pointing at the
fake) as two separate processes, then from this process sends the same chat completion,
alternately straight to the fake and through the hub's /api/ai/v1/chat/completions, over
kept-alive connections. Prints time to first token (the first `data:` event) and total time
(to `[DONE]`) for streams, and total time for non-streamed calls: p50 and p99 of each, the
added milliseconds at p50 and the gateway/direct ratio. Aim: under 2 ms added at p50.
The gateway path includes what every request pays: token check (one indexed query),
validation, and the usage ledger write (in the background, after the response).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

UPSTREAM_KEY = "sk-bench-upstream-key"


def serve_hub(home: str, upstream: str, port_file: str) -> None:
    """Child process: a hub on a free port whose AI upstream is the fake."""
    import socket

    import uvicorn

    from api.app import create_app
    from config.settings import load_settings
    from loomi.embedded_redis import EmbeddedRedis
    from loomi.hub import Hub
    from store.db import migrate

    redis_url = os.environ.get("LOOMI_REDIS_URL")
    embedded = None
    if redis_url is None:
        embedded = EmbeddedRedis(Path(home))
        redis_url = embedded.start()
    env = {
        "LOOMI_HOME": home,
        "LOOMI_DATABASE_URL": f"sqlite+aiosqlite:///{home}/hub.db",
        "LOOMI_REDIS_URL": redis_url,
        "LOOMI_SECRET_KEY": "bench-secret",
        "LOOMI_LOG_LEVEL": "warning",
        "LOOMI_AI_BASE_URL": upstream + "/v1",
        "LOOMI_AI_API_KEY": UPSTREAM_KEY,
        "LOOMI_AI_MODEL": "fake-chat",
    }
    settings = load_settings(env)

    async def main() -> None:
        await migrate(settings.database)
        hub = await Hub.open(settings)
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted sockets only when the
        # listening socket's proto says TCP; socket.socket() leaves it 0 and Nagle then holds
        # each streamed chunk ~40 ms behind the client's delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        Path(port_file).write_text(str(sock.getsockname()[1]))
        server = uvicorn.Server(uvicorn.Config(create_app(hub), log_config=None, access_log=False))

        async def stop_when_parent_closes_stdin() -> None:
            # Not a signal: uvicorn re-raises SIGTERM after shutdown, which would skip the
            # cleanup below and leave the embedded Redis running.
            await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
            server.should_exit = True

        watcher = asyncio.create_task(stop_when_parent_closes_stdin())
        try:
            await server.serve(sockets=[sock])
        finally:
            watcher.cancel()
            await hub.close()

    try:
        asyncio.run(main())
    finally:
        if embedded is not None:
            embedded.stop()


async def timed(http: httpx.AsyncClient, url: str, headers: dict[str, str], body: dict, stream: bool) -> tuple[float, float]:
    """(seconds to the first data event, seconds to the end)."""
    start = time.perf_counter()
    first = total = 0.0
    if not stream:
        r = await http.post(url, json=body, headers=headers)
        r.raise_for_status()
        elapsed = time.perf_counter() - start
        return elapsed, elapsed
    async with http.stream("POST", url, json=body, headers=headers) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():  # read to the end so the connection is reused
            if line.startswith("data: "):
                if not first:
                    first = time.perf_counter() - start
                if line == "data: [DONE]":
                    total = time.perf_counter() - start
    return first, total


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def report(name: str, direct: list[float], gateway: list[float]) -> float:
    d50, d99, g50, g99 = pct(direct, 50), pct(direct, 99), pct(gateway, 50), pct(gateway, 99)
    print(
        f"{name:<18} direct p50 {d50:7.3f} ms  p99 {d99:7.3f} ms | gateway p50 {g50:7.3f} ms  p99 {g99:7.3f} ms"
        f" | added p50 {g50 - d50:+7.3f} ms  p99 {g99 - d99:+7.3f} ms | ratio p50 {g50 / d50:5.2f}x"
    )
    return g50 - d50


async def run(n: int, words: int, upstream: str, hub_url: str) -> None:
    limits = httpx.Limits(max_keepalive_connections=4)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        r = await http.post(hub_url + "/api/remote-auth/register",
                            json={"email": "bench@example.com", "password": "bench password 1", "name": "Bench"})
        r.raise_for_status()
        token = r.json()["token"]
        direct = (upstream + "/v1/chat/completions", {"authorization": f"Bearer {UPSTREAM_KEY}"})
        gateway = (hub_url + "/api/ai/v1/chat/completions", {"authorization": f"Bearer {token}"})
        question = [{"role": "user", "content": "Summarise the week in a few words"}]
        results: dict[str, dict[str, list[float]]] = {k: {"direct": [], "gateway": []} for k in ("ttft", "stream", "whole")}
        warmup = max(20, n // 10)
        for i in range(warmup + n):
            for stream in (True, False):
                body = {"model": "fake-chat", "messages": question, "stream": stream}
                if stream:
                    body["stream_options"] = {"include_usage": True}
                pair = [("direct", direct), ("gateway", gateway)]
                if i % 2:
                    pair.reverse()  # alternate who goes first: drift hits both sides alike
                for side, (url, headers) in pair:
                    first, total = await timed(http, url, headers, body, stream)
                    if i < warmup:
                        continue
                    if stream:
                        results["ttft"][side].append(first)
                        results["stream"][side].append(total)
                    else:
                        results["whole"][side].append(total)
    print(f"AI gateway vs direct upstream: {n} requests of each kind, {words}-word replies, sequential, keep-alive")
    added = report("stream TTFT", results["ttft"]["direct"], results["ttft"]["gateway"])
    report("stream total", results["stream"]["direct"], results["stream"]["gateway"])
    report("non-stream total", results["whole"]["direct"], results["whole"]["gateway"])
    print(f"aim: under 2 ms added at p50 -> TTFT added {added:.3f} ms: {'met' if added < 2.0 else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="measured requests per side and kind")
    parser.add_argument("--words", type=int, default=20, help="words in each reply (one chunk per word)")
    parser.add_argument("--serve-hub", nargs=3, metavar=("HOME", "UPSTREAM", "PORT_FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_hub:
        serve_hub(*args.serve_hub)
        return
    reply = " ".join(f"word{i}" for i in range(args.words))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai_upstream", "--api-key", UPSTREAM_KEY, "--reply", reply],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
    )
    hub = None
    try:
        upstream = fake.stdout.readline().strip() if fake.stdout else ""
        if not upstream.startswith("http://127.0.0.1:"):
            raise SystemExit("the fake upstream did not start")
        with tempfile.TemporaryDirectory(prefix="loomi-bench-ai-") as home:
            port_file = Path(home) / "port"
            hub = subprocess.Popen([sys.executable, __file__, "--serve-hub", home, upstream, str(port_file)],
                                   cwd=ROOT, env=env, stdin=subprocess.PIPE)
            deadline = time.monotonic() + 60
            while not port_file.exists() or not port_file.read_text():
                if hub.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the hub did not start")
                time.sleep(0.05)
            hub_url = f"http://127.0.0.1:{port_file.read_text()}"
            while True:  # wait until it answers
                try:
                    if httpx.get(hub_url + "/api/ai/chat", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the hub did not answer")
                time.sleep(0.05)
            asyncio.run(run(args.n, args.words, upstream, hub_url))
            assert hub.stdin is not None
            hub.stdin.close()  # the hub stops, closes its database and stops its Redis
            hub.wait(timeout=30)
            hub = None
    finally:
        for process in (hub, fake):
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()


if __name__ == "__main__":
    main()
