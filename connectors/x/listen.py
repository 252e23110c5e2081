"""Poll the person's mentions and DMs; emit new ones with the ids that say where we are.

X pushes nothing to an ordinary app (the Account Activity webhooks are an enterprise product),
so the listener polls: `GET /2/users/:id/mentions?since_id=` and `GET /2/dm_events` (which has no
since_id: we page newest first until the last id we saw). Both positions are saved with the
queue in the same `ctx.emit`, so a restart neither loses nor repeats a message. A 429 is waited
out until its `x-rate-limit-reset` per endpoint (the other keeps polling) when the reset is
within the budget, else the listener stops with RateLimited; 5xx and network errors back off.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import tweepy

from connectors.base import AccountState, Envelope, ListenContext, NeedsReauth, RateLimited
from connectors.x import client as x
from connectors.x.settings import XSettings

USER_FIELDS = ["id", "name", "username"]
MEDIA_FIELDS = ["media_key", "type", "url", "preview_image_url", "width", "height"]
TWEET_FIELDS = ["id", "text", "author_id", "conversation_id", "created_at", "entities", "referenced_tweets",
                "in_reply_to_user_id", "attachments", "edit_history_tweet_ids"]
DM_FIELDS = ["id", "text", "event_type", "created_at", "sender_id", "dm_conversation_id", "attachments",
             "participant_ids", "referenced_tweets"]
MENTIONS, DMS = "mentions", "dm_events"


@dataclass
class Poll:
    """What one round found: payloads oldest first, and the positions after them."""

    payloads: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (delivery id, payload)
    resume: dict[str, Any] = field(default_factory=dict)


def _with_includes(kind: str, key: str, item: dict[str, Any], includes: dict[str, Any]) -> dict[str, Any]:
    """The item and just the users and media it names, so each payload stands alone."""
    user_ids = {item.get("author_id"), item.get("sender_id"), item.get("in_reply_to_user_id")}
    user_ids |= {m.get("id") for m in item.get("entities", {}).get("mentions", [])}
    media_keys = set(item.get("attachments", {}).get("media_keys", []))
    return {
        "type": kind,
        key: item,
        "users": [u for u in includes.get("users", []) if u.get("id") in user_ids],
        "media": [m for m in includes.get("media", []) if m.get("media_key") in media_keys],
    }


async def fetch_mentions(api: Any, user_id: str, since_id: str | None, max_pages: int) -> list[dict[str, Any]]:
    """Mentions newer than `since_id` (all of them), or the newest `max_pages` pages at first."""
    found: list[dict[str, Any]] = []
    token = None
    for page_no in itertools.count():
        params: dict[str, Any] = {"max_results": 100, "tweet_fields": TWEET_FIELDS, "user_fields": USER_FIELDS,
                                  "media_fields": MEDIA_FIELDS,
                                  "expansions": ["author_id", "attachments.media_keys", "entities.mentions.username"]}
        if since_id:
            params["since_id"] = since_id
        if token:
            params["pagination_token"] = token
        page = await api.get_users_mentions(user_id, user_auth=False, **params)
        includes = page.get("includes", {})
        found += [_with_includes("mention", "tweet", t, includes) for t in page.get("data", [])]
        token = page.get("meta", {}).get("next_token")
        if not token or (since_id is None and page_no + 1 >= max_pages):
            return found[::-1]
    raise AssertionError("unreachable")


async def fetch_dms(api: Any, last_id: str | None, max_pages: int) -> list[dict[str, Any]]:
    """DM events after `last_id` (newest first pages, read until we reach it)."""
    found: list[dict[str, Any]] = []
    token = None
    for page_no in itertools.count():
        params: dict[str, Any] = {"max_results": 100, "event_types": "MessageCreate", "dm_event_fields": DM_FIELDS,
                                  "expansions": ["sender_id", "attachments.media_keys"],
                                  "user_fields": USER_FIELDS, "media_fields": MEDIA_FIELDS}
        if token:
            params["pagination_token"] = token
        page = await api.get_direct_message_events(user_auth=False, **params)
        includes = page.get("includes", {})
        for event in page.get("data", []):
            if last_id is not None and int(event["id"]) <= int(last_id):
                return found[::-1]
            found.append(_with_includes("dm", "event", event, includes))
        token = page.get("meta", {}).get("next_token")
        if not token or (last_id is None and page_no + 1 >= max_pages):
            return found[::-1]
    raise AssertionError("unreachable")


class Poller:
    """One account's polling state: positions and, per endpoint, when X lets us call again."""

    def __init__(self, settings: XSettings, api: Any, user_id: str, resume: dict[str, Any]) -> None:
        self.settings, self.api, self.user_id = settings, api, user_id
        self.resume = {k: resume.get(k) for k in ("mentions_since_id", "dm_last_id")}
        self.not_before: dict[str, float] = {MENTIONS: 0.0, DMS: 0.0}

    def limited(self) -> dict[str, float]:
        now = time.time()
        return {ep: at - now for ep, at in self.not_before.items() if at > now}

    async def _guarded(self, endpoint: str, call: Any) -> list[dict[str, Any]] | None:
        """`call()` unless X said to wait; a 429 within the budget sets when to call again."""
        if self.not_before[endpoint] > time.time():
            return None
        try:
            return await call()
        except tweepy.TooManyRequests as err:
            wait = x.retry_after(err)
            if wait > self.settings.rate_limit_budget_seconds:
                raise RateLimited(wait, f"X {endpoint} rate limit resets in {wait:.0f} s, beyond the budget") from None
            self.not_before[endpoint] = time.time() + wait
            return None

    async def poll(self) -> Poll:
        pages = self.settings.history_pages
        result = Poll()
        mentions = await self._guarded(
            MENTIONS, lambda: fetch_mentions(self.api, self.user_id, self.resume["mentions_since_id"], pages))
        dms = await self._guarded(DMS, lambda: fetch_dms(self.api, self.resume["dm_last_id"], pages))
        for payload in mentions or []:
            result.payloads.append((f"tweet:{payload['tweet']['id']}", payload))
            self.resume["mentions_since_id"] = payload["tweet"]["id"]
        for payload in dms or []:
            result.payloads.append((f"dm:{payload['event']['id']}", payload))
            self.resume["dm_last_id"] = payload["event"]["id"]
        result.resume = dict(self.resume)
        return result


