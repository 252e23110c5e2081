"""send() and account_from_token() against FakeX with tweepy's real AsyncClient."""

from __future__ import annotations

import time

import pytest

from connectors.base import Account, NeedsReauth, Outbound, RateLimited
from connectors.x.connector import XConnector
from tests.connectors.x.conftest import ALICE, BOB, ME
from tests.fakes.x import FakeX, dm_conversation_id


async def test_send_a_dm_to_a_person_and_to_a_group(fake: FakeX, connector: XConnector, account: Account) -> None:
    sent = await connector.send(account, Outbound(chat_id=dm_conversation_id(ME, ALICE), text="hello alice"))
    assert fake.sent[-1] == {"participant": ALICE, "text": "hello alice", "event_id": sent.native_id}
    assert sent.chat_id == dm_conversation_id(ME, ALICE) and sent.raw["data"]["dm_event_id"] == sent.native_id
    group = fake.add_group([ME, ALICE, BOB])
    sent = await connector.send(account, Outbound(chat_id=group, text="hello all"))
    assert fake.sent[-1] == {"conversation": group, "text": "hello all", "event_id": sent.native_id}
    assert sent.chat_id == group


async def test_tweet_threads_and_empty_texts_are_refused_before_calling_x(fake: FakeX, connector: XConnector,
                                                                         account: Account) -> None:
    for outbound in (Outbound(chat_id="t:1445880000000000000", text="public reply"),
                     Outbound(chat_id=dm_conversation_id(ME, ALICE), text="")):
        with pytest.raises(ValueError):
            await connector.send(account, outbound)
    assert fake.sent == [] and not [c for c in fake.calls if c[0] == "POST"]


async def test_send_reports_the_rate_limit_reset_and_a_revoked_token(fake: FakeX, connector: XConnector,
                                                                    account: Account) -> None:
    fake.rate_limit_next(1, seconds=30, path="/2/dm_conversations")
    with pytest.raises(RateLimited) as err:
        await connector.send(account, Outbound(chat_id=dm_conversation_id(ME, ALICE), text="too soon"))
    assert 28 <= err.value.retry_after <= 31 and fake.sent == []
    fake.revoke(account.credentials["access_token"])
    with pytest.raises(NeedsReauth):
        await connector.send(account, Outbound(chat_id=dm_conversation_id(ME, ALICE), text="revoked"))


async def test_account_from_token_asks_x_who_it_is(fake: FakeX, connector: XConnector) -> None:
    token = fake.issue_token(ME)
    spec = await connector.account_from_token(token)
    assert (spec.external_id, spec.name) == (ME, "@loomi_person")
    assert spec.credentials["access_token"] == token["access_token"] and spec.credentials["refresh_token"] == token["refresh_token"]
    assert spec.credentials["user_id"] == ME and spec.credentials["expires_at"] == spec.expires_at
    assert abs(spec.expires_at - (time.time() + 7200) * 1000) < 5000
    assert ("GET", "/2/users/me", {}) in fake.calls
    with pytest.raises(NeedsReauth):
        await connector.account_from_token({"access_token": "forged", "expires_in": 7200})
    with pytest.raises(ValueError):
        await connector.account_from_token({"error": "invalid_request"})

