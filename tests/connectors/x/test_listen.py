"""listen() against FakeX with tweepy's real AsyncClient: history on the first poll, positions
saved with the queue, no duplicates across restarts, per-endpoint waits until
x-rate-limit-reset, outages, rejected and expired tokens."""

from __future__ import annotations

import asyncio

import pytest

from connectors.base import Account, AccountState, NeedsReauth, RateLimited
from connectors.x.client import TokenExpired
from connectors.x.connector import XConnector
from tests.connectors.x.conftest import ALICE, BOB, ME, RecordingContext, make_account, x_settings
from tests.fakes.x import FakeX
from tests.waiting import wait_until


class Listening:
    def __init__(self, connector: XConnector, ctx: RecordingContext) -> None:
        self.connector, self.ctx = connector, ctx
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "Listening":
        self.task = asyncio.create_task(self.connector.listen(self.ctx))
        await wait_until(lambda: AccountState.CONNECTED in self.ctx.states() or self.task.done())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def test_history_then_new_dms_and_mentions_once_with_positions(fake: FakeX, account: Account) -> None:
    connector = XConnector(x_settings(fake, LOOMI_X_HISTORY_PAGES="3"))
    history = [fake.dm(ALICE, ME, f"old {i}") for i in range(150)]  # two pages of 100
    fake.dm(ALICE, BOB, "not ours")
    ctx = RecordingContext(account)
    async with Listening(connector, ctx):
        await wait_until(lambda: len(ctx.emitted) == 150)
        assert ctx.texts() == [f"old {i}" for i in range(150)]  # oldest first
        assert ctx.resume == {"mentions_since_id": None, "dm_last_id": history[-1]["id"]}
        tweet = fake.mention(ALICE, "look at this", mentioned=[ME, BOB], media=True)
        dm = fake.dm(ALICE, ME, "new one")
        await wait_until(lambda: len(ctx.emitted) == 152)
        await asyncio.sleep(0.3)  # several more polls: nothing is emitted twice
    assert len(ctx.emitted) == 152 and len(set(e.delivery_id for e in ctx.emitted)) == 152
    assert ctx.resume == {"mentions_since_id": tweet["id"], "dm_last_id": dm["id"]}
    mention = next(e for e in ctx.emitted if e.delivery_id == f"tweet:{tweet['id']}")
    assert sorted(u["username"] for u in mention.payload["users"]) == ["alice", "bob", "loomi_person"] and mention.payload["media"]
    (change,) = connector.normalize(mention, account)
    assert change.message.attachments and ME in change.message.mentions
    polls = [q for m, p, q in fake.calls if p == f"/2/users/{ME}/mentions"]
    assert polls[-1]["since_id"] == tweet["id"]  # the mentions timeline is asked only for newer ones


async def test_a_restart_resumes_from_the_saved_positions(fake: FakeX, connector: XConnector, account: Account) -> None:
    ctx = RecordingContext(account)
    fake.mention(ALICE, "first", mentioned=[ME])
    fake.dm(ALICE, ME, "first dm")
    async with Listening(connector, ctx):
        await wait_until(lambda: len(ctx.emitted) == 2)
    later = [fake.dm(ALICE, ME, "while away"), fake.mention(ALICE, "while away too", mentioned=[ME])]
    again = RecordingContext(account, resume=dict(ctx.resume))
    async with Listening(connector, again):
        await wait_until(lambda: len(again.emitted) == 2)
        await asyncio.sleep(0.2)
    assert sorted(again.texts()) == sorted(e["text"] for e in later)


