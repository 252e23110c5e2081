"""SlackConnector: the Slack pieces behind the one interface (connectors/base.py)."""

from __future__ import annotations

from typing import Any, ClassVar

from connectors.slack.settings import SlackSettings
from connectors.base import (
    Account,
    AccountSpec,
    Change,
    Envelope,
    ListenContext,
    Outbound,
    Page,
    Sent,
    WebhookReply,
    WebhookRequest,
)
from connectors.slack import inbound, oauth, outbound
from connectors.slack.history import SlackHistory
from connectors.slack.listen import PING_INTERVAL, listen_socket_mode
from connectors.slack.webhook import SlackWebhook


class SlackConnector:
    """Connector + Backfiller + OAuthSetup + WebhookReceiver for Slack."""

    platform: ClassVar[str] = "slack"
    ping_interval: float = PING_INTERVAL  # tests shorten it: it paces slack_sdk's reconnects

    def __init__(self, settings: SlackSettings) -> None:
        self.settings = settings
        self.history = SlackHistory(settings)
        self.webhook = SlackWebhook(settings)

    async def listen(self, ctx: ListenContext) -> None:
        await listen_socket_mode(self.settings, ctx, ping_interval=self.ping_interval)

    def normalize(self, envelope: Envelope, account: Account) -> list[Change]:
        """`account` tells which sender is our bot (inbound.self_ids)."""
        return inbound.normalize(envelope, account)

    async def send(self, account: Account, message: Outbound) -> Sent:
        return await outbound.send(self.settings, account, message)

    async def list_chats(self, account: Account) -> list[str]:
        return await self.history.list_chats(account)

    async def backfill(self, account: Account, chat_id: str, cursor: str | None, oldest: str | None) -> Page:
        return await self.history.backfill(account, chat_id, cursor, oldest)

    def authorize_params(self) -> dict[str, str]:
        return oauth.authorize_params()

    async def account_from_token(self, token: dict[str, Any]) -> AccountSpec:
        return await oauth.account_from_token(self.settings, token)

    def handle_webhook(self, request: WebhookRequest) -> WebhookReply:
        return self.webhook.handle_webhook(request)
