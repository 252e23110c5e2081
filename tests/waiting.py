"""Waiting for something to become true in tests, with a deadline instead of a fixed sleep."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable


async def wait_until(condition: Callable[[], object], timeout: float = 5.0, interval: float = 0.01) -> None:
    """Poll a plain condition until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 30, interval: float = 0.1, what: str = "") -> Any:
    """Poll an async check until it returns something truthy; returns that."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what or check}; last: {last!r}")
