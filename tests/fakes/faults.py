"""What a flaky platform does to its clients, for the loopback fakes: answer 429/500 for a
while, hold a request without answering (a stall), cut an answer off halfway (a dropped
connection mid-response), or answer 200 with a body that is not what the API promises.

Why one place: the chaos tests (tests/chaos/) put the same faults on every fake, and each
fake only says how its platform spells an error (`FaultInjection._fault_status`). A fake mixes
`FaultInjection` in, creates `self.faults = Faults()` and routes each API call through
`_with_faults(request, method, answer)`. Faults are keyed by the API method name; `"*"` is
every method.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from aiohttp import web

__all__ = ["Fault", "Faults", "FaultInjection", "GARBAGE"]

GARBAGE = b"<html><body><h1>502 Bad Gateway</h1></body></html>"  # what a broken proxy answers


@dataclass
class Fault:
    kind: str  # "status" | "stall" | "drop" | "garbage"
    status: int = 500
    retry_after: float = 1.0
    seconds: float | None = None  # stall: how long each call is held (None: until release/until)
    body: bytes = GARBAGE
    after: int = 0  # calls let through untouched first
    times: int | None = 1  # calls it applies to; None: every call until `until`
    until: float | None = None  # time.monotonic() deadline of a fault "for a while"


@dataclass
class Injected:
    """One fault that hit a call, kept so tests can assert on what the client went through."""

    at: float
    method: str
    kind: str
    status: int | None


class Faults:
    """Pending faults per method, taken one call at a time."""

    def __init__(self) -> None:
        self._pending: dict[str, list[Fault]] = {}
        self._release: asyncio.Event | None = None
        self.injected: list[Injected] = []

    def add(self, method: str, fault: Fault) -> None:
        self._pending.setdefault(method, []).append(fault)

    def take(self, method: str) -> Fault | None:
        now = time.monotonic()
        for key in (method, "*"):
            queue = self._pending.get(key, [])
            for fault in list(queue):
                if fault.until is not None and now >= fault.until:
                    queue.remove(fault)
                    continue
                if fault.after > 0:
                    fault.after -= 1
                    return None
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        queue.remove(fault)
                self.injected.append(Injected(now, method, fault.kind, fault.status if fault.kind == "status" else None))
                return fault
        return None

    def release(self) -> None:
        """End every stall now: held calls are answered, no new call is held."""
        for queue in self._pending.values():
            queue[:] = [f for f in queue if f.kind != "stall"]
        if self._release is not None:
            self._release.set()
        self._release = None

    async def hold(self, fault: Fault) -> None:
        if self._release is None:
            self._release = asyncio.Event()
        released = self._release
        if fault.seconds is not None:
            wait: float | None = fault.seconds
        elif fault.until is not None:
            wait = max(fault.until - time.monotonic(), 0.0)
        else:
            wait = None
        try:
            await asyncio.wait_for(released.wait(), wait)
        except asyncio.TimeoutError:
            pass

    def count(self, kind: str, method: str | None = None) -> int:
        return sum(1 for i in self.injected if i.kind == kind and (method is None or i.method == method))


class FaultInjection:
    """The fault controls every fake shares. Needs `self.faults` and `_fault_status`."""

    faults: Faults

    def fail_for(self, method: str, seconds: float, status: int = 500, retry_after: float = 1.0) -> None:
        """Every call of `method` in the next `seconds` answers `status` (429 carries the
        platform's retry-after, like its real rate limiting)."""
        self.faults.add(method, Fault("status", status, retry_after, times=None, until=time.monotonic() + seconds))

    def stall(self, method: str, seconds: float | None = None, *, times: int = 1, after: int = 0) -> None:
        """Hold `times` calls of `method` (after letting `after` through) without a word for
        `seconds` each, or until `release()`; then answer them normally if the client waited."""
        self.faults.add(method, Fault("stall", seconds=seconds, times=times, after=after))

    def stall_for(self, method: str, seconds: float) -> None:
        """The platform goes silent for `seconds`: calls arriving meanwhile wait until then."""
        self.faults.add(method, Fault("stall", times=None, until=time.monotonic() + seconds))

    def release(self) -> None:
        self.faults.release()

    def drop_next(self, method: str, times: int = 1) -> None:
        """Cut the next `times` answers of `method` off halfway through the body (TCP abort)."""
        self.faults.add(method, Fault("drop", times=times))

    def garbage_next(self, method: str, times: int = 1, body: bytes = GARBAGE) -> None:
        """Answer the next `times` calls of `method` with HTTP 200 and `body` (not JSON by
        default; pass JSON of the wrong shape to test that)."""
        self.faults.add(method, Fault("garbage", body=body, times=times))

    def _fault_status(self, fault: Fault) -> web.Response:
        raise NotImplementedError

    async def _with_faults(self, request: web.Request, method: str, answer: Callable[[], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        fault = self.faults.take(method)
        if fault is None:
            return await answer()
        if fault.kind == "status":
            return self._fault_status(fault)
        if fault.kind == "garbage":
            return web.Response(status=200, body=fault.body, content_type="application/json")
        if fault.kind == "stall":
            await self.faults.hold(fault)
            return await answer()
        return await _cut(request, await answer())


async def _cut(request: web.Request, whole: web.StreamResponse) -> web.StreamResponse:
    """Send the status line, the headers (with the full Content-Length) and half the body,
    then abort the connection: the client sees its answer end early."""
    body = whole.body if isinstance(whole, web.Response) and isinstance(whole.body, bytes) else b"{}"
    out = web.StreamResponse(status=whole.status)
    out.content_type = whole.content_type
    out.content_length = len(body)
    await out.prepare(request)
    await out.write(body[: max(len(body) // 2, 1)])
    if request.transport is not None:
        request.transport.abort()
    return out
