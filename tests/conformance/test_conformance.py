"""The connector conformance suite: every platform, through the whole hub, on both databases.

Each platform brings a driver (`drivers/<platform>.py`, a `Driver` class) that starts its
loopback fake, connects an account through the public API and plays the people on the other
side. The same checks then run for every platform that has the ability they need, through the
real hub (API + worker + ingest + store): messages exactly once, edits, deletes, replies,
attachments, mentions, reactions, a forced disconnect with messages sent during it, backfill,
send with its echo merged, forged webhooks refused, rate limits obeyed. A platform that lacks
an ability (DingTalk robots are never told about edits) is not asked for it: its driver's
`abilities` say what the platform has, and the README's platform table says the same.
"""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from tests.conformance import drivers as drivers_package
from tests.e2e.harness import RunningHub, e2e_env, fresh_database, running_hub
from tests.waiting import eventually
from workers.jobs import enqueue, jobs_pool

ABILITIES = {"edit", "delete", "reply", "attachment", "mention", "reaction", "backfill", "send", "webhook",
             "disconnect", "rate_limit"}


def _drivers() -> dict[str, type]:
    found = {}
    for info in pkgutil.iter_modules(drivers_package.__path__):
        driver = importlib.import_module(f"{drivers_package.__name__}.{info.name}").Driver
        assert set(driver.abilities) <= ABILITIES, f"{info.name}: unknown abilities {set(driver.abilities) - ABILITIES}"
        found[driver.platform] = driver
    return found


DRIVERS = _drivers()


def having(ability: str) -> list[str]:
    return sorted(p for p, d in DRIVERS.items() if ability in d.abilities)


@dataclass
class Rig:
    platform: str
    driver: Any
    hub: RunningHub
    headers: dict[str, str]
    account_id: str
    history: list[str]  # seeded before the account connected: only history backfill can find them

    async def stored(self, **params: Any) -> list[dict[str, Any]]:
        return await self.hub.messages(self.headers, accountId=self.account_id, **params)

    async def with_text(self, text: str, **params: Any) -> list[dict[str, Any]]:
        return [m for m in await self.stored(**params) if m["text"] == text]

    async def one(self, text: str, **params: Any) -> dict[str, Any]:
        """The one stored message with `text`, once it is there."""
        found = await eventually(lambda: self.with_text(text, **params), what=f"{self.platform}: {text!r} stored")
        assert len(found) == 1, f"{self.platform}: {text!r} stored {len(found)} times"
        return found[0]

    async def account(self) -> dict[str, Any]:
        accounts = (await self.hub.client.get("/api/integrations/accounts", headers=self.headers)).json()["accounts"]
        return next(a for a in accounts if a["id"] == self.account_id)

    async def connected(self) -> bool:
        return (await self.account())["state"] == "connected"


def unique(label: str) -> str:
    return f"{label} {secrets.token_hex(3)}"


