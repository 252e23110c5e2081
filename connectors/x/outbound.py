"""Send a DM. One-to-one conversations go to `POST /2/dm_conversations/with/:participant_id/
messages` (X's documented way to write to a person), group conversations to
`POST /2/dm_conversations/:id/messages`. Tweet threads are read-only here: replying publicly
needs the `tweet.write` scope, which the hub does not ask for."""

from __future__ import annotations

import time

import tweepy

from connectors.base import Account, Outbound, Sent
from connectors.x import client as x
from connectors.x.inbound import TWEET_CHAT
from connectors.x.settings import XSettings


async def send(settings: XSettings, account: Account, outbound: Outbound) -> Sent:
    if outbound.chat_id.startswith(TWEET_CHAT):
        raise ValueError("X: replying to tweets is not supported (no tweet.write scope); send a DM")
    if not outbound.text:
        raise ValueError("X: a DM needs text")
    parts = outbound.chat_id.split("-")
    api = x.api(settings.base_url, account.credentials["access_token"])
    try:
        if len(parts) == 2 and account.external_id in parts:
            other = parts[0] if parts[1] == account.external_id else parts[1]
            answer = await api.create_direct_message(participant_id=other, text=outbound.text, user_auth=False)
        else:
            answer = await api.create_direct_message(dm_conversation_id=outbound.chat_id, text=outbound.text,
                                                     user_auth=False)
    except tweepy.HTTPException as err:
        raise x.refusal(err, account.credentials) from None
    finally:
        await x.close(api)
    data = answer["data"]
    return Sent(native_id=str(data["dm_event_id"]), chat_id=str(data["dm_conversation_id"]),
                sent_at=int(time.time() * 1000), raw=answer)
