"""DingTalkConnector: a DingTalk robot (an enterprise-internal app's bot) as a hub account.

Abilities: Connector (Stream-mode listen, normalize, send), CredentialSetup (`connect` with
`{clientId, clientSecret}`), WebhookReceiver (HTTP-mode callbacks). No Backfiller: DingTalk
has no message history API for robots, and nothing is missed while away because DingTalk pushes
unacked messages again. No edits, deletes or reactions: robots are not told about them.

Per account: credentials `client_id`, `client_secret`; external id = clientId (= robotCode).
Resume state: none (see stream.py).
"""

from __future__ import annotations

from typing import Any, ClassVar

from config.settings import PlatformSettings
from connectors.base import (
    Account,
    AccountSpec,
    Change,
    Envelope,
    ListenContext,
    Outbound,
    Sent,
    SetupContext,
    WebhookReply,
    WebhookRequest,
)
from connectors.dingtalk import inbound, outbound, setup, stream, webhook
from connectors.dingtalk.api import OpenApi


class DingTalkConnector:
    platform: ClassVar[str] = "dingtalk"

    def __init__(self, settings: PlatformSettings, *, ping_interval: float = 20.0, send_retry_budget: float = 5.0) -> None:
        self.settings = settings
        self.api = OpenApi(settings.base_url)
        self.hooks = outbound.SessionWebhooks()  # filled by listen, used by send (same process)
        self.ping_interval = ping_interval  # s between websocket pings: how fast a dead socket is noticed
        self.send_retry_budget = send_retry_budget  # s of throttling waits `send` absorbs itself

    async def listen(self, ctx: ListenContext) -> None:
        await stream.listen(self.api, self.hooks, ctx, ping_interval=self.ping_interval)

    def normalize(self, envelope: Envelope, account: Account) -> list[Change]:
        return inbound.normalize(envelope, account)

    async def send(self, account: Account, message: Outbound) -> Sent:
        return await outbound.send(self.api, self.hooks, account, message, budget=self.send_retry_budget)

    async def connect(self, fields: dict[str, Any], setup_context: SetupContext) -> AccountSpec:
        """Nothing in `setup_context` is needed: Stream mode dials out, and HTTP mode's callback
        URL (`/api/dingtalk/webhook/{accountId}`) is entered in DingTalk's console by the person."""
        return await setup.connect(self.api, fields)

    def handle_webhook(self, request: WebhookRequest) -> WebhookReply:
        return webhook.handle_webhook(request)
