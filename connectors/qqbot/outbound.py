"""Sending: passive replies (`msg_id` = the message answered) into groups and C2C chats.

QQ lets a bot answer a message for a while after it arrived (a passive reply, counted against
a generous quota) and speak unprompted only rarely: so a send answers `reply_to_id` when given,
else the newest message the other side sent in the chat (`Outbound.last_inbound`, from the
store), and goes out unprompted only when nobody has written there. `msg_seq` tells QQ apart
several answers to one message; a random one keeps answers from different workers apart.
"""

from __future__ import annotations

import secrets
import time
from datetime import datetime
from typing import Any

from connectors.base import Account, Outbound, Sent
from connectors.qqbot.client import QQApi

TEXT = 0


def route(chat_id: str) -> str:
    kind, _, target = chat_id.partition(":")
    if kind == "group" and target:
        return f"/v2/groups/{target}/messages"
    if kind == "user" and target:
        return f"/v2/users/{target}/messages"
    raise ValueError(f"not a QQ chat id: {chat_id!r} (expected group:<openid> or user:<openid>)")


def answered(outbound: Outbound) -> str | None:
    """The inbound message this send answers."""
    if outbound.reply_to_id:
        return outbound.reply_to_id
    d = (outbound.last_inbound or {}).get("d")
    return d.get("id") if isinstance(d, dict) and isinstance(d.get("id"), str) else None


async def send(api: QQApi, account: Account, outbound: Outbound) -> Sent:
    if not outbound.text.strip():
        raise ValueError("QQ cannot send an empty message")
    body: dict[str, Any] = {"content": outbound.text, "msg_type": TEXT, "msg_seq": secrets.randbelow(2**31 - 1) + 1}
    msg_id = answered(outbound)
    if msg_id:
        body["msg_id"] = msg_id
    data = await api.call(account, "POST", route(outbound.chat_id), body)
    native_id = data.get("id")
    if not isinstance(native_id, str) or not native_id:
        raise ValueError("QQ accepted the message but gave no id")
    return Sent(native_id=native_id, chat_id=outbound.chat_id, sent_at=_ms(data.get("timestamp")), raw=data)


def _ms(timestamp: Any) -> int:
    if isinstance(timestamp, str):
        try:
            return int(datetime.fromisoformat(timestamp).timestamp() * 1000)
        except ValueError:
            pass
    return int(time.time() * 1000)
