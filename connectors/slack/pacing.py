"""Pacing a rate-limited Web API method after Slack first refuses it.

Obeying `Retry-After` alone, a backfill bursts until refused, sleeps the whole seconds Slack
asks for, and bursts again. Slack's allowance keeps refilling while we sleep but holds only so
much, so every refusal throws part of it away: with one second's worth of burst, a fifth to a
quarter of the limit went unused (bench/backfill). Paced at the rate the last run of requests
actually got (the wait included), creeping faster after each request until refused again, a
refusal becomes rare and the limit is used almost whole (tests/connectors/slack/test_pacing.py:
2-3% over the floor at 3 requests/s, where bursts lose 19%). Before the first refusal nothing
is paced; a limit counted per minute, with a minute's burst, is paced as well as bursts do.
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, TypeVar

T = TypeVar("T")


class Pacer:
    """One method's pace for one token. Use `paced` for every attempt (retries too) and pass
    `refused` as `client.call`'s sleep, so each 429 teaches the pace before it is waited out."""

    SEEK = 0.99  # the interval after each request, relative to the one before, until paced once refused
    CREEP = 0.998  # the same afterwards: near the limit, where each refusal costs a Retry-After
    IDLE = 1.0  # seconds without a request (and 4 intervals) that end a run: idle time is no rate

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    ) -> None:
        self.clock, self.sleep = clock, sleep
        self.interval = 0.0  # seconds between requests; 0 until the first refusal
        self._speedup = self.SEEK
        self._next = 0.0  # when the next request may go
        self._since: float | None = None  # start of the current run of requests
        self._attempts = 0  # requests sent in this run
        self._last = 0.0  # when the last request went
        self._late = 0.0  # time this run's requests came after their turn: no rate was asked for then

    async def paced(self, request: Callable[[], Awaitable[T]]) -> T:
        now = self.clock()
        if self._since is None or now - self._last > max(self.IDLE, 4 * self.interval):
            self._since, self._attempts, self._late = now, 0, 0.0
        elif self.interval and now > self._next:
            self._late += now - self._next
        slot = max(now, self._next)  # reserved before sleeping: concurrent callers queue up
        self._next = slot + self.interval
        self.interval *= self._speedup
        self._attempts += 1
        self._last = slot
        if slot > now:
            await self.sleep(slot - now)
        return await request()

    async def refused(self, retry_after: float) -> None:
        """The last attempt got a 429: pace at the rate this run got (its allowed requests
        over its time, the wait to come included, less the time our requests came after their
        turn: a busy worker's stall says nothing of the limit), wait as told, start a new run."""
        now = self.clock()
        allowed = self._attempts - 1
        if allowed > 0 and self._since is not None:
            if self.interval:
                self._speedup = self.CREEP
            self.interval = (now - self._since - self._late + retry_after) / allowed
        await self.sleep(retry_after)
        self._since = self._next = self._last = self.clock()
        self._attempts, self._late = 0, 0.0
