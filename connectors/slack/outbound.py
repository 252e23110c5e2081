"""Sending: chat.postMessage, threaded when the message replies to another."""

from __future__ import annotations

from config.settings import PlatformSettings
from connectors.base import Account, Outbound, Sent
from connectors.slack.client import bot_token, call, web_client
from connectors.slack.inbound import ts_ms


async def send(settings: PlatformSettings, account: Account, outbound: Outbound) -> Sent:
    """Post `outbound`; a reply goes into the thread (Slack has no other kind of reply).

    `thread_id` wins over `reply_to_id`: replying to a reply must name the thread's parent.
    429s are waited out (client.call); RateLimited after that, NeedsReauth on a dead token.
    """
    client = web_client(settings, bot_token(settings, account))
    thread_ts = outbound.thread_id or outbound.reply_to_id
    response = await call(lambda: client.chat_postMessage(channel=outbound.chat_id, text=outbound.text,
                                                          thread_ts=thread_ts))
    ts = str(response["ts"])
    return Sent(
        native_id=ts,
        chat_id=str(response.get("channel") or outbound.chat_id),
        sent_at=ts_ms(ts),
        raw=dict(response.data) if isinstance(response.data, dict) else {},
        thread_id=thread_ts,
    )
