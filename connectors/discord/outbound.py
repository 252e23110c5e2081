"""Sending: `POST /channels/{id}/messages` through discord.py, as a reply when asked.

A thread is a channel of its own, so `thread_id` (when set) is where the message goes. A
reply whose original is gone is still sent, as a plain message (`fail_if_not_exists: false`).
`@everyone`/`@here` in the text never ping. 429s are waited out by discord.py up to 30 s;
longer, RateLimited goes to the retry job.
"""

from __future__ import annotations

import discord
from discord.http import handle_message_parameters

from connectors.base import Account, Outbound, Sent
from connectors.discord.client import Rest, call
from connectors.discord.inbound import iso_ms

NO_MASS_PINGS = discord.AllowedMentions(everyone=False, users=True, roles=False, replied_user=True)


async def send(rest: Rest, account: Account, outbound: Outbound) -> Sent:
    target = outbound.thread_id or outbound.chat_id
    http = await rest.http()
    await rest.require_guild(account.external_id, target)
    reference = None
    if outbound.reply_to_id:
        reference = discord.MessageReference(message_id=int(outbound.reply_to_id), channel_id=int(target),
                                             fail_if_not_exists=False).to_message_reference_dict()
    with handle_message_parameters(content=outbound.text, allowed_mentions=NO_MASS_PINGS,
                                   message_reference=reference) as params:  # type: ignore[arg-type]
        data = await call(http.send_message(target, params=params))
    return Sent(native_id=str(data["id"]), chat_id=str(data["channel_id"]), sent_at=iso_ms(data["timestamp"]),
                raw=dict(data))
