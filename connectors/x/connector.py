"""XConnector: X (Twitter) behind the one interface (connectors/base.py)."""

from __future__ import annotations

from typing import Any, ClassVar

from connectors.base import Account, AccountSpec, Change, Envelope, ListenContext, Outbound, Sent
from connectors.x import inbound, listen, oauth, outbound
from connectors.x.settings import XSettings


class XConnector:
    """Connector + OAuthSetup: mentions and DMs polled, DMs sent, OAuth 2 with PKCE."""

    platform: ClassVar[str] = "x"

    def __init__(self, settings: XSettings) -> None:
        self.settings = settings

    async def listen(self, ctx: ListenContext) -> None:
        await listen.listen(self.settings, ctx)

    def normalize(self, envelope: Envelope, account: Account) -> list[Change]:
        """`account.external_id` is the person's X user id: their own DMs are is_self."""
        return inbound.normalize(envelope, account)

    async def send(self, account: Account, message: Outbound) -> Sent:
        return await outbound.send(self.settings, account, message)

    def authorize_params(self) -> dict[str, str]:
        return {}  # scopes and the PKCE challenge come from the platform row

    async def account_from_token(self, token: dict[str, Any]) -> AccountSpec:
        return await oauth.account_from_token(self.settings, token)
