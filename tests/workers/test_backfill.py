"""History backfill as a job: chats paged in rounds to their very end, and a rate limit the
connector will not wait out hands the rest to a deferred job that resumes at the saved cursor.
The real Slack connector (slack_sdk) against FakeSlack, on both backends."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, AsyncIterator

import orjson
import pytest

from connectors.base import AccountSpec
from loomi.hub import Hub
from store import accounts as account_store
from tests.e2e.harness import e2e_env, fresh_database, running_hub
from tests.fakes.slack import FakeSlack
from workers import keys
from workers.backfill import backfill_account
from workers.jobs import QUEUE, jobs_pool

SIZES = {"C1": 9, "C2": 3}  # two messages a page, two pages a round: C1 needs three rounds


@pytest.fixture
async def slack_hub(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[Hub, FakeSlack, str]]:
    monkeypatch.setattr("connectors.slack.history.PAGE_LIMIT", 2)
    monkeypatch.setattr("workers.backfill.MAX_PAGES_PER_CHAT", 2)
    async with FakeSlack() as fake, fresh_database(backend, tmp_path) as db:
        fake.add_user("U1", "alice")
        for channel, n in SIZES.items():
            fake.add_channel(channel, channel.lower())
            for i in range(n):
                fake.add_history_only(channel, "U1", f"{channel} {i}")
        async with running_hub(e2e_env(backend, tmp_path, db, LOOMI_SLACK_BASE_URL=fake.base_url), worker=False) as running:
            hub = running.hub
            me = (await running.client.get("/api/remote-auth/user", headers=await running.login())).json()
            spec = AccountSpec(external_id=fake.team_id, name=fake.team_name,
                               credentials={"access_token": fake.bot_token, "bot_user_id": fake.bot_user_id, "team_id": fake.team_id})
            async with hub.engine.begin() as conn:
                account_id = (await account_store.upsert_account(conn, hub.vault, me["id"], "slack", spec))["id"]
            yield hub, fake, account_id


async def queued_chats(hub: Hub) -> list[str]:
    """The chat of every queued envelope, in queue order (delivery id `{channel}:{ts}`)."""
    entries = []
    for stream in keys.inbound_streams():
        entries += await hub.redis.xrange(stream)
    entries.sort(key=lambda entry: tuple(int(part) for part in entry[0].split(b"-")))
    return [orjson.loads(fields[b"e"])["d"] for _, fields in entries]


async def backfill_jobs(hub: Hub) -> list[Any]:
    return [job for job in await jobs_pool(hub).queued_jobs(queue_name=QUEUE) if job.function == "backfill"]


async def test_history_pages_every_chat_to_its_end_round_by_round(slack_hub: tuple[Hub, FakeSlack, str]) -> None:
    hub, fake, account_id = slack_hub
    result = await backfill_account(hub, account_id, "history")
    assert result == {"queued": 12, "chats": 2}
    deliveries = await queued_chats(hub)
    assert len(set(deliveries)) == 12
    # round 1: two pages of C1, all of C2; rounds 2 and 3: the rest of C1
    assert [d.split(":")[0] for d in deliveries] == ["C1"] * 4 + ["C2"] * 3 + ["C1"] * 5
    assert await hub.redis.mget([keys.backfill_cursor(account_id, c) for c in SIZES]) == [b"done", b"done"]
    assert await backfill_jobs(hub) == []  # nothing left for a later job


async def test_a_long_rate_limit_defers_the_rest_to_a_job_that_resumes_at_the_cursor(slack_hub: tuple[Hub, FakeSlack, str]) -> None:
    hub, fake, account_id = slack_hub

    def after_first_page(p: dict[str, Any]) -> None:
        if p["chat"] == "C1" and p["pages"] == 1:  # Slack asks for two minutes: past what call() waits itself
            fake.fail_next("conversations.history", status=429, retry_after=120)

    before = time.time()
    result = await backfill_account(hub, account_id, "history", progress=after_first_page)
    assert result == {"queued": 2, "chats": 2, "continued": True, "retry_in": 120}
    (job,) = await backfill_jobs(hub)
    assert job.args == (account_id, "history", None)
    assert before + 119 <= job.score / 1000 <= time.time() + 121  # deferred by Retry-After

    again = await backfill_account(hub, account_id, *job.args[1:])  # what the worker runs then
    assert again == {"queued": 10, "chats": 2}
    assert len(set(await queued_chats(hub))) == 12  # nothing fetched twice, nothing missed


async def test_a_job_past_its_budget_hands_over_and_the_command_waits_out_rate_limits(
    slack_hub: tuple[Hub, FakeSlack, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    hub, fake, account_id = slack_hub
    result = await backfill_account(hub, account_id, "history", budget=0)
    assert result == {"queued": 4, "chats": 2, "continued": True, "retry_in": 0}  # one round of C1, then out of time
    (job,) = await backfill_jobs(hub)
    assert job.args == (account_id, "history", None)
    await jobs_pool(hub).delete(f"arq:job:{job.job_id}")
    await jobs_pool(hub).zrem(QUEUE, job.job_id)

    # `loomi backfill` (inline) has nobody to hand over to: it waits the rate limit out itself
    monkeypatch.setattr("connectors.slack.client.MAX_RATE_LIMIT_RETRIES", 0)  # the first 429 reaches backfill
    fake.fail_next("conversations.history", status=429, retry_after=1)
    started = time.monotonic()
    done = await backfill_account(hub, account_id, "history", inline=True, budget=0)
    assert done == {"queued": 8, "chats": 2}
    assert time.monotonic() - started >= 0.9
    assert len(set(await queued_chats(hub))) == 12 and await backfill_jobs(hub) == []


async def test_gaps_deferred_by_a_rate_limit_keep_only_the_unfinished_chats(slack_hub: tuple[Hub, FakeSlack, str]) -> None:
    hub, fake, account_id = slack_hub
    newest = {"C1": "1000000000000", "C2": "1000000000000"}  # epoch ms, long before every message

    def after_c2(p: dict[str, Any]) -> None:
        if p["chat"] == "C2" and p["done"]:  # round 2 starts with C1's third page: refused
            fake.fail_next("conversations.history", status=429, retry_after=90)

    result = await backfill_account(hub, account_id, "gaps", newest, progress=after_c2)
    assert result == {"queued": 7, "chats": 2, "continued": True, "retry_in": 90}
    (job,) = await backfill_jobs(hub)
    assert job.args == (account_id, "gaps", {"C1": newest["C1"]})  # C2 is finished: not fetched again

    again = await backfill_account(hub, account_id, *job.args[1:])
    assert again == {"queued": 5, "chats": 2}  # C1 from its top again: the stream drops the 4 it holds
    deliveries = await queued_chats(hub)
    assert len(deliveries) == len(set(deliveries)) == 12