async def test_a_rate_limited_endpoint_waits_for_its_reset_while_the_other_polls(fake: FakeX, connector: XConnector,
                                                                                account: Account) -> None:
    ctx = RecordingContext(account)
    async with Listening(connector, ctx):
        fake.rate_limit_next(1, seconds=2, path=f"/2/users/{ME}/mentions")
        calls_before = len(fake.calls)
        await wait_until(lambda: AccountState.BACKOFF in ctx.states(), timeout=3)
        detail = next(d for name, (s, d) in [c for c in ctx.calls if c[0] == "report"] if s is AccountState.BACKOFF)
        assert "mentions" in detail and "reset" in detail
        fake.dm(ALICE, ME, "DMs still arrive")
        await wait_until(lambda: "DMs still arrive" in ctx.texts(), timeout=3)
        limited = [c for c in fake.calls[calls_before:] if c[1] == f"/2/users/{ME}/mentions"]
        assert len(limited) == 1  # the 429 itself; no call to that endpoint until its reset
        fake.mention(ALICE, "after the reset", mentioned=[ME])
        await wait_until(lambda: any("after the reset" in t for t in ctx.texts()), timeout=6)
        assert ctx.states()[-1] is AccountState.CONNECTED
    backoffs = [d for name, (s, d) in [c for c in ctx.calls if c[0] == "report"] if s is AccountState.BACKOFF]
    assert len(backoffs) == 1  # reported once, with the reset time, not on every poll


async def test_a_reset_beyond_the_budget_raises_rate_limited(fake: FakeX, account: Account) -> None:
    connector = XConnector(x_settings(fake, LOOMI_X_RATE_LIMIT_BUDGET_SECONDS="5"))
    fake.rate_limit_next(1, seconds=120, path="/2/dm_events")
    with pytest.raises(RateLimited) as err:
        await asyncio.wait_for(connector.listen(RecordingContext(account)), 5)
    assert 100 <= err.value.retry_after <= 121


async def test_an_outage_backs_off_and_comes_back(fake: FakeX, connector: XConnector, account: Account) -> None:
    ctx = RecordingContext(account)
    async with Listening(connector, ctx):
        fake.outage(3)
        sent = [fake.dm(ALICE, ME, f"during {i}") for i in range(3)]
        await wait_until(lambda: len(ctx.emitted) == 3, timeout=10)
        await wait_until(lambda: ctx.states()[-1] is AccountState.CONNECTED)
    assert AccountState.BACKOFF in ctx.states() and ("reconnected", None) in ctx.calls
    assert ctx.texts() == [e["text"] for e in sent]


async def test_a_revoked_token_needs_reauth_and_an_expired_one_waits_for_refresh(fake: FakeX, connector: XConnector) -> None:
    revoked = make_account(fake)
    fake.revoke(revoked.credentials["access_token"])
    with pytest.raises(NeedsReauth, match="X refused the token"):
        await asyncio.wait_for(connector.listen(RecordingContext(revoked)), 5)
    fake.forbidden.add(ME)
    with pytest.raises(NeedsReauth, match="not permitted"):
        await asyncio.wait_for(connector.listen(RecordingContext(make_account(fake))), 5)
    fake.forbidden.clear()
    expired = make_account(fake, ttl=0)
    with pytest.raises(TokenExpired):
        await asyncio.wait_for(connector.listen(RecordingContext(expired)), 5)


async def test_history_is_capped_and_an_edited_tweet_edits_the_first(fake: FakeX, account: Account) -> None:
    connector = XConnector(x_settings(fake, LOOMI_X_HISTORY_PAGES="1"))
    for i in range(130):
        fake.dm(ALICE, ME, f"old {i}")
    first = fake.mention(ALICE, "draft", mentioned=[ME])
    ctx = RecordingContext(account)
    async with Listening(connector, ctx):
        await wait_until(lambda: len(ctx.emitted) == 101)
        fake.mention(ALICE, "final", mentioned=[ME], edit_of=first["id"])
        await wait_until(lambda: len(ctx.emitted) == 102)
    dms = [t for t in ctx.texts() if t.startswith("old")]
    assert dms == [f"old {i}" for i in range(30, 130)]  # the newest page only, oldest first
    (edit,) = connector.normalize(ctx.emitted[-1], account)
    assert edit.kind.value == "edit" and edit.native_id == first["id"] and edit.message.text.endswith("final")
