"""Send as the person (`messages.sendMessage` through Telethon), replies included."""

from __future__ import annotations

from connectors.base import Account, Outbound, Sent
from connectors.telegram_user import client as tg
from connectors.telegram_user.history import entity
from connectors.telegram_user.payload import message_payload
from connectors.telegram_user.settings import TelegramUserSettings


async def send(settings: TelegramUserSettings, account: Account, outbound: Outbound) -> Sent:
    if not outbound.text:
        raise ValueError("Telegram: a message needs text")
    reply_to = int(outbound.reply_to_id) if outbound.reply_to_id else None
    async with tg.account_client(settings, account.id, account.credentials["session"]) as client:
        peer = await entity(client, outbound.chat_id)
        message = await client.send_message(peer, outbound.text, reply_to=reply_to)
    return Sent(native_id=str(message.id), chat_id=outbound.chat_id, sent_at=int(message.date.timestamp() * 1000),
                raw={**message_payload("message", message), "chat_id": outbound.chat_id})