async def listen(settings: XSettings, ctx: ListenContext) -> None:
    credentials = ctx.account.credentials
    api = x.api(settings.base_url, credentials["access_token"])
    poller = Poller(settings, api, str(credentials.get("user_id") or ctx.account.external_id), ctx.resume)
    shown: tuple[AccountState, str | None] | None = None
    failures = 0
    try:
        while True:
            try:
                found = await poller.poll()
            except (tweepy.TwitterServerError, aiohttp.ClientError, asyncio.TimeoutError) as err:
                failures += 1
                detail = f"X answered HTTP {err.response.status}" if isinstance(err, tweepy.HTTPException) \
                    else f"X unreachable: {type(err).__name__}"
                if shown is None or shown[0] is not AccountState.BACKOFF:
                    shown = (AccountState.BACKOFF, detail)
                    await ctx.report(*shown)
                await asyncio.sleep(min(settings.poll_seconds, 0.25 * 2 ** min(failures, 8)))
                continue
            except tweepy.Forbidden as err:  # the token lacks dm.read/tweet.read, or the app lost access
                raise NeedsReauth(f"X refused to show mentions or DMs: {x.detail(err)}") from None
            except tweepy.HTTPException as err:
                raise x.refusal(err, credentials) from None
            if found.payloads:
                now = int(time.time() * 1000)
                envelopes = [Envelope("x", ctx.account.id, delivery, now, payload) for delivery, payload in found.payloads]
                await ctx.emit(envelopes, found.resume)
            limited = poller.limited()
            state: tuple[AccountState, str | None] = (AccountState.CONNECTED, None)
            if limited:
                waits = ", ".join(f"{ep} until its reset at {time.strftime('%H:%M:%S', time.gmtime(poller.not_before[ep]))} UTC"
                                  for ep in sorted(limited))
                state = (AccountState.BACKOFF, f"X rate limit: {waits}")
            if state != shown:
                await ctx.report(*state)
                if failures and state[0] is AccountState.CONNECTED:
                    await ctx.reconnected()  # polls failed for a while: let gap recovery look
            shown = state
            if state[0] is AccountState.CONNECTED:
                failures = 0
            pause = settings.poll_seconds
            if len(limited) == len(poller.not_before):  # nothing may be polled before the earliest reset
                pause = max(pause, min(limited.values()))
            await asyncio.sleep(pause)
    finally:
        await x.close(api)
