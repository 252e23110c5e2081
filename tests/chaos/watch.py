"""What the chaos tests check on every scenario: the store holds each sent message exactly
once, and what the hub says about itself (an account's listener state, `/healthz`) was true
the whole time a fault ran, not just at the end.

`Watch` samples the account list and `/healthz` through the API every `interval` seconds in
the background, each sample tagged with the phase the test is in, so assertions run over the
whole timeline of a fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import sqlalchemy as sa

from store.schema import messages
from tests.e2e.harness import RunningHub


async def stored_ids(hub: RunningHub, account_id: str | None = None) -> list[tuple[str, str]]:
    """(chat id, native id) of every stored message, straight from the database (duplicates
    included: the API could hide them)."""
    query = sa.select(messages.c.chat_id, messages.c.native_id)
    if account_id is not None:
        query = query.where(messages.c.account_id == account_id)
    async with hub.hub.engine.connect() as conn:
        return [(str(c), str(n)) for c, n in (await conn.execute(query)).all()]


def assert_exactly_once(stored: Iterable[tuple[str, str]], sent: Iterable[tuple[str, str]]) -> None:
    """Same count, same distinct ids: nothing lost, nothing twice, nothing invented."""
    stored_n, sent_n = Counter(stored), Counter(sent)
    twice = {k: n for k, n in stored_n.items() if n > 1}
    missing = sent_n.keys() - stored_n.keys()
    extra = stored_n.keys() - sent_n.keys()
    assert not twice and not missing and not extra and sum(stored_n.values()) == sum(sent_n.values()), (
        f"stored {sum(stored_n.values())} rows for {len(sent_n)} sent; twice: {list(twice)[:5]}, "
        f"missing: {sorted(missing)[:5]} ({len(missing)}), not sent: {sorted(extra)[:5]} ({len(extra)})"
    )


async def all_stored(hub: RunningHub, sent: list[tuple[str, str]], account_id: str | None = None) -> bool:
    """For `eventually`: every sent id is in the database (then assert_exactly_once)."""
    try:
        have = set(await stored_ids(hub, account_id))
    except Exception:  # noqa: BLE001 - the database may be the thing that is down
        return False
    return set(sent) <= have


@dataclass
class Sample:
    at: float  # when the answers were in
    phase: str  # the phase when the sample began
    states: dict[str, tuple[str, str, str]] | None  # account -> (state, detail, worker); None: listing failed
    health_status: int | None  # None: /healthz did not answer in time
    health: dict[str, Any] = field(default_factory=dict)
    health_seconds: float = 0.0
    began: float = 0.0


class Watch:
    """Samples account states and /healthz in the background, tagged by phase."""

    def __init__(self, hub: RunningHub, headers: dict[str, str], *, interval: float = 0.1, health_timeout: float = 5.0) -> None:
        self.hub, self.headers, self.interval, self.health_timeout = hub, headers, interval, health_timeout
        self.samples: list[Sample] = []
        self.current = "start"
        self.started: dict[str, float] = {"start": time.monotonic()}
        self._task: asyncio.Task[None] | None = None

    def phase(self, name: str) -> None:
        self.current = name
        self.started[name] = time.monotonic()

    def during(self, phase: str, *, after: float = 0.0, whole: bool = True) -> list[Sample]:
        """Samples taken inside `phase` (`whole`: begun and answered in it), leaving out its
        first `after` seconds (time to notice)."""
        start = self.started.get(phase, 0.0)
        end = min([t for t in self.started.values() if t > start], default=float("inf"))
        return [s for s in self.samples if start + after <= s.began < end and (not whole or s.at <= end)]

    def states_of(self, account_id: str, samples: list[Sample]) -> list[tuple[str, str, str]]:
        return [s.states[account_id] for s in samples if s.states is not None and account_id in s.states]

    async def latest(self, account_id: str) -> tuple[str, str, str] | None:
        """The account's (state, detail, worker) right now."""
        states = await self._states()
        return states.get(account_id) if states else None

    async def _states(self) -> dict[str, tuple[str, str, str]] | None:
        try:
            r = await self.hub.client.get("/api/integrations/accounts", headers=self.headers, timeout=2.5)
            if r.status_code != 200:
                return None
            return {a["id"]: (a["state"], a["stateDetail"] or "", a["worker"] or "") for a in r.json()["accounts"]}
        except Exception:  # noqa: BLE001 - a failing listing is a sample too
            return None

    async def _health(self) -> tuple[int | None, dict[str, Any], float]:
        began = time.monotonic()
        try:
            r = await self.hub.client.get("/healthz", timeout=self.health_timeout)
            return r.status_code, r.json(), time.monotonic() - began
        except Exception:  # noqa: BLE001
            return None, {}, time.monotonic() - began

    async def sample(self) -> Sample:
        phase, began = self.current, time.monotonic()
        (status, body, took), states = await asyncio.gather(self._health(), self._states())
        sample = Sample(time.monotonic(), phase, states, status, body, took, began)
        self.samples.append(sample)
        return sample

    async def _run(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self.interval)

    async def __aenter__(self) -> "Watch":
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    @contextlib.contextmanager
    def explained(self, account_id: str) -> Iterator[None]:
        """A failed assertion inside carries the account's timeline."""
        try:
            yield
        except AssertionError as err:
            raise AssertionError(f"{err}\n--- what the hub said ---\n{self.timeline(account_id)}") from None

    def timeline(self, account_id: str) -> str:
        """A compact history for failure messages: phase, seconds in, state, /healthz."""
        rows, last = [], None
        for s in self.samples:
            state = s.states.get(account_id) if s.states else None
            row = (s.phase, state[0] if state else "?", (state[1] if state else "")[:60], s.health_status)
            if row != last:
                rows.append(f"{s.phase}+{s.at - self.started.get(s.phase, s.at):.1f}s: {row[1]} {row[2]!r} healthz={row[3]}")
                last = row
        return "\n".join(rows[-40:])
