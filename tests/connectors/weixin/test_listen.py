"""The getupdates listener against the loopback iLink API (tests/fakes/weixin.py)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import AsyncIterator

import pytest

from config.settings import PlatformSettings
from connectors.base import AccountState, ChangeKind, NeedsReauth
from connectors.weixin.client import ILinkError
from connectors.weixin.inbound import normalize
from connectors.weixin.listen import listen
from tests.connectors.weixin.conftest import ALICE, BOB, EmitFailed, RecordingContext, make_account
from tests.fakes.weixin import FakeWeixin
from tests.waiting import wait_until


@contextlib.asynccontextmanager
async def running(settings: PlatformSettings, ctx: RecordingContext) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(listen(settings.base_url, ctx, retry_delay=0.05))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def post(fake: FakeWeixin, token: str, n: int, who: str = ALICE, start: int = 0) -> list[str]:
    return [str(fake.post_message(token, who, f"message {start + i}")) for i in range(n)]


async def test_every_message_emitted_once_in_order_with_cursor_and_tokens(fake: FakeWeixin, token: str, settings: PlatformSettings) -> None:
    ids = post(fake, token, 3)
    ctx = RecordingContext(make_account(fake, token))
    async with running(settings, ctx):
        await wait_until(lambda: len(ctx.envelopes) == 3)
        ids += post(fake, token, 2, who=BOB, start=3)
        await wait_until(lambda: len(ctx.envelopes) == 5)
        await wait_until(lambda: fake.cursors_seen[-1] == ctx.resume["buf"])  # the next poll acknowledged them
    assert ctx.ids == ids
    assert ctx.states == [AccountState.CONNECTED] and fake.calls["msg/notifystart"] == 1
    previous = ""
    for batch, resume in ctx.emits:  # the cursor travels with exactly the batch it moves past
        assert resume is not None
        covered = {str(m["message_id"]) for m in fake.pending(token, previous)} - {str(m["message_id"]) for m in fake.pending(token, resume["buf"])}
        assert covered == {e.delivery_id for e in batch}
        previous = resume["buf"]
    assert set(ctx.resume) == {"buf"}
    first = ctx.envelopes[0]
    assert (first.platform, first.account_id, first.source) == ("weixin", "acc-weixin-1", "listen")
    assert first.payload == fake.pending(token)[0]  # the WeixinMessage exactly as sent, context_token included
    assert first.payload["context_token"] == fake.pending(token)[0]["context_token"]
    assert [c.message.text for e in ctx.envelopes for c in normalize(e, ctx.account)] == [f"message {i}" for i in range(5)]
    assert fake.bad_requests == []  # every call carried the iLink headers and base_info


async def test_restart_from_saved_resume_does_not_re_emit(fake: FakeWeixin, token: str, settings: PlatformSettings) -> None:
    first = post(fake, token, 3)
    ctx = RecordingContext(make_account(fake, token))
    async with running(settings, ctx):
        await wait_until(lambda: len(ctx.envelopes) == 3)
    later = post(fake, token, 2, start=3)
    again = RecordingContext(make_account(fake, token), resume=ctx.resume)
    async with running(settings, again):
        await wait_until(lambda: len(again.envelopes) >= 2)
        await asyncio.sleep(0.3)
    assert ctx.ids == first and again.ids == later


async def test_nothing_is_acknowledged_before_emit_succeeds(fake: FakeWeixin, token: str, settings: PlatformSettings) -> None:
    ids = post(fake, token, 3)
    ctx = RecordingContext(make_account(fake, token))
    ctx.fail_emits = 1
    with pytest.raises(EmitFailed):
        await asyncio.wait_for(listen(settings.base_url, ctx), 5)
    assert ctx.resume == {} and set(fake.cursors_seen) == {""}  # never asked past them
    async with running(settings, ctx):  # the supervisor restarts it with the same (empty) resume
        await wait_until(lambda: len(ctx.envelopes) == 3)
    assert ctx.ids == ids


async def test_a_dropped_poll_is_resumed_in_place_without_loss(fake: FakeWeixin, token: str, settings: PlatformSettings) -> None:
    ids = post(fake, token, 2)
    ctx = RecordingContext(make_account(fake, token))
    async with running(settings, ctx) as task:
        await wait_until(lambda: len(ctx.envelopes) == 2)
        await asyncio.sleep(0.2)  # hanging in the next poll
        fake.drop_connections()
        ids += post(fake, token, 3, start=2)  # sent while the connection is down
        await wait_until(lambda: len(ctx.envelopes) == 5)
        fake.drop_connections()
        fake.drop_connections()
        ids += post(fake, token, 1, start=5)
        await wait_until(lambda: len(ctx.envelopes) == 6)
        assert not task.done()
    assert ctx.ids == ids and len(set(ctx.ids)) == 6 and ctx.states == [AccountState.CONNECTED]


async def test_long_poll_is_released_by_a_new_message(fake: FakeWeixin, token: str, settings: PlatformSettings) -> None:
    fake.poll_hold = 20
    ctx = RecordingContext(make_account(fake, token))
    async with running(settings, ctx):
        await wait_until(lambda: fake.calls["getupdates"] >= 1)
        await asyncio.sleep(0.3)
        started = time.monotonic()
        post(fake, token, 1)
        await wait_until(lambda: len(ctx.envelopes) == 1, timeout=3)
        assert time.monotonic() - started < 1.0


async def test_429_is_waited_out_in_place(fake: FakeWeixin, token: str, settings: PlatformSettings) -> None:
    fake.fail_next("getupdates", retry_after=1)
    ids = post(fake, token, 2)
    ctx = RecordingContext(make_account(fake, token))
    started = time.monotonic()
    async with running(settings, ctx) as task:
        await wait_until(lambda: len(ctx.envelopes) == 2, timeout=5)
        assert time.monotonic() - started >= 1.0 and not task.done()
    assert ctx.ids == ids and fake.calls["getupdates"] >= 2


async def test_session_expired_needs_reauth(fake: FakeWeixin, token: str, settings: PlatformSettings) -> None:
    ctx = RecordingContext(make_account(fake, token))
    task = asyncio.create_task(listen(settings.base_url, ctx))
    await wait_until(lambda: fake.calls["getupdates"] >= 1)
    fake.expire_session(token)
    with pytest.raises(NeedsReauth) as err:
        await asyncio.wait_for(task, 5)
    assert "-14" in str(err.value) and token not in str(err.value)
    calls = fake.calls["getupdates"]
    unknown = make_account(fake, token)
    unknown.credentials = {**unknown.credentials, "bot_token": token[::-1]}
    with pytest.raises(NeedsReauth):  # an unknown token fails at once, before any poll
        await asyncio.wait_for(listen(settings.base_url, RecordingContext(unknown)), 5)
    assert fake.calls["getupdates"] == calls
    no_token = make_account(fake, token)
    no_token.credentials = {}
    with pytest.raises(NeedsReauth):
        await listen(settings.base_url, RecordingContext(no_token))


async def test_repeated_refusals_go_to_the_supervisor(fake: FakeWeixin, token: str, settings: PlatformSettings) -> None:
    fake.fail_next("getupdates", status=200, body={"ret": -1, "errmsg": "system busy"}, times=3)
    ctx = RecordingContext(make_account(fake, token))
    with pytest.raises(ILinkError) as err:
        await asyncio.wait_for(listen(settings.base_url, ctx, retry_delay=0.05), 5)
    assert err.value.ret == -1 and fake.calls["getupdates"] == 3
    fake.fail_next("getupdates", status=200, body={"ret": -1}, times=2)  # two, then success: in place
    ids = post(fake, token, 1)
    async with running(settings, ctx) as task:
        await wait_until(lambda: len(ctx.envelopes) == 1)
        assert not task.done()
    assert ctx.ids == ids


async def test_recall_quote_group_and_attachments_arrive(fake: FakeWeixin, token: str, settings: PlatformSettings) -> None:
    first = fake.post_message(token, ALICE, "original")
    fake.post_message(token, ALICE, "replying", quote=first)
    fake.post_message(token, BOB, "group hi", group_id="g1@chatroom")
    fake.post_message(token, ALICE, items=[{"type": 4, "file_item": {"file_name": "a.pdf", "len": "12"}}])
    fake.recall(token, first)
    ctx = RecordingContext(make_account(fake, token))
    async with running(settings, ctx):
        await wait_until(lambda: len(ctx.envelopes) == 5)
    changes = [c for e in ctx.envelopes for c in normalize(e, ctx.account)]
    assert [c.kind for c in changes] == [ChangeKind.UPSERT] * 4 + [ChangeKind.DELETE]
    assert changes[1].message.reply_to_id == str(first) and changes[2].chat_id == "g1@chatroom"
    assert changes[3].message.attachments[0].name == "a.pdf" and changes[4].native_id == str(first)
    assert len(set(ctx.ids)) == 5  # the recall is a delivery of its own



async def test_an_empty_cursor_in_an_answer_never_rewinds(fake: FakeWeixin, token: str, settings: PlatformSettings) -> None:
    ids = post(fake, token, 2)
    ctx = RecordingContext(make_account(fake, token))
    async with running(settings, ctx):
        await wait_until(lambda: len(ctx.envelopes) == 2)
        saved = ctx.resume["buf"]
        fake.fail_next("getupdates", status=200, body={"ret": 0, "msgs": [], "get_updates_buf": ""})
        ids += post(fake, token, 1, start=2)
        await wait_until(lambda: len(ctx.envelopes) == 3)
        await asyncio.sleep(0.2)
    assert ctx.ids == ids and all(r and r["buf"] for _, r in ctx.emits) and ctx.resume["buf"] != saved


async def test_an_unreachable_server_goes_to_the_supervisor(settings: PlatformSettings, fake: FakeWeixin, token: str) -> None:
    account = make_account(fake, token)
    await fake.stop()
    with pytest.raises(Exception) as err:
        await asyncio.wait_for(listen(settings.base_url, RecordingContext(account), retry_delay=0.05), 10)
    assert not isinstance(err.value, asyncio.TimeoutError)
