"""send() against FakeSlack: chat.postMessage, threads, 429 Retry-After, dead tokens."""

from __future__ import annotations

import time

import pytest

from connectors.base import Account, NeedsReauth, Outbound, RateLimited
from connectors.slack.client import MAX_RATE_LIMIT_RETRIES
from connectors.slack.connector import SlackConnector
from connectors.slack.inbound import ts_ms
from tests.connectors.slack.conftest import make_account
from tests.fakes.slack import FakeSlack


async def test_send(fake: FakeSlack, connector: SlackConnector, account: Account) -> None:
    sent = await connector.send(account, Outbound(chat_id="C1", text="hello from the hub"))
    (posted,) = fake.sent_messages
    assert (sent.native_id, sent.chat_id, sent.thread_id) == (posted["ts"], "C1", None)
    assert sent.sent_at == ts_ms(posted["ts"]) and sent.raw["ok"] is True
    assert posted["text"] == "hello from the hub" and "thread_ts" not in posted


async def test_reply_goes_into_the_thread(fake: FakeSlack, connector: SlackConnector, account: Account) -> None:
    parent = fake.post_message("C1", "U1", "question?")
    sent = await connector.send(account, Outbound(chat_id="C1", text="answer", reply_to_id=parent))
    assert sent.thread_id == parent and fake.sent_messages[-1]["thread_ts"] == parent
    reply = fake.post_message("C1", "U1", "follow-up", thread_ts=parent)
    again = await connector.send(account, Outbound(chat_id="C1", text="more", reply_to_id=reply, thread_id=parent))
    assert again.thread_id == parent and fake.sent_messages[-1]["thread_ts"] == parent


async def test_send_obeys_retry_after(fake: FakeSlack, connector: SlackConnector, account: Account) -> None:
    fake.fail_next("chat.postMessage", retry_after=1)
    started = time.monotonic()
    sent = await connector.send(account, Outbound(chat_id="C1", text="patient"))
    assert time.monotonic() - started >= 1.0  # waited as Slack said, then sent: nothing dropped
    assert fake.calls["chat.postMessage"] == 2 and [m["ts"] for m in fake.sent_messages] == [sent.native_id]


async def test_send_gives_up_with_rate_limited_after_bounded_retries(
    fake: FakeSlack, connector: SlackConnector, account: Account
) -> None:
    fake.fail_next("chat.postMessage", retry_after=0, times=MAX_RATE_LIMIT_RETRIES + 1)
    with pytest.raises(RateLimited) as err:
        await connector.send(account, Outbound(chat_id="C1", text="later"))
    assert err.value.retry_after == 0 and fake.sent_messages == []
    assert fake.calls["chat.postMessage"] == MAX_RATE_LIMIT_RETRIES + 1


async def test_long_retry_after_goes_to_the_caller(fake: FakeSlack, connector: SlackConnector,
                                                   account: Account) -> None:
    fake.fail_next("chat.postMessage", retry_after=3600)
    started = time.monotonic()
    with pytest.raises(RateLimited) as err:
        await connector.send(account, Outbound(chat_id="C1", text="much later"))
    assert err.value.retry_after == 3600 and time.monotonic() - started < 1


async def test_send_with_dead_token_needs_reauth(fake: FakeSlack, connector: SlackConnector) -> None:
    with pytest.raises(NeedsReauth):
        await connector.send(make_account(fake, access_token="xoxb-revoked"), Outbound(chat_id="C1", text="x"))
    fake.fail_next("chat.postMessage", status=200, error="token_revoked")
    with pytest.raises(NeedsReauth, match="token_revoked"):
        await connector.send(make_account(fake), Outbound(chat_id="C1", text="x"))
