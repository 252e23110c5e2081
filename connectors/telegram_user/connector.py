"""TelegramUserConnector: a person's own Telegram account (MTProto via Telethon)."""

from __future__ import annotations

from typing import Any, ClassVar

from connectors.base import Account, Change, Envelope, ListenContext, LoginStep, Outbound, Page, Sent, SetupContext
from connectors.telegram_user import history, inbound, listen, login, outbound
from connectors.telegram_user.settings import TelegramUserSettings


class TelegramUserConnector:
    """Connector + LoginFlow (phone, code, 2FA password) + Backfiller (dialogs)."""

    platform: ClassVar[str] = "telegram_user"

    def __init__(self, settings: TelegramUserSettings) -> None:
        self.settings = settings

    async def listen(self, ctx: ListenContext) -> None:
        await listen.listen(self.settings, ctx)

    def normalize(self, envelope: Envelope, account: Account) -> list[Change]:
        """`account.external_id` is the person's user id: their own messages are is_self."""
        return inbound.normalize(envelope, account)

    async def send(self, account: Account, message: Outbound) -> Sent:
        return await outbound.send(self.settings, account, message)

    async def login_start(self, fields: dict[str, Any], setup: SetupContext) -> LoginStep:
        return await login.login_start(self.settings, fields, setup)

    async def login_next(self, state: dict[str, Any], fields: dict[str, Any], setup: SetupContext) -> LoginStep:
        return await login.login_next(self.settings, state, fields, setup)

    async def list_chats(self, account: Account) -> list[str]:
        return await history.list_chats(self.settings, account)

    async def backfill(self, account: Account, chat_id: str, cursor: str | None, oldest: str | None) -> Page:
        return await history.backfill(self.settings, account, chat_id, cursor, oldest)
