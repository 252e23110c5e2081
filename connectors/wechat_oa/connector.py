"""WechatOaConnector: a WeChat Official Account or WeCom app, through its server callback.

Abilities: Connector (listen idles: WeChat pushes to the webhook route; normalize; send via the
customer-service API), CredentialSetup (`connect` with the console's token/appId/keys),
WebhookReceiver (POST: verify, decrypt, queue) and WebhookVerifier (GET: the URL check echo).
No Backfiller: WeChat keeps no message history for accounts to read.

Per account: credentials `token`, `app_id`, `encoding_aes_key`?, `app_secret`?; settings
`kind` ("oa" | "wecom") and `public_url`.
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
from connectors.wechat_oa import webhook
from connectors.wechat_oa.inbound import normalize as normalize_callback
from connectors.wechat_oa.outbound import send as send_message
from connectors.wechat_oa.setup import connect as connect_account


class WechatOaConnector:
    platform: ClassVar[str] = "wechat_oa"

    def __init__(self, settings: PlatformSettings, *, send_retry_budget: float = 5.0) -> None:
        self.settings = settings
        self.send_retry_budget = send_retry_budget

    async def listen(self, ctx: ListenContext) -> None:
        """Nothing to hold open: WeChat calls the webhook route. Say so, and keep the lease."""
        if not ctx.account.credentials.get("token"):
            raise NeedsReauth("no callback token stored for this account")
        await ctx.report(AccountState.CONNECTED)
        await asyncio.Event().wait()

    def normalize(self, envelope: Envelope, account: Account) -> list[Change]:
        return normalize_callback(envelope, account)

    async def send(self, account: Account, outbound: Outbound) -> Sent:
        return await send_message(self.settings.base_url, account, outbound, budget=self.send_retry_budget)

    async def connect(self, fields: dict[str, Any], setup: SetupContext) -> AccountSpec:
        return await connect_account(self.settings.base_url, fields, setup)

    def handle_webhook(self, request: WebhookRequest) -> WebhookReply:
        return webhook.handle_webhook(request)

    def verify_webhook(self, request: WebhookRequest) -> WebhookReply:
        return webhook.verify_webhook(request)
