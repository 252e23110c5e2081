"""WeixinConnector: a WeChat personal account (iLink bot API) as a hub account.

Abilities: Connector (listen, normalize, send) and LoginFlow (QR login, or a pasted bot token
accepted at once: `login_start({"botToken"})` is done in one step). No Backfiller: iLink has no history
call, and nothing is lost while we are away because getupdates resumes from the saved cursor.
No webhooks: iLink only long-polls.

Per account: credentials `bot_token`, `base_url`, `ilink_user_id`; resume state
`{"buf": get_updates_buf}`. Sends answer with the chat's newest inbound `context_token`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from config.settings import PlatformSettings
from connectors.base import Account, Change, Envelope, ListenContext, LoginStep, Outbound, Sent, SetupContext
from connectors.weixin.inbound import normalize as normalize_message
from connectors.weixin.listen import listen as poll
from connectors.weixin.outbound import send as send_message
from connectors.weixin.setup import login_next, login_start


class WeixinConnector:
    platform: ClassVar[str] = "weixin"

    def __init__(self, settings: PlatformSettings, *, send_retry_budget: float = 5.0, retry_delay: float = 1.0) -> None:
        self.settings = settings
        self.send_retry_budget = send_retry_budget  # seconds of 429 waits `send` absorbs itself
        self.retry_delay = retry_delay  # seconds between polls after a failed one

    async def listen(self, ctx: ListenContext) -> None:
        await poll(self.settings.base_url, ctx, retry_delay=self.retry_delay)

    def normalize(self, envelope: Envelope, account: Account) -> list[Change]:
        return normalize_message(envelope, account)

    async def send(self, account: Account, outbound: Outbound) -> Sent:
        return await send_message(self.settings.base_url, account, outbound, budget=self.send_retry_budget)

    async def login_start(self, fields: dict[str, Any], setup: SetupContext) -> LoginStep:
        return await login_start(self.settings.base_url, fields, setup)

    async def login_next(self, state: dict[str, Any], fields: dict[str, Any], setup: SetupContext) -> LoginStep:
        return await login_next(self.settings.base_url, state, fields, setup)
