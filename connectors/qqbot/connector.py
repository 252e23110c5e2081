"""QQBotConnector: a QQ bot (group @-messages and direct messages) as a hub account.

Abilities: Connector (listen, normalize, send) and CredentialSetup (`connect` with the app id
and secret). No Backfiller: QQ has no history API for bots, and a RESUMEd gateway session
replays what was sent while we were away. No webhook: QQ's HTTP callback mode is not used.

Per account: credentials `app_id`, `app_secret`. Resume state: `{"session_id", "seq"}`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from connectors.base import Account, AccountSpec, Change, Envelope, ListenContext, Outbound, Sent, SetupContext
from connectors.qqbot.client import QQApi
from connectors.qqbot.inbound import normalize as normalize_dispatch
from connectors.qqbot.listen import listen as listen_to_gateway
from connectors.qqbot.outbound import send as send_message
from connectors.qqbot.settings import QQBotSettings
from connectors.qqbot.setup import connect as connect_bot


class QQBotConnector:
    platform: ClassVar[str] = "qqbot"

    def __init__(self, settings: QQBotSettings, *, retry_delay: float = 1.0) -> None:
        self.settings = settings
        self.api = QQApi(settings)
        self.retry_delay = retry_delay  # pause before reconnecting after a drop

    async def listen(self, ctx: ListenContext) -> None:
        await listen_to_gateway(self.api, ctx, retry_delay=self.retry_delay)

    def normalize(self, envelope: Envelope, account: Account) -> list[Change]:
        return normalize_dispatch(envelope, account)

    async def send(self, account: Account, outbound: Outbound) -> Sent:
        return await send_message(self.api, account, outbound)

    async def connect(self, fields: dict[str, Any], setup: SetupContext) -> AccountSpec:
        return await connect_bot(self.api, fields, setup)
