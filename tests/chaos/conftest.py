"""Chaos tests are bounded in time: one that hangs (a fault nobody recovers from, a call with no
timeout) fails after LIMIT_SECONDS with the stack of every task, instead of holding CI."""

from __future__ import annotations

import asyncio
import io
from typing import AsyncIterator

import pytest

LIMIT_SECONDS = 120.0


def _stacks(loop: asyncio.AbstractEventLoop) -> str:
    out = io.StringIO()
    for task in asyncio.all_tasks(loop):
        out.write(f"--- {task.get_name()}\n")
        task.print_stack(limit=8, file=out)
    return out.getvalue()


@pytest.fixture(autouse=True)
async def bounded(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    loop = asyncio.get_running_loop()
    name = request.function.__qualname__

    plugins = request.config.pluginmanager
    reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")

    def give_up() -> None:
        message = f"{name} still running after {LIMIT_SECONDS:g} s; every task:\n{_stacks(loop)}"
        if reporter is not None and capture is not None:  # past the capture: seen even if the cleanup hangs too
            with capture.global_and_fixture_disabled():
                reporter.write_line(message)
        else:
            print(message, flush=True)
        for task in asyncio.all_tasks(loop):
            if getattr(task.get_coro(), "__qualname__", "") == name:
                task.cancel(f"{name} ran past {LIMIT_SECONDS:g} s")

    timer = loop.call_later(LIMIT_SECONDS, give_up)
    try:
        yield
    finally:
        timer.cancel()
