"""History backfill and gap recovery: the guild's text channels, `GET /channels/{id}/messages`.

A page is up to 100 messages. History walks back with `before=<oldest id seen>` (the cursor);
gap recovery (`oldest`, epoch ms) walks forward with `after=`, from the start of that
millisecond (client.snowflake_before_ms says why), the cursor then being the newest id seen. Each message
becomes an Envelope with source "backfill", delivery id `MESSAGE_CREATE:<id>` and the payload
a MESSAGE_CREATE dispatch would have (`guild_id` added: REST messages omit it).
The chats are the guild's text and announcement channels plus its active threads
(`GET /guilds/{id}/threads/active`); archived threads are not walked.
"""

from __future__ import annotations

import time
from typing import Any

from connectors.base import Account, Envelope, Page
from connectors.discord.client import Rest, call, snowflake_before_ms

PAGE = 100
TEXT_CHANNELS = frozenset({0, 5})  # GUILD_TEXT, GUILD_ANNOUNCEMENT


async def list_chats(rest: Rest, account: Account) -> list[str]:
    http = await rest.http()
    channels = await call(http.get_all_guild_channels(account.external_id))
    threads = (await call(http.get_active_threads(account.external_id))).get("threads") or []
    for channel in [*channels, *threads]:
        rest.remember(channel)
    return [str(c["id"]) for c in channels if c.get("type") in TEXT_CHANNELS] + [str(t["id"]) for t in threads]


async def backfill(rest: Rest, account: Account, chat_id: str, cursor: str | None, oldest: str | None) -> Page:
    http = await rest.http()
    await rest.require_guild(account.external_id, chat_id)
    if oldest is not None:
        after = int(cursor) if cursor else snowflake_before_ms(int(oldest))
        messages = await call(http.logs_from(chat_id, PAGE, after=after))
        edge = max((int(m["id"]) for m in messages), default=None)
    else:
        messages = await call(http.logs_from(chat_id, PAGE, before=int(cursor) if cursor else None))
        edge = min((int(m["id"]) for m in messages), default=None)
    received = int(time.time() * 1000)
    envelopes = [_envelope(account, m, received) for m in messages if isinstance(m, dict) and m.get("id")]
    return Page(envelopes=envelopes, cursor=str(edge) if len(messages) == PAGE and edge is not None else None)


def _envelope(account: Account, message: dict[str, Any], received: int) -> Envelope:
    return Envelope(
        platform="discord",
        account_id=account.id,
        delivery_id=f"MESSAGE_CREATE:{message['id']}",
        received_at=received,
        payload={"t": "MESSAGE_CREATE", "d": {**message, "guild_id": account.external_id}},
        source="backfill",
    )
