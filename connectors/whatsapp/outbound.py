"""Sending: `POST /{phone-number-id}/messages` with a text body, as a reply (`context`) when
asked. The chat id is the person's wa_id (digits). Meta answers `messages[0].id` (a wamid),
later reported on by status deliveries. Rate limits are waited out here within a small budget;
beyond it RateLimited hands the wait to the caller's retry job. Meta only lets a business
start a conversation with a template; free text reaches people who wrote within 24 hours
(error 131047 otherwise, reported on the message as it is).
"""

from __future__ import annotations

import re
import time
from asyncio import sleep
from typing import Any

from connectors.base import Account, NeedsReauth, Outbound, RateLimited, Sent
from connectors.whatsapp.graph import checked, client

WA_ID = re.compile(r"[0-9]{6,20}")


async def send(base_url: str, account: Account, outbound: Outbound, *, budget: float) -> Sent:
    token = account.credentials.get("access_token")
    if not token:
        raise NeedsReauth("no access token stored for this account")
    if not WA_ID.fullmatch(outbound.chat_id):
        raise ValueError("a WhatsApp chat id is the person's wa_id: digits only, with country code")
    if not outbound.text.strip():
        raise ValueError("WhatsApp cannot send an empty message")
    body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": outbound.chat_id,
                            "type": "text", "text": {"body": outbound.text}}
    if outbound.reply_to_id:
        body["context"] = {"message_id": outbound.reply_to_id}
    waited = 0.0
    async with client(base_url, token) as graph:
        while True:
            try:
                answer = checked(await graph.post(f"{account.external_id}/messages", json=body))
                break
            except RateLimited as err:
                if waited + err.retry_after > budget:
                    raise
                await sleep(err.retry_after)
                waited += err.retry_after
    messages = answer.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[0], dict) or not messages[0].get("id"):
        raise ValueError(f"WhatsApp answered no message id: {answer}")
    return Sent(native_id=str(messages[0]["id"]), chat_id=outbound.chat_id, sent_at=int(time.time() * 1000),
                raw={"request": body, "response": answer})
