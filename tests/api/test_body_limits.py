"""Body limits refuse while the body streams in, before anything buffers it (issue 7, item 9).

The server here runs in this test's own process (tests/conftest.py), so its memory is ours:
the resident size is sampled while a client thread pushes a chunked body far over the limit.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any

import httpx

from api.body_limit import DEFAULT_LIMIT

LIMIT = DEFAULT_LIMIT
BIG = 192 << 20  # 192x the limit


def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def _response(sock: socket.socket) -> tuple[int, dict[str, Any], bytes]:
    sock.settimeout(20)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return int(lines[0].split()[1]), headers, rest


def push_chunked(port: int, path: str, total: int, peak: list[int]) -> dict[str, Any]:
    """Send a chunked POST of `total` bytes until the server stops reading; then its answer."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n".encode()
    )
    piece = b"[" + b"1," * (32 << 10)
    frame = b"%x\r\n%s\r\n" % (len(piece), piece)
    sent = 0
    sock.settimeout(3)
    try:
        while sent < total:
            sock.sendall(frame)
            sent += len(piece)
            if sent % (8 << 20) < len(piece):
                peak[0] = max(peak[0], rss_bytes())
        sock.sendall(b"0\r\n\r\n")
    except (socket.timeout, BrokenPipeError, ConnectionResetError):
        pass  # the server stopped reading: what we want
    try:
        status, headers, body = _response(sock)
    finally:
        sock.close()
    peak[0] = max(peak[0], rss_bytes())
    return {"sent": sent, "status": status, "headers": headers, "body": body}


async def test_chunked_body_far_over_the_limit_is_refused_while_streaming(server, client: httpx.AsyncClient) -> None:
    before = rss_bytes()
    peak = [before]
    started = time.monotonic()
    result = await asyncio.to_thread(push_chunked, server.port, "/api/remote-auth/login", BIG, peak)
    elapsed = time.monotonic() - started
    grown = (peak[0] - before) >> 20
    print(f"chunked {BIG >> 20} MiB offered: {result['sent'] >> 20} MiB sent before the server stopped reading, "
          f"RSS +{grown} MiB, {elapsed:.1f} s")
    assert result["status"] == 413
    body = json.loads(result["body"])
    assert body["code"] == "body_too_large" and body["error"] and str(LIMIT) in body["cause"]
    assert result["sent"] < BIG // 4  # stopped reading: only socket buffers took the rest
    assert grown < 48, f"RSS grew {grown} MiB"  # a buffered body would be >= 192 MiB (twice, when joined)
    # the server is fine afterwards
    assert (await client.get("/healthz")).status_code in (200, 503)


async def test_declared_length_over_the_limit_is_refused_without_reading(server) -> None:
    def ask() -> tuple[int, dict[str, Any], bytes]:
        sock = socket.create_connection(("127.0.0.1", server.port))
        try:
            sock.sendall(
                f"POST /api/remote-auth/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {10 ** 10}\r\n\r\n".encode()
            )
            return _response(sock)  # answered with no body byte sent
        finally:
            sock.close()

    status, headers, body = await asyncio.to_thread(ask)
    assert status == 413 and json.loads(body)["code"] == "body_too_large"
    assert headers.get("connection") == "close"


async def test_limits_per_route(client: httpx.AsyncClient, user: dict) -> None:
    over = b'{"content": "' + b"x" * (LIMIT + 10) + b'"}'
    r = await client.post("/api/remote-feedback", content=over, headers={**user["headers"], "content-type": "application/json"})
    assert r.status_code == 413 and r.json()["code"] == "body_too_large"
    # uploads have their own, larger limit (LOOMI_UPLOAD_MAX_BYTES)
    blob = b"y" * (3 * LIMIT)
    r = await client.post("/api/ai/v1/upload", headers=user["headers"], files={"file": ("big.bin", blob, "application/octet-stream")})
    assert r.status_code == 200 and r.json()["bytes"] == len(blob)


