"""History per dialog (Backfiller): the dialogs are the chats; each page is `messages.getHistory`
newest first from `offset_id` (the cursor is the oldest id of the last page). Gap recovery
stops at the first message older than `oldest` (Telegram dates are whole seconds, so messages
in the same second as the newest stored one are read again; the store keeps them once)."""

from __future__ import annotations

import time
from typing import Any

from telethon import TelegramClient

from connectors.base import Account, Envelope, Page
from connectors.telegram_user import client as tg
from connectors.telegram_user.payload import delivery_id, message_payload
from connectors.telegram_user.settings import TelegramUserSettings

PAGE = 100


async def entity(client: TelegramClient, chat_id: str) -> Any:
    """The dialog's input peer; a fresh session caches no access hashes until it lists dialogs."""
    try:
        return await client.get_input_entity(int(chat_id))
    except ValueError:
        await client.get_dialogs()
        return await client.get_input_entity(int(chat_id))


async def list_chats(settings: TelegramUserSettings, account: Account) -> list[str]:
    async with tg.account_client(settings, account.id, account.credentials["session"]) as client:
        return [str(d.id) for d in await client.get_dialogs()]


async def backfill(settings: TelegramUserSettings, account: Account, chat_id: str, cursor: str | None,
                   oldest: str | None) -> Page:
    async with tg.account_client(settings, account.id, account.credentials["session"]) as client:
        peer = await entity(client, chat_id)
        messages = await client.get_messages(peer, limit=PAGE, offset_id=int(cursor or 0))
    now = int(time.time() * 1000)
    envelopes, more = [], len(messages) == PAGE
    for message in messages:
        if oldest is not None and message.date.timestamp() * 1000 < int(oldest) // 1000 * 1000:
            more = False
            break
        envelopes.append(Envelope("telegram_user", account.id, delivery_id("message", chat_id, message), now,
                                  message_payload("message", message), "backfill"))
    return Page(envelopes, str(messages[-1].id) if more and messages else None)
