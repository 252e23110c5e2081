"""One HTTP/1.1 request with its path sent byte for byte: httpx (like browsers) removes `..`
segments and re-encodes before sending, which would hide exactly what the traversal tests send."""

from __future__ import annotations

import asyncio


async def raw_request(port: int, method: str, raw_path: bytes, headers: dict[str, str] | None = None, body: bytes = b"") -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    lines = [method.encode() + b" " + raw_path + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close",
             b"Content-Length: " + str(len(body)).encode()]
    lines += [f"{k}: {v}".encode() for k, v in (headers or {}).items()]
    writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 30)
    writer.close()
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, rest
