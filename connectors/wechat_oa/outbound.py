"""Sending: the customer-service message API (`message/custom/send`), which reaches a follower
who wrote to the account in the last 48 hours. It answers no message id, so ours is made
here. Needs the app secret (for the access token); WeCom sending is not supported.
"""

from __future__ import annotations

import asyncio
import secrets
import time

from connectors.base import Account, Outbound, RateLimited, Sent
from connectors.wechat_oa.client import call, client


async def send(base_url: str, account: Account, outbound: Outbound, *, budget: float) -> Sent:
    creds = account.credentials
    if account.settings.get("kind") == "wecom":
        raise ValueError("sending through WeCom is not supported")
    if not creds.get("app_secret"):
        raise ValueError("this account was connected without appSecret: it can receive but not send")
    if not outbound.text.strip():
        raise ValueError("WeChat cannot send an empty message")
    wechat = client(base_url, creds["app_id"], creds["app_secret"])
    waited = 0.0
    while True:
        try:
            answer = await call(lambda: wechat.message.send_text(outbound.chat_id, outbound.text))
            break
        except RateLimited as err:
            if waited + err.retry_after > budget:
                raise
            await asyncio.sleep(err.retry_after)
            waited += err.retry_after
    sent_at = int(time.time() * 1000)
    native_id = f"loomi-{secrets.token_hex(12)}"
    return Sent(native_id=native_id, chat_id=outbound.chat_id, sent_at=sent_at,
                raw={"touser": outbound.chat_id, "msgtype": "text", "answer": answer})
