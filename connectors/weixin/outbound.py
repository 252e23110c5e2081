"""Sending: `sendmessage` with the chat's newest `context_token`.

iLink takes a bot's message only as an answer inside a conversation someone started: the
`context_token` of the newest message in that chat must travel with it. Every inbound
payload carries one; the send path hands us the chat's newest (`Outbound.last_inbound`,
from the store, so any process can send). The answer
has no delivery receipt and often no `message_id`, so our `client_id` is the native id.
A 429 is waited out within a small budget; beyond it RateLimited goes to the retry job.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Any

from connectors.base import Account, NeedsReauth, Outbound, RateLimited, Sent
from connectors.weixin.client import ILink

BOT_MESSAGE, FINISHED, TEXT = 2, 2, 1
MAX_TEXT = 4000  # what Tencent's plugin sends per message at most


class NoContext(ValueError):
    """No context_token for the chat: nobody there has written to this bot (that we saw)."""


def context_token(outbound: Outbound) -> str:
    token = (outbound.last_inbound or {}).get("context_token")
    if not isinstance(token, str) or not token:
        raise NoContext(f"no context_token for chat {outbound.chat_id}: WeChat lets a bot answer only people who wrote to it")
    return token


async def send(base_url: str, account: Account, outbound: Outbound, *, budget: float) -> Sent:
    token = account.credentials.get("bot_token")
    if not token:
        raise NeedsReauth("no bot token stored for this account")
    if not outbound.text.strip():
        raise ValueError("WeChat cannot send an empty message")
    if len(outbound.text) > MAX_TEXT:
        raise ValueError(f"WeChat messages are at most {MAX_TEXT} characters")
    client_id = f"loomi-{secrets.token_hex(12)}"
    msg: dict[str, Any] = {
        "from_user_id": "",
        "to_user_id": outbound.chat_id,
        "client_id": client_id,
        "message_type": BOT_MESSAGE,
        "message_state": FINISHED,
        "item_list": [{"type": TEXT, "text_item": {"text": outbound.text}}],
        "context_token": context_token(outbound),
    }
    waited = 0.0
    async with ILink(account.credentials.get("base_url") or base_url, token) as ilink:
        while True:
            try:
                answer = await ilink.post("sendmessage", {"msg": msg})
                break
            except RateLimited as err:
                if waited + err.retry_after > budget:
                    raise
                await asyncio.sleep(err.retry_after)
                waited += err.retry_after
    sent_at = int(time.time() * 1000)
    message_id = answer.get("message_id")
    raw = {"message_id": message_id, "client_id": client_id, "to_user_id": outbound.chat_id,
           "create_time_ms": sent_at, "message_type": BOT_MESSAGE, "item_list": msg["item_list"]}
    return Sent(native_id=client_id, chat_id=outbound.chat_id, sent_at=sent_at, raw=raw)