@pytest.fixture(scope="module")
async def rig(request: pytest.FixtureRequest, backend: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    platform = request.param
    driver = DRIVERS[platform]()
    extra = await driver.start()
    tmp: Path = tmp_path_factory.mktemp(f"conformance-{platform}")
    try:
        async with fresh_database(backend, tmp) as database:
            async with running_hub(e2e_env(backend, tmp, database, **extra)) as hub:
                headers = await hub.login()
                history = await driver.seed_history(3) if "backfill" in driver.abilities else []
                account_id = await driver.connect(hub, headers)
                rig = Rig(platform, driver, hub, headers, account_id, [str(n) for n in history])
                await eventually(rig.connected, what=f"{platform} listener connected")
                yield rig
    finally:
        await driver.stop()


def per_platform(ability: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("rig", having(ability), indirect=True)


@pytest.mark.parametrize("rig", sorted(DRIVERS), indirect=True)
async def test_messages_land_exactly_once(rig: Rig) -> None:
    texts = [unique(f"hello {i}") for i in range(8)]
    ids = [await rig.driver.post_message(text) for text in texts]
    for text, native_id in zip(texts, ids):
        message = await rig.one(text)
        assert message["nativeId"] == str(native_id) and message["platform"] == rig.platform
        assert message["direction"] == "inbound" and message["isSelf"] is False
    await asyncio.sleep(0.5)  # a late duplicate would show up by now
    stored = [m["text"] for m in await rig.stored()]
    assert all(stored.count(text) == 1 for text in texts)


@per_platform("edit")
async def test_an_edit_changes_the_text_and_keeps_the_first(rig: Rig) -> None:
    first, second = unique("draft"), unique("final")
    native_id = await rig.driver.post_message(first)
    await rig.one(first)
    await rig.driver.edit(native_id, second)
    edited = await rig.one(second)
    assert edited["nativeId"] == str(native_id) and edited["originalText"] == first and edited["editedAt"]
    assert await rig.with_text(first) == []


@per_platform("delete")
async def test_a_delete_is_a_tombstone(rig: Rig) -> None:
    text = unique("regret")
    native_id = await rig.driver.post_message(text)
    await rig.one(text)
    await rig.driver.delete(native_id)
    await eventually(lambda: _none(rig.with_text(text)), what="deleted message hidden")
    (tomb,) = [m for m in await rig.stored(includeDeleted="true") if m["nativeId"] == str(native_id)]
    assert tomb["deletedAt"]


async def _none(found: Any) -> bool:
    return not await found


@per_platform("reply")
async def test_a_reply_points_at_its_parent(rig: Rig) -> None:
    question, answer = unique("question?"), unique("answer")
    parent = await rig.driver.post_message(question)
    await rig.one(question)
    await rig.driver.post_message(answer, reply_to=parent)
    reply = await rig.one(answer)
    assert str(parent) in (reply["replyToId"], reply["threadId"])


@per_platform("attachment")
async def test_attachments_are_kept(rig: Rig) -> None:
    text = unique("see attached")
    await rig.driver.post_message(text, attachment=True)
    message = await rig.one(text)
    assert message["attachments"] and all(isinstance(a, dict) for a in message["attachments"])


@per_platform("mention")
async def test_mentions_are_kept(rig: Rig) -> None:
    text = unique("ping")
    await rig.driver.post_message(text, mention=True)
    message = await eventually(lambda: _containing(rig, text), what="mention stored")
    assert message["mentions"], f"{rig.platform}: no mentions on {message}"


async def _containing(rig: Rig, text: str) -> dict[str, Any] | None:
    """Platforms put the mention into the text themselves: match on the part we wrote."""
    found = [m for m in await rig.stored() if text in m["text"]]
    assert len(found) <= 1
    return found[0] if found else None


@per_platform("reaction")
async def test_reactions_are_added_to_their_message(rig: Rig) -> None:
    text = unique("nice work")
    native_id = await rig.driver.post_message(text)
    await rig.one(text)
    await rig.driver.react(native_id, "👍")
    message = await eventually(lambda: _reacted(rig, text), what="reaction stored")
    assert [r["emoji"] for r in message["reactions"]] in (["👍"], ["+1"], ["thumbsup"], ["THUMBSUP"])


async def _reacted(rig: Rig, text: str) -> dict[str, Any] | None:
    found = await rig.with_text(text)
    return found[0] if found and found[0]["reactions"] else None


@per_platform("disconnect")
async def test_messages_sent_while_the_connection_drops_land_once(rig: Rig) -> None:
    before = unique("before the drop")
    await rig.driver.post_message(before)
    await rig.one(before)
    await rig.driver.drop_connection()
    during = [unique(f"during the drop {i}") for i in range(5)]
    for text in during:
        await rig.driver.post_message(text)
    for text in during:
        await rig.one(text)
    await eventually(rig.connected, what="connected again")
    after = unique("after the drop")
    await rig.driver.post_message(after)
    await rig.one(after)
    assert len(await rig.with_text(before)) == 1


@per_platform("backfill")
async def test_backfill_fills_in_history_and_gaps(rig: Rig) -> None:
    """What the platform held before we connected arrives by the history backfill that
    connecting starts; what we missed later arrives by gap recovery (the job a reconnect runs)."""
    await eventually(lambda: _have(rig, rig.history), timeout=60, what="history from before the account connected")
    await rig.driver.post_message(unique("live, before the gap"))  # gap recovery starts after the newest stored
    missed = [str(n) for n in await rig.driver.seed_history(4)]
    await enqueue(jobs_pool(rig.hub.hub), "backfill", rig.account_id, "gaps", job_id=f"gaps:{rig.account_id}:{time.time()}")
    await eventually(lambda: _have(rig, missed), timeout=60, what="messages missed while away")
    native_ids = [m["nativeId"] for m in await rig.stored()]
    assert all(native_ids.count(n) == 1 for n in rig.history + missed)


async def _have(rig: Rig, native_ids: list[str]) -> bool:
    return set(native_ids) <= {m["nativeId"] for m in await rig.stored()}


async def _send(rig: Rig, text: str) -> dict[str, Any]:
    """Send into the chat a message arrived in (every driver's chat), as a client would."""
    anchor = unique("send anchor")
    await rig.driver.post_message(anchor)
    chat_id = (await rig.one(anchor))["chatId"]
    r = await rig.hub.client.post("/api/messages", headers=rig.headers,
                                  json={"accountId": rig.account_id, "chatId": chat_id, "text": text,
                                        "idempotencyKey": secrets.token_hex(8)})
    assert r.status_code == 201, r.text
    return r.json()


@per_platform("send")
async def test_send_records_the_outbound_message_once(rig: Rig) -> None:
    text = unique("from the hub")
    sent = await _send(rig, text)
    assert sent["direction"] == "outbound" and sent["isSelf"] is True and sent["status"] in ("pending", "sent")
    await eventually(lambda: _delivered(rig, text), what="the platform received our send")
    message = await rig.one(text)
    assert message["id"] == sent["id"] and message["status"] == "sent" and message["nativeId"]
    await asyncio.sleep(0.5)  # an echo of our own message would have merged by now, not added a row
    assert len(await rig.with_text(text)) == 1


async def _delivered(rig: Rig, text: str) -> bool:
    return text in rig.driver.sent_texts()


@per_platform("rate_limit")
async def test_send_obeys_the_platforms_rate_limit(rig: Rig) -> None:
    text = unique("after the limit")
    await rig.driver.rate_limit_next(1)
    await _send(rig, text)
    await eventually(lambda: _delivered(rig, text), timeout=60, what="sent once the limit passed")
    message = await eventually(lambda: _status(rig, text, "sent"), timeout=60, what="status sent")
    assert rig.driver.sent_texts().count(text) == 1 and message["nativeId"]


async def _status(rig: Rig, text: str, status: str) -> dict[str, Any] | None:
    found = await rig.with_text(text)
    return found[0] if found and found[0]["status"] == status else None


@per_platform("webhook")
async def test_a_forged_webhook_is_refused_and_stores_nothing(rig: Rig) -> None:
    before = len(await rig.stored(includeDeleted="true"))
    status = await rig.driver.forged_webhook(rig.hub.url, rig.account_id)
    assert status in (400, 401, 403), f"{rig.platform}: a forged webhook got {status}"
    await asyncio.sleep(0.5)
    assert len(await rig.stored(includeDeleted="true")) == before
