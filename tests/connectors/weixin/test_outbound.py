"""send() against the loopback iLink API: the chat's context_token, our client_id, 429s, -14."""

from __future__ import annotations

import time

import pytest

from config.settings import PlatformSettings
from connectors.base import Envelope, NeedsReauth, Outbound, RateLimited
from connectors.weixin.inbound import normalize
from connectors.weixin.outbound import NoContext, send
from tests.connectors.weixin.conftest import ALICE, BOB, make_account
from tests.fakes.weixin import FakeWeixin


def _account(fake: FakeWeixin, token: str):
    return make_account(fake, token)


def to(fake: FakeWeixin, token: str, chat: str, text: str) -> Outbound:
    """What the send path hands the connector: the chat's newest inbound payload, as stored."""
    newest = next((m for m in reversed(fake.pending(token)) if (m.get("group_id") or m["from_user_id"]) == chat), None)
    return Outbound(chat_id=chat, text=text, last_inbound=newest)


async def test_send_uses_the_newest_context_token(fake: FakeWeixin, token: str, settings: PlatformSettings) -> None:
    fake.post_message(token, ALICE, "hi")
    fake.post_message(token, ALICE, "still there?")  # the newer message's token is the one to use
    sent = await send(settings.base_url, _account(fake, token), to(fake, token, ALICE, "hello Alice"), budget=5)
    wire = fake.sent[-1]
    assert wire["context_token"] == fake.context_token(token, ALICE)
    assert (wire["to_user_id"], wire["message_type"], wire["message_state"]) == (ALICE, 2, 2)
    assert wire["item_list"] == [{"type": 1, "text_item": {"text": "hello Alice"}}]
    assert (sent.native_id, sent.chat_id) == (wire["client_id"], ALICE) and sent.native_id.startswith("loomi-")
    assert abs(sent.sent_at - time.time() * 1000) < 5000 and "context_token" not in sent.raw
    echo = normalize(Envelope("weixin", "a", "1", 0, {**sent.raw, "from_user_id": fake.bot_id(token), "seq": 1}),
                     _account(fake, token))[0]
    assert (echo.chat_id, echo.native_id, echo.message.is_self) == (sent.chat_id, sent.native_id, True)  # an echo merges
    assert fake.bad_requests == []


async def test_send_keeps_a_message_id_when_ilink_gives_one(fake: FakeWeixin, token: str, settings: PlatformSettings) -> None:
    fake.send_returns_message_id = True
    fake.post_message(token, ALICE, "hi")
    sent = await send(settings.base_url, _account(fake, token), to(fake, token, ALICE, "ok"), budget=5)
    assert isinstance(sent.raw["message_id"], int) and sent.native_id == fake.sent[-1]["client_id"]


async def test_no_context_token_is_refused_before_calling(fake: FakeWeixin, token: str, settings: PlatformSettings) -> None:
    fake.post_message(token, ALICE, "hi")
    with pytest.raises(NoContext) as err:
        await send(settings.base_url, _account(fake, token), to(fake, token, BOB, "cold message"), budget=5)
    assert BOB in str(err.value) and fake.calls["sendmessage"] == 0
    with pytest.raises(ValueError):  # a stored payload without a token (an old row, a group system note)
        await send(settings.base_url, _account(fake, token), Outbound(chat_id=ALICE, text="x", last_inbound={"seq": 1}), budget=5)
    for text in ("", "   ", "x" * 4001):
        with pytest.raises(ValueError):
            await send(settings.base_url, _account(fake, token), to(fake, token, ALICE, text), budget=5)
    assert fake.sent == []


async def test_a_stale_context_token_is_the_platforms_refusal(fake: FakeWeixin, token: str, settings: PlatformSettings) -> None:
    fake.post_message(token, ALICE, "hi")
    stale = Outbound(chat_id=ALICE, text="x", last_inbound={**fake.pending(token)[0], "context_token": "stale"})
    with pytest.raises(Exception) as err:
        await send(settings.base_url, _account(fake, token), stale, budget=5)
    assert "ret -2" in str(err.value) and fake.sent == []


async def test_send_waits_out_a_short_429(fake: FakeWeixin, token: str, settings: PlatformSettings) -> None:
    fake.post_message(token, ALICE, "hi")
    fake.fail_next("sendmessage", retry_after=1)
    started = time.monotonic()
    await send(settings.base_url, _account(fake, token), to(fake, token, ALICE, "after"), budget=5)
    assert time.monotonic() - started >= 1.0 and len(fake.sent) == 1 and fake.calls["sendmessage"] == 2


async def test_send_raises_rate_limited_beyond_the_budget(fake: FakeWeixin, token: str, settings: PlatformSettings) -> None:
    fake.post_message(token, ALICE, "hi")
    fake.fail_next("sendmessage", retry_after=1)
    fake.fail_next("sendmessage", retry_after=7)
    started = time.monotonic()
    with pytest.raises(RateLimited) as err:
        await send(settings.base_url, _account(fake, token), to(fake, token, ALICE, "too many"), budget=2)
    assert err.value.retry_after == 7 and 1.0 <= time.monotonic() - started < 2.0 and fake.sent == []


async def test_expired_session_needs_reauth(fake: FakeWeixin, token: str, settings: PlatformSettings) -> None:
    fake.post_message(token, ALICE, "hi")
    outbound = to(fake, token, ALICE, "x")
    fake.expire_session(token)
    with pytest.raises(NeedsReauth) as err:
        await send(settings.base_url, _account(fake, token), outbound, budget=5)
    assert token not in str(err.value)
