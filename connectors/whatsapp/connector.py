"""WhatsAppConnector: a WhatsApp Business number on Meta's Cloud API.

Abilities: Connector (listen: nothing to hold open, Meta calls the webhook route; it checks
the token once and reports connected; normalize; send), CredentialSetup (`connect` with the
app dashboard's phone number id, token, app secret and verify token), WebhookReceiver (POST:
signature check, split into events) and WebhookVerifier (GET: the `hub.challenge` echo).
No Backfiller: the Cloud API keeps no message history a business can read.

Per account: external id = the phone number id; credentials `access_token`, `app_secret`,
`verify_token`; settings `public_url`, `webhookUrl`, `display_phone_number`.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from config.settings import PlatformSettings
from connectors.base import (
    Account,
    AccountSpec,
    AccountState,
    Change,
    Envelope,
    ListenContext,
    NeedsReauth,
    Outbound,
    Sent,
    SetupContext,
    WebhookReply,
    WebhookRequest,
)
from connectors.whatsapp import webhook
from connectors.whatsapp.graph import checked, client
from connectors.whatsapp.inbound import normalize as normalize_event
from connectors.whatsapp.outbound import send as send_message
from connectors.whatsapp.setup import connect as connect_number


class WhatsAppConnector:
    platform: ClassVar[str] = "whatsapp"

    def __init__(self, settings: PlatformSettings, *, send_retry_budget: float = 5.0, recheck_seconds: float = 3600.0) -> None:
        self.settings = settings
        self.send_retry_budget = send_retry_budget
        self.recheck_seconds = recheck_seconds

    async def listen(self, ctx: ListenContext) -> None:
        """Meta calls the webhook route: nothing to hold open. Check the token now and then (a
        revoked token is noticed as needs_reauth, not at the next send) and keep the lease."""
        token = ctx.account.credentials.get("access_token")
        if not token or not ctx.account.credentials.get("app_secret"):
            raise NeedsReauth("no access token or app secret stored for this account")
        while True:
            async with client(self.settings.base_url, token) as graph:
                checked(await graph.get(ctx.account.external_id, params={"fields": "display_phone_number"}))
            await ctx.report(AccountState.CONNECTED, "webhook")
            await asyncio.sleep(self.recheck_seconds)

    def normalize(self, envelope: Envelope, account: Account) -> list[Change]:
        return normalize_event(envelope, account)

    async def send(self, account: Account, outbound: Outbound) -> Sent:
        return await send_message(self.settings.base_url, account, outbound, budget=self.send_retry_budget)

    async def connect(self, fields: dict[str, Any], setup: SetupContext) -> AccountSpec:
        return await connect_number(self.settings.base_url, fields, setup)

    def handle_webhook(self, request: WebhookRequest) -> WebhookReply:
        return webhook.handle_webhook(request)

    def verify_webhook(self, request: WebhookRequest) -> WebhookReply:
        return webhook.verify_webhook(request)
