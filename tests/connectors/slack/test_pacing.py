"""Pacing after a 429: against a simulated Slack allowance (a token bucket with one second of
burst and whole-second Retry-After, what bench/backfill's fake enforces) on a virtual clock,
and through the real connector against FakeSlack."""

from __future__ import annotations

import math
import time

import pytest

from connectors.base import Account
from connectors.slack.connector import SlackConnector
from connectors.slack.pacing import Pacer
from tests.fakes.slack import FakeSlack


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


class Allowance:
    """`rate` requests a second, holding one second's worth; a refusal says whole seconds."""

    def __init__(self, clock: Clock, rate: float) -> None:
        self.clock, self.rate = clock, rate
        self.tokens, self.at, self.refusals = rate, 0.0, 0

    def retry_after(self) -> int:
        now = self.clock()
        self.tokens, self.at = min(self.rate, self.tokens + (now - self.at) * self.rate), now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0
        self.refusals += 1
        return math.ceil((1 - self.tokens) / self.rate)


async def page_through(pages: int, rate: float, *, pace: bool) -> tuple[float, int]:
    """Virtual seconds and refusals for `pages` requests, each taking 50 ms (about what a page
    costs the hub in bench/backfill), as client.call
    makes them: every attempt through `paced`, every 429 waited out through `refused`."""
    clock = Clock()
    allowance = Allowance(clock, rate)
    pacer = Pacer(clock=clock, sleep=clock.sleep)

    async def request() -> int:
        await clock.sleep(0.05)
        return allowance.retry_after()

    for _ in range(pages):
        while wait := await pacer.paced(request):
            await pacer.refused(wait)
            if not pace:
                pacer.interval = 0.0  # Retry-After alone
    return clock.now, allowance.refusals


async def test_paced_pages_use_the_allowance_almost_whole() -> None:
    floor = 300 / 3
    paced, refusals = await page_through(300, 3, pace=True)
    bursts, burst_refusals = await page_through(300, 3, pace=False)
    assert bursts > 1.15 * floor and burst_refusals > 80  # a refusal every burst, part of each second lost
    assert paced < 1.05 * floor and refusals < 12, (paced, refusals)


async def test_nothing_is_paced_before_a_refusal_and_a_first_refusal_teaches_nothing() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)

    async def noop() -> None:
        return None

    for _ in range(50):
        await pacer.paced(noop)
    assert clock.now == 0 and pacer.interval == 0
    await pacer.refused(5)  # 50 allowed in 0 s, then 5 s: 55 ms apart from now on
    assert pacer.interval == pytest.approx(5 / 49)
    clock.now = 10.0
    await pacer.refused(30)  # refused at once, nothing allowed in between: no rate to learn
    assert pacer.interval == pytest.approx(5 / 49) and clock.now == 40.0


async def test_idle_time_is_not_taken_for_the_rate() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock, sleep=clock.sleep)

    async def noop() -> None:
        return None

    for _ in range(3):
        await pacer.paced(noop)
    clock.now += 600  # the next backfill job, ten minutes later
    for _ in range(11):
        await pacer.paced(noop)
    await pacer.refused(1)  # ten allowed in this run, then a second's wait
    assert pacer.interval == pytest.approx(1 / 10)


async def test_a_stall_of_ours_is_not_taken_for_the_limit() -> None:
    """A request that comes late because the worker was busy elsewhere asked for nothing in
    the meantime: the pace learned at the next refusal is the one learned without the stall."""

    async def noop() -> None:
        return None

    async def learned(stall: float) -> float:
        clock = Clock()
        pacer = Pacer(clock=clock, sleep=clock.sleep)
        for _ in range(4):
            await pacer.paced(noop)
        await pacer.refused(1)  # three allowed, then a second: a third of a second apart
        for i in range(10):
            if i == 5:
                clock.now += stall
            await pacer.paced(noop)
        await pacer.refused(1)
        return pacer.interval

    assert await learned(0.6) == pytest.approx(await learned(0.0))
    assert 0.3 < await learned(0.0) < 0.5  # nine allowed in about 2.9 s, then a second


async def test_the_connector_paces_history_after_slack_refuses(fake: FakeSlack, connector: SlackConnector,
                                                               account: Account, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("connectors.slack.history.PAGE_LIMIT", 1)
    for i in range(8):
        fake.add_history_only("C1", "U1", f"m{i}")
    await connector.list_chats(account)
    page = await connector.backfill(account, "C1", None, None)
    page = await connector.backfill(account, "C1", page.cursor, None)
    fake.fail_next("conversations.history", retry_after=1)
    page = await connector.backfill(account, "C1", page.cursor, None)  # two allowed, then 1 s: 0.5 s apart
    started = time.monotonic()
    for _ in range(3):
        page = await connector.backfill(account, "C1", page.cursor, None)
    assert time.monotonic() - started >= 0.45 * 0.99 * 3  # the retry went at once, these three wait their turn
    assert fake.calls["conversations.history"] == 7

