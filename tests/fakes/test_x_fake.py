"""FakeX driven by the real tweepy AsyncClient (its host rewritten as the connector does) and,
for the token endpoint, plain HTTP as X's OAuth 2 docs show it."""

from __future__ import annotations

import time
from typing import AsyncIterator

import httpx
import pytest
import tweepy

from connectors.oauth import pkce_pair
from connectors.x.client import api, close
from tests.fakes.x import FakeX, dm_conversation_id

ME, ALICE = "1600000000000000001", "1600000000000000002"


@pytest.fixture
async def fake() -> AsyncIterator[FakeX]:
    async with FakeX() as x:
        x.add_user(ME, "me")
        x.add_user(ALICE, "alice")
        yield x


@pytest.fixture
async def client(fake: FakeX) -> AsyncIterator[tweepy.asynchronous.AsyncClient]:
    c = api(fake.base_url, fake.issue_token(ME)["access_token"])
    yield c
    await close(c)


async def test_pkce_code_exchange_and_refresh_rotation(fake: FakeX) -> None:
    verifier, challenge = pkce_pair()
    fake.add_code("c1", ME, "http://hub/cb", challenge)
    fake.add_code("c2", ME, "http://hub/cb", challenge)
    auth = (fake.client_id, fake.client_secret)
    async with httpx.AsyncClient(base_url=fake.base_url) as http:
        bad = await http.post("/2/oauth2/token", auth=auth, data={"grant_type": "authorization_code", "code": "c2",
                                                                  "redirect_uri": "http://hub/cb", "code_verifier": "wrong"})
        assert bad.status_code == 400 and bad.json()["error"] == "invalid_request"
        ok = await http.post("/2/oauth2/token", auth=auth, data={"grant_type": "authorization_code", "code": "c1",
                                                                 "redirect_uri": "http://hub/cb", "code_verifier": verifier})
        token = ok.json()
        assert token["token_type"] == "bearer" and token["expires_in"] == 7200 and token["refresh_token"]
        again = await http.post("/2/oauth2/token", auth=auth, data={"grant_type": "authorization_code", "code": "c1",
                                                                    "redirect_uri": "http://hub/cb", "code_verifier": verifier})
        assert again.status_code == 400  # a code is used once
        no_client = await http.post("/2/oauth2/token", data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]})
        assert no_client.status_code == 401
        new = (await http.post("/2/oauth2/token", auth=auth, data={"grant_type": "refresh_token",
                                                                   "refresh_token": token["refresh_token"]})).json()
        assert new["refresh_token"] != token["refresh_token"] and fake.refreshes == 1
        reused = await http.post("/2/oauth2/token", auth=auth, data={"grant_type": "refresh_token",
                                                                     "refresh_token": token["refresh_token"]})
        assert reused.status_code == 400  # rotated: the old refresh token is dead


async def test_me_and_bad_tokens(fake: FakeX, client: tweepy.asynchronous.AsyncClient) -> None:
    me = await client.get_me(user_auth=False)
    assert me["data"] == {"id": ME, "username": "me", "name": "Me"}
    stranger = api(fake.base_url, "not-a-token")
    try:
        with pytest.raises(tweepy.Unauthorized):
            await stranger.get_me(user_auth=False)
    finally:
        await close(stranger)


async def test_mentions_page_newest_first_with_since_id(fake: FakeX, client: tweepy.asynchronous.AsyncClient) -> None:
    tweets = [fake.mention(ALICE, f"t{i}", mentioned=[ME]) for i in range(12)]
    fake.mention(ME, "not about me", mentioned=[ALICE])
    first = await client.get_users_mentions(ME, user_auth=False, max_results=5, expansions=["author_id"])
    assert [t["id"] for t in first["data"]] == [t["id"] for t in tweets[::-1][:5]]
    assert first["includes"]["users"][0]["username"] == "alice" and first["meta"]["next_token"]
    second = await client.get_users_mentions(ME, user_auth=False, max_results=5, pagination_token=first["meta"]["next_token"])
    assert [t["id"] for t in second["data"]] == [t["id"] for t in tweets[::-1][5:10]]
    newer = await client.get_users_mentions(ME, user_auth=False, since_id=tweets[9]["id"])
    assert [t["id"] for t in newer["data"]] == [tweets[11]["id"], tweets[10]["id"]]
    none = await client.get_users_mentions(ME, user_auth=False, since_id=tweets[11]["id"])
    assert none == {"meta": {"result_count": 0}}
    with pytest.raises(tweepy.BadRequest):
        await client.get_users_mentions(ME, user_auth=False, max_results=500)


async def test_dm_events_and_sending(fake: FakeX, client: tweepy.asynchronous.AsyncClient) -> None:
    inbound = fake.dm(ALICE, ME, "hi", media=True)
    events = await client.get_direct_message_events(user_auth=False, expansions=["attachments.media_keys"])
    (event,) = events["data"]
    assert event["dm_conversation_id"] == dm_conversation_id(ME, ALICE) == f"{ME}-{ALICE}"
    assert events["includes"]["media"][0]["media_key"] == inbound["attachments"]["media_keys"][0]
    sent = await client.create_direct_message(participant_id=ALICE, text="hello back", user_auth=False)
    assert sent["data"] == {"dm_conversation_id": f"{ME}-{ALICE}", "dm_event_id": sent["data"]["dm_event_id"]}
    assert fake.sent[-1]["text"] == "hello back" and fake.sent[-1]["participant"] == ALICE
    events = await client.get_direct_message_events(user_auth=False)
    assert [e["text"] for e in events["data"]] == ["hello back", "hi"]  # our own DM comes back: the echo
    with pytest.raises(tweepy.BadRequest):
        await client.create_direct_message(participant_id="42", text="nobody", user_auth=False)


async def test_rate_limit_and_outage(fake: FakeX, client: tweepy.asynchronous.AsyncClient) -> None:
    fake.rate_limit_next(1, seconds=3, path="/2/dm_events")
    await client.get_users_mentions(ME, user_auth=False)  # other endpoints are not limited
    with pytest.raises(tweepy.TooManyRequests) as err:
        await client.get_direct_message_events(user_auth=False)
    assert 2 <= err.value.reset_time - time.time() <= 4
    assert err.value.response.headers["x-rate-limit-remaining"] == "0"
    await client.get_direct_message_events(user_auth=False)
    fake.outage(1)
    with pytest.raises(tweepy.TwitterServerError):
        await client.get_me(user_auth=False)
