"""The shared OAuth machinery: single-use state bound to user and platform, PKCE S256."""

from __future__ import annotations

import base64
import hashlib
from urllib.parse import parse_qs, urlparse

import pytest
from redis.asyncio import Redis

from config.platforms import PLATFORMS
from config.settings import load_settings
from connectors import oauth
from tests.conftest import REDIS_URL


@pytest.fixture
async def redis():
    client = Redis.from_url(f"{REDIS_URL}/13")
    yield client
    await client.flushdb()
    await client.aclose()


async def test_pkce_s256_for_providers_that_support_it(redis) -> None:
    settings = load_settings({"LOOMI_X_CLIENT_ID": "cid", "LOOMI_X_CLIENT_SECRET": "s"}).platform("x")
    url, state = await oauth.start(redis, PLATFORMS["x"], settings, user_id="user_1", redirect_uri="http://127.0.0.1/cb")
    params = {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}
    assert params["code_challenge_method"] == "S256" and params["state"] == state
    flow = await oauth.consume_state(redis, state, "x", "user_1")
    assert flow.verifier and 43 <= len(flow.verifier) <= 128
    expected = base64.urlsafe_b64encode(hashlib.sha256(flow.verifier.encode()).digest()).decode().rstrip("=")
    assert params["code_challenge"] == expected
    assert params["scope"] == " ".join(PLATFORMS["x"].scopes)


async def test_state_is_single_use_and_bound_to_user_and_platform(redis) -> None:
    settings = load_settings({}).platform("slack")
    _, state = await oauth.start(redis, PLATFORMS["slack"], settings, user_id="user_1", redirect_uri="http://h/cb")
    with pytest.raises(oauth.OAuthError):
        await oauth.consume_state(redis, state, "slack", "user_2")  # someone else's state: burnt, refused
    with pytest.raises(oauth.OAuthError):
        await oauth.consume_state(redis, state, "slack", "user_1")  # and single use
    _, state = await oauth.start(redis, PLATFORMS["slack"], settings, user_id="user_1", redirect_uri="http://h/cb")
    with pytest.raises(oauth.OAuthError):
        await oauth.consume_state(redis, state, "discord", "user_1")
    _, state = await oauth.start(redis, PLATFORMS["slack"], settings, user_id="user_1", redirect_uri="http://h/cb")
    assert 0 < await redis.ttl(f"loomi:oauth-state:{state}") <= 600
    flow = await oauth.consume_state(redis, state, "slack", None)  # the callback: owner from the state
    assert flow.user_id == "user_1" and flow.verifier is None
