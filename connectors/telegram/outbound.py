"""Sending: `sendMessage`, as a reply (`reply_parameters`) and into a forum topic
(`message_thread_id`) when asked. Flood control (429 `retry_after`) is waited out here while
the waits stay within a small budget; beyond it `RateLimited` hands the wait to the caller's
retry job instead of holding a worker."""

from __future__ import annotations

import asyncio

from telegram import ReplyParameters
from telegram.error import InvalidToken, RetryAfter

from config.settings import PlatformSettings
from connectors.base import Account, NeedsReauth, Outbound, RateLimited, Sent
from connectors.telegram.client import RawRequest, make_bot, new_request, reauth, retry_seconds
from connectors.telegram.inbound import to_message


async def send(settings: PlatformSettings, account: Account, outbound: Outbound, *, budget: float) -> Sent:
    token = account.credentials.get("bot_token")
    if not token:
        raise NeedsReauth("no bot token stored for this account")
    options: dict[str, object] = {}
    if outbound.reply_to_id:
        # If the original is gone, still send (as a plain message) rather than fail.
        options["reply_parameters"] = ReplyParameters(int(outbound.reply_to_id), allow_sending_without_reply=True)
    if outbound.thread_id:
        options["message_thread_id"] = int(outbound.thread_id)
    request = new_request(RawRequest)
    bot = make_bot(settings, token, request)
    waited = 0.0
    async with request:  # no Bot.initialize: that would cost a getMe per send
        while True:
            try:
                message = await bot.send_message(outbound.chat_id, outbound.text, **options)  # type: ignore[arg-type]
                break
            except RetryAfter as exc:
                delay = retry_seconds(exc)
                if waited + delay > budget:
                    raise RateLimited(delay) from None
                await asyncio.sleep(delay)
                waited += delay
            except InvalidToken as exc:
                raise reauth(exc) from None
        raw = request.take()
    if not isinstance(raw, dict):
        raw = message.to_dict()
    sent = to_message(raw)  # the same chat id and thread rules as inbound, so the echo matches
    return Sent(native_id=sent.native_id, chat_id=sent.chat_id, sent_at=sent.sent_at, raw=raw, thread_id=sent.thread_id)


