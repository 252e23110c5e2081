"""FeishuConnector: a Feishu / Lark self-built app's bot as a hub account (lark-oapi).

Abilities: Connector (listen over the long connection, normalize, send), CredentialSetup
(`connect` with appId/appSecret), Backfiller (chat list and message history, where the app has
history permission) and WebhookReceiver (the HTTP event callback, for webhook-mode accounts).
`LOOMI_FEISHU_BASE_URL` is the API domain (https://open.feishu.cn, or https://open.larksuite.com
for Lark); REST, tokens and the websocket endpoint are all found under it. There are no
app-level settings: every account brings its own app. Resume state: none (Feishu re-sends
unacked events; gaps are recovered from history after a reconnect).
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
    Outbound,
    Page,
    Sent,
    SetupContext,
    WebhookReply,
    WebhookRequest,
)
from connectors.feishu import inbound, outbound, webhook
from connectors.feishu import setup as app_setup
from connectors.feishu.client import FeishuApi
from connectors.feishu.history import FeishuHistory
from connectors.feishu.listen import listen as listen_ws


class FeishuConnector:
    platform: ClassVar[str] = "feishu"
    max_reconnect_wait: float = 300.0  # s; caps Feishu's ReconnectNonce/Interval (tests shorten it)

    def __init__(self, settings: PlatformSettings) -> None:
        self.settings = settings
        self.history = FeishuHistory(settings.base_url)

    async def listen(self, ctx: ListenContext) -> None:
        if ctx.account.settings.get("mode") == "webhook":
            await FeishuApi.for_account(self.settings.base_url, ctx.account).token()  # still a live app?
            await ctx.report(AccountState.CONNECTED, "webhook")
            await asyncio.Event().wait()  # events arrive through the callback route; idle until cancelled
            return
        await listen_ws(self.settings.base_url, ctx, max_wait=self.max_reconnect_wait)

    def normalize(self, envelope: Envelope, account: Account | None = None) -> list[Change]:
        return inbound.normalize(envelope, account)

    async def send(self, account: Account, message: Outbound) -> Sent:
        return await outbound.send(self.settings.base_url, account, message)

    async def connect(self, fields: dict[str, Any], setup: SetupContext) -> AccountSpec:
        return await app_setup.connect(self.settings.base_url, fields, setup)

    async def list_chats(self, account: Account) -> list[str]:
        return await self.history.list_chats(account)

    async def backfill(self, account: Account, chat_id: str, cursor: str | None, oldest: str | None) -> Page:
        return await self.history.backfill(account, chat_id, cursor, oldest)

    def handle_webhook(self, request: WebhookRequest) -> WebhookReply:
        return webhook.handle_webhook(request)
