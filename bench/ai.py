"""Latency the hub adds, measured on `loomi serve` as the README starts it, in one run.

Usage::

    .venv/bin/python -m bench.ai [--quick] [--n 300] [--words 20] [--log FILE]

Starts the fake OpenAI-compatible upstream (tests/fakes/openai_upstream.py) and the real
`loomi serve` process (SQLite in a fresh LOOMI_HOME, the embedded Redis, the in-process
worker, uvicorn's access log going to FILE, LOOMI_AI_BASE_URL pointing at the fake), then
from this process, over kept-alive connections and alternating sides:

* the same chat completion straight to the fake and through `/api/ai/v1/chat/completions`:
  time to first token (first `data:` event) and total, streamed and not; p50/p99 of each and
  the milliseconds the hub adds at p50 and p99 (aim: under 2 ms at p50);
* the authenticated-route floor: `GET /api/remote-auth/user` and `GET /api/messages` (empty
  store) with the owner's token, against the public `GET /api/ai/chat` measured in the same
  loop (aim: within 1 ms at p50).

Everything is relative to a baseline measured in the same run, so a loaded machine moves
both sides alike.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
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

from bench.common import emit  # noqa: E402

UPSTREAM_KEY = "sk-bench-upstream-key"


def start_serve(home: str, upstream: str, log_path: Path) -> tuple[subprocess.Popen, str]:
    """`loomi serve --port 0` as people run it; its URL from the line it prints."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOMI_")}
    env.update({
        "PYTHONPATH": str(ROOT),
        "LOOMI_HOME": home,
        "LOOMI_AI_BASE_URL": upstream + "/v1",
        "LOOMI_AI_API_KEY": UPSTREAM_KEY,
        "LOOMI_AI_MODEL": "fake-chat",
        "LOOMI_AI_DISCOVER": "false",
    })
    log = open(log_path, "ab")  # noqa: SIM115  (the child keeps writing to it)
    process = subprocess.Popen(
        [sys.executable, "-m", "loomi.cli", "serve", "--host", "127.0.0.1", "--port", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
    )
    assert process.stdout is not None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            raise SystemExit(f"loomi serve exited ({process.poll()}); see {log_path}")
        if "listening on " in line:
            return process, line.split("listening on ", 1)[1].strip()
    raise SystemExit("loomi serve did not start")


async def timed(http: httpx.AsyncClient, method: str, url: str, headers: dict[str, str], body: dict | None, stream: bool) -> tuple[float, float]:
    """(seconds to the first data event, seconds to the end)."""
    start = time.perf_counter()
    first = total = 0.0
    if not stream:
        r = await http.request(method, url, json=body, headers=headers)
        r.raise_for_status()
        elapsed = time.perf_counter() - start
        return elapsed, elapsed
    async with http.stream(method, url, json=body, headers=headers) as r:
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


def report(name: str, base_name: str, base: list[float], hub_name: str, hub: list[float]) -> tuple[float, float]:
    """Prints one comparison; returns (hub p50, baseline p50) in ms."""
    b50, b99, h50, h99 = pct(base, 50), pct(base, 99), pct(hub, 50), pct(hub, 99)
    print(
        f"{name:<24} {base_name} p50 {b50:7.3f} ms p99 {b99:7.3f} ms | {hub_name} p50 {h50:7.3f} ms p99 {h99:7.3f} ms"
        f" | added p50 {h50 - b50:+7.3f} ms p99 {h99 - b99:+7.3f} ms | ratio p50 {h50 / b50:5.2f}x"
    )
    return h50, b50


async def run(n: int, words: int, upstream: str, hub_url: str, token: str) -> bool:
    limits = httpx.Limits(max_keepalive_connections=4)
    async with httpx.AsyncClient(timeout=30, limits=limits) as http:
        auth = {"authorization": f"Bearer {token}"}
        direct = (upstream + "/v1/chat/completions", {"authorization": f"Bearer {UPSTREAM_KEY}"})
        gateway = (hub_url + "/api/ai/v1/chat/completions", auth)
        question = [{"role": "user", "content": "Summarise the week in a few words"}]
        kinds = ("ttft", "stream", "whole", "public", "user", "messages")
        results: dict[str, dict[str, list[float]]] = {k: {"base": [], "hub": []} for k in kinds}
        warmup = max(20, n // 10)
        for i in range(warmup + n):
            for stream in (True, False):
                body = {"model": "fake-chat", "messages": question, "stream": stream}
                if stream:
                    body["stream_options"] = {"include_usage": True}
                pair = [("base", direct), ("hub", gateway)]
                if i % 2:
                    pair.reverse()  # alternate who goes first: drift hits both sides alike
                for side, (url, headers) in pair:
                    first, total = await timed(http, "POST", url, headers, body, stream)
                    if i < warmup:
                        continue
                    if stream:
                        results["ttft"][side].append(first)
                        results["stream"][side].append(total)
                    else:
                        results["whole"][side].append(total)
            # the authenticated floor against the public route, interleaved the same way
            floor = [("public", hub_url + "/api/ai/chat", {}), ("user", hub_url + "/api/remote-auth/user", auth),
                     ("messages", hub_url + "/api/messages", auth)]
            if i % 2:
                floor.reverse()
            for kind, url, headers in floor:
                _, total = await timed(http, "GET", url, headers, None, False)
                if i >= warmup:
                    results[kind]["hub"].append(total)
    print(f"`loomi serve` (SQLite, embedded Redis, in-process worker, access log) vs the upstream called directly:"
          f" {n} requests of each kind, {words}-word replies, sequential, keep-alive")
    ttft_p50 = report("stream TTFT", "direct", results["ttft"]["base"], "hub", results["ttft"]["hub"])
    report("stream total", "direct", results["stream"]["base"], "hub", results["stream"]["hub"])
    whole_p50 = report("non-stream total", "direct", results["whole"]["base"], "hub", results["whole"]["hub"])
    public = results["public"]["hub"]
    user_p50 = report("GET /api/remote-auth/user", "public GET /api/ai/chat", public, "auth", results["user"]["hub"])
    messages_p50 = report("GET /api/messages", "public GET /api/ai/chat", public, "auth", results["messages"]["hub"])
    ttft, whole, user, messages = (h - b for h, b in (ttft_p50, whole_p50, user_p50, messages_p50))
    ok_gateway = ttft < 2.0 and whole < 2.0
    ok_auth = user < 1.0
    direct = "the same request straight to the upstream, p50"
    emit("ai", "gateway stream TTFT p50", ttft_p50[0], "ms", baseline=ttft_p50[1], baseline_label=direct,
         aim="under 2 ms added at p50", ok=ttft < 2.0)
    emit("ai", "gateway non-stream completion p50", whole_p50[0], "ms", baseline=whole_p50[1], baseline_label=direct,
         aim="under 2 ms added at p50", ok=whole < 2.0)
    public_label = "public GET /api/ai/chat, p50"
    emit("ai", "GET /api/remote-auth/user p50 (authenticated floor)", user_p50[0], "ms", baseline=user_p50[1],
         baseline_label=public_label, aim="under 1 ms added at p50", ok=user < 1.0)
    emit("ai", "GET /api/messages p50 (empty store)", messages_p50[0], "ms", baseline=messages_p50[1],
         baseline_label=public_label)
    print(f"aim: gateway under 2 ms added at p50 (TTFT {ttft:+.3f} ms, non-stream {whole:+.3f} ms): {'met' if ok_gateway else 'NOT met'}")
    print(f"aim: being authenticated costs under 1 ms at p50 (GET /api/remote-auth/user, no query of its own: {user:+.3f} ms):"
          f" {'met' if ok_auth else 'NOT met'}")
    print(f"     GET /api/messages adds its own query on top ({messages:+.3f} ms: one SELECT through the database driver)")
    return ok_gateway and ok_auth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=None, help="measured requests per side and kind (300; 60 with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument("--words", type=int, default=20, help="words in each reply (one chunk per word)")
    parser.add_argument("--log", type=Path, default=None, help="where `loomi serve` logs (default: in its LOOMI_HOME)")
    args = parser.parse_args()
    args.n = args.n or (60 if args.quick else 300)
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
            log_path = args.log or Path(home) / "serve.log"
            hub, hub_url = start_serve(home, upstream, log_path)
            token = base64.b64decode((Path(home) / "token").read_text().strip()).decode()
            deadline = time.monotonic() + 60
            while True:  # wait until it answers
                try:
                    if httpx.get(hub_url + "/api/ai/chat", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the hub did not answer")
                time.sleep(0.05)
            asyncio.run(run(args.n, args.words, upstream, hub_url, token))
            hub.send_signal(2)  # SIGINT: the hub stops, closes its database and stops its Redis
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
