"""TelegramConnector: a Telegram bot as a hub account (Bot API, python-telegram-bot 22).

Abilities: Connector (listen, normalize, send), CredentialSetup (`connect` with a bot token),
WebhookReceiver and Disconnecter (removes the webhook). No Backfiller: the Bot API cannot read history, and nothing is missed
while we are away because Telegram keeps unconfirmed updates for 24 hours.

Per account: credentials `bot_token`, `bot_id`, `webhook_secret`; settings `mode`
("polling" | "webhook") and, for webhooks, `public_url`. Resume state: `{"offset": int}`.
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
from connectors.telegram.client import make_bot, new_request
from connectors.telegram.inbound import normalize as normalize_update
from connectors.telegram.listen import listen as listen_for_updates
from connectors.telegram.outbound import send as send_message
from connectors.telegram.setup import connect as connect_bot
from connectors.telegram.webhook import handle_webhook as check_webhook


class TelegramConnector:
    platform: ClassVar[str] = "telegram"

    def __init__(self, settings: PlatformSettings, *, poll_timeout: int = 30, send_retry_budget: float = 5.0) -> None:
        self.settings = settings
        self.poll_timeout = poll_timeout  # seconds a getUpdates long poll is held open
        self.send_retry_budget = send_retry_budget  # seconds of 429 waits `send` absorbs itself

    async def listen(self, ctx: ListenContext) -> None:
        await listen_for_updates(self.settings, ctx, poll_timeout=self.poll_timeout)

    def normalize(self, envelope: Envelope, account: Account) -> list[Change]:
        return normalize_update(envelope, account)

    async def send(self, account: Account, outbound: Outbound) -> Sent:
        return await send_message(self.settings, account, outbound, budget=self.send_retry_budget)

    async def connect(self, fields: dict[str, Any], setup: SetupContext) -> AccountSpec:
        return await connect_bot(self.settings, fields, setup)

    def handle_webhook(self, request: WebhookRequest) -> WebhookReply:
        return check_webhook(request)

    async def disconnect(self, account: Account) -> None:
        """Remove our webhook, so Telegram stops posting to an account that no longer exists."""
        if account.settings.get("mode") != "webhook":
            return
        async with new_request() as request:
            bot = make_bot(self.settings, account.credentials["bot_token"], request)
            await bot.delete_webhook(drop_pending_updates=False)
