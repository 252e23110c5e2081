"""OAuth v2: an oauth.v2.access answer (from FakeSlack, through slack_sdk) -> AccountSpec."""

from __future__ import annotations

import time

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from connectors.base import NeedsReauth
from connectors.slack.connector import SlackConnector
from tests.fakes.slack import FakeSlack


async def test_authorize_params(connector: SlackConnector) -> None:
    assert connector.authorize_params() == {}


async def test_account_from_oauth_v2_access(fake: FakeSlack, connector: SlackConnector) -> None:
    fake.add_oauth_code("c0de", "cid", "csecret", "http://localhost/cb", "T2", "Other Team", "xoxb-t2", "UB2",
                        bot_id="BB2", authed_user_id="UINSTALLER")
    token = (await AsyncWebClient(base_url=fake.base_url).oauth_v2_access(
        client_id="cid", client_secret="csecret", code="c0de", redirect_uri="http://localhost/cb")).data
    spec = await connector.account_from_token(token)
    assert (spec.external_id, spec.name, spec.expires_at) == ("T2", "Other Team", None)
    assert spec.credentials == {"access_token": "xoxb-t2", "bot_user_id": "UB2", "bot_id": "BB2", "team_id": "T2",
                                "team_name": "Other Team", "app_id": fake.app_id, "scope": token["scope"],
                                "authed_user_id": "UINSTALLER"}


async def test_account_from_rotating_token(fake: FakeSlack, connector: SlackConnector) -> None:
    fake.add_oauth_code("c1", "cid", "csecret", None, "T3", "Rotating", "xoxe.xoxb-t3", "UB3",
                        refresh_token="xoxe-1-r", expires_in=43200)
    client = AsyncWebClient(base_url=fake.base_url)
    first = (await client.oauth_v2_access(client_id="cid", client_secret="csecret", code="c1")).data
    spec = await connector.account_from_token(first)
    assert spec.credentials["refresh_token"] == "xoxe-1-r" and spec.credentials["bot_id"] == "BB3"
    assert spec.expires_at is not None and abs(spec.expires_at - (time.time() + 43200) * 1000) < 5000
    refreshed = (await client.oauth_v2_access(client_id="cid", client_secret="csecret",
                                              grant_type="refresh_token", refresh_token="xoxe-1-r")).data
    again = await connector.account_from_token(refreshed)  # a refresh answer reads the same way
    assert again.external_id == "T3" and again.credentials["access_token"] != "xoxe.xoxb-t3"
    assert again.credentials["refresh_token"] != "xoxe-1-r"


async def test_bad_token_answers(fake: FakeSlack, connector: SlackConnector) -> None:
    with pytest.raises(ValueError):
        await connector.account_from_token({"ok": False, "error": "invalid_code"})
    with pytest.raises(ValueError):
        await connector.account_from_token({"ok": True, "token_type": "user", "access_token": "xoxp-1",
                                            "team": {"id": "T1"}})
    with pytest.raises(ValueError):
        await connector.account_from_token({"ok": True, "access_token": "xoxb-1", "team": None})
    with pytest.raises(NeedsReauth):  # auth.test says the fresh token is already dead
        await connector.account_from_token({"ok": True, "token_type": "bot", "access_token": "xoxb-unknown",
                                            "bot_user_id": "U9", "team": {"id": "T9", "name": "Nine"}})
