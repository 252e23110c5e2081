"""SlackConnector against the interface of connectors/base.py, and its registry entry."""

from __future__ import annotations

from config.settings import load_settings
from connectors.base import Backfiller, Connector, CredentialSetup, OAuthSetup, WebhookReceiver
from connectors.registry import connector_class, make_connector
from connectors.slack.connector import SlackConnector


def test_satisfies_the_protocols() -> None:
    slack = SlackConnector(load_settings({}).platform("slack"))
    assert slack.platform == "slack"
    for protocol in (Connector, Backfiller, OAuthSetup, WebhookReceiver):
        assert isinstance(slack, protocol), protocol.__name__
    assert not isinstance(slack, CredentialSetup)  # Slack accounts come from OAuth


def test_registry_builds_it() -> None:
    settings = load_settings({"LOOMI_SLACK_BASE_URL": "http://127.0.0.1:9/api"}).platform("slack")
    assert connector_class("slack") is SlackConnector
    slack = make_connector("slack", settings)
    assert isinstance(slack, SlackConnector) and slack.settings.base_url == "http://127.0.0.1:9/api"
