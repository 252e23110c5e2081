"""A loopback X (Twitter) API v2: OAuth 2 with PKCE (and refresh-token rotation), users/me,
the mentions timeline, DM events and sending DMs, with X's pagination and rate-limit headers.

Why: the X connector polls (X pushes nothing to an ordinary app), so what matters on the wire is
`since_id` and `pagination_token` paging, the newest-first order, the 429 answer with
`x-rate-limit-reset` (epoch seconds), and the OAuth 2 token endpoint's PKCE check and refresh
rotation (a used refresh token is dead). tweepy's AsyncClient is pointed here by rewriting its
hard-coded https://api.twitter.com host. Runs on aiohttp in the test's own loop.

Wire facts (developer.x.com API v2 reference):
- `POST /2/oauth2/token` form `grant_type=authorization_code&code&redirect_uri&code_verifier`
  (confidential clients: HTTP Basic client_id:client_secret) -> `{token_type:"bearer",
  expires_in:7200, access_token, scope, refresh_token}`; `grant_type=refresh_token` rotates both.
  Errors: 400 `{error:"invalid_request", error_description}`.
- `GET /2/users/me` -> `{data:{id,name,username}}`; a bad token -> 401 `{title:"Unauthorized",
  type:"about:blank", status:401, detail:"Unauthorized"}`.
- `GET /2/users/:id/mentions?since_id&pagination_token&max_results(5..100)&expansions…` ->
  `{data:[tweet…] newest first, includes:{users,media}, meta:{result_count,newest_id,oldest_id,
  next_token}}`; nothing new -> `{meta:{result_count:0}}`.
- `GET /2/dm_events?pagination_token&max_results(1..100)` -> `{data:[{id,event_type:"MessageCreate",
  text,sender_id,dm_conversation_id,created_at,attachments:{media_keys}}…] newest first, includes,
  meta:{result_count,next_token}}` (no since_id: clients keep the last id they saw).
- `POST /2/dm_conversations/with/:participant_id/messages {text}` and
  `POST /2/dm_conversations/:dm_conversation_id/messages {text}` -> 201
  `{data:{dm_conversation_id, dm_event_id}}`.
- 429: `x-rate-limit-limit`, `x-rate-limit-remaining: 0`, `x-rate-limit-reset: <epoch s>`, body
  `{title:"Too Many Requests", detail:"Too Many Requests", type:"about:blank", status:429}`.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import math
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

__all__ = ["FakeX", "dm_conversation_id"]

Json = dict[str, Any]
USER = web.RequestKey("user_id", str)  # the caller, from its bearer token


def x_time(ts: float | None = None) -> str:
    """X's timestamps: ISO 8601 UTC with milliseconds and a Z."""
    return datetime.fromtimestamp(ts if ts is not None else time.time(), timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def dm_conversation_id(a: str, b: str) -> str:
    """A one-to-one DM conversation's id: both user ids, smaller first, joined by '-'."""
    return "-".join(sorted((a, b), key=int))


def _problem(status: int, title: str, detail: str | None = None) -> web.Response:
    return web.json_response({"title": title, "detail": detail or title, "type": "about:blank", "status": status},
                             status=status)


@dataclass
class _Code:
    client_id: str
    redirect_uri: str
    challenge: str
    user_id: str


class FakeX:
    def __init__(self, *, client_id: str = "x-client", client_secret: str = "x-secret", token_ttl: int = 7200) -> None:
        self.client_id, self.client_secret, self.token_ttl = client_id, client_secret, token_ttl
        self.port = 0
        self.users: dict[str, Json] = {}
        self.tweets: list[Json] = []  # every tweet that mentions someone, oldest first
        self.dm_events: list[Json] = []  # oldest first
        self.media: dict[str, Json] = {}
        self.groups: dict[str, set[str]] = {}  # group DM conversation id -> member ids
        self.sent: list[Json] = []  # DMs our client posted: {participant_id|dm_conversation_id, text, event_id}
        self.calls: list[tuple[str, str, dict[str, str]]] = []  # (method, path, query) of every API call
        self.refreshes = 0
        self.forbidden: set[str] = set()  # user ids whose token may not read DMs (no dm.read scope)
        self.issued: list[str] = []  # access tokens, in the order they were handed out
        self.bearers: list[str] = []  # the bearer token of every API call
        self._codes: dict[str, _Code] = {}
        self._access: dict[str, tuple[str, float]] = {}  # token -> (user id, expires at)
        self._refresh: dict[str, str] = {}  # live refresh token -> user id
        self._ids = itertools.count(1_900_000_000_000_000_000 + int(time.time() * 1000) % 1_000_000 * 1_000)
        self._limited: list[tuple[str | None, float]] = []  # (path prefix or None, seconds) per next call
        self._down = 0
        self._runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeX:
        app = web.Application(middlewares=[self._gate])
        app.router.add_post("/2/oauth2/token", self._token)
        app.router.add_get("/2/users/me", self._me)
        app.router.add_get("/2/users/{id}/mentions", self._mentions)
        app.router.add_get("/2/dm_events", self._dm_events)
        app.router.add_post("/2/dm_conversations/with/{participant}/messages", self._send)
        app.router.add_post("/2/dm_conversations/{conversation}/messages", self._send)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> FakeX:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ controls

    def next_id(self) -> str:
        return str(next(self._ids))

    def add_user(self, user_id: str, username: str, name: str | None = None) -> Json:
        self.users[user_id] = {"id": user_id, "username": username, "name": name or username.title()}
        return self.users[user_id]

    def add_code(self, code: str, user_id: str, redirect_uri: str, challenge: str) -> None:
        """What the authorize page would hand back after the person agreed (PKCE S256 challenge)."""
        self._codes[code] = _Code(self.client_id, redirect_uri, challenge, user_id)

    def issue_token(self, user_id: str, ttl: int | None = None) -> Json:
        access, refresh = "xat-" + secrets.token_urlsafe(16), "xrt-" + secrets.token_urlsafe(16)
        ttl = self.token_ttl if ttl is None else ttl
        self._access[access] = (user_id, time.time() + ttl)
        self.issued.append(access)
        self._refresh[refresh] = user_id
        return {"token_type": "bearer", "expires_in": ttl, "access_token": access, "refresh_token": refresh,
                "scope": "tweet.read users.read dm.read dm.write offline.access"}

    def revoke(self, token: str) -> None:
        self._access.pop(token, None)
        self._refresh.pop(token, None)

    def expire(self, token: str) -> None:
        user, _ = self._access[token]
        self._access[token] = (user, time.time() - 1)

    def add_media(self, kind: str = "photo") -> str:
        key = f"3_{self.next_id()}"
        self.media[key] = {"media_key": key, "type": kind, "url": f"https://pbs.twimg.com/media/{key}.jpg",
                           "width": 640, "height": 480}
        return key

    def mention(self, author_id: str, text: str, *, mentioned: list[str], reply_to: str | None = None,
                media: bool = False, edit_of: str | None = None) -> Json:
        """Someone tweets `@mentioned… text` (an edit gets a new id; its history names the first)."""
        tweet_id = self.next_id()
        prefix = " ".join(f"@{self.users[u]['username']}" for u in mentioned)
        full = f"{prefix} {text}".strip()
        mentions, at = [], 0
        for u in mentioned:
            name = self.users[u]["username"]
            mentions.append({"start": at, "end": at + len(name) + 1, "username": name, "id": u})
            at += len(name) + 2
        first = next((t for t in self.tweets if t["id"] == edit_of), None)
        tweet: Json = {
            "id": tweet_id, "text": full, "author_id": author_id, "created_at": x_time(),
            "conversation_id": first["conversation_id"] if first else tweet_id,
            "edit_history_tweet_ids": [*(first["edit_history_tweet_ids"] if first else []), tweet_id],
            "entities": {"mentions": mentions},
        }
        if reply_to:
            parent = next(t for t in self.tweets if t["id"] == reply_to)
            tweet["conversation_id"] = parent["conversation_id"]
            tweet["referenced_tweets"] = [{"type": "replied_to", "id": reply_to}]
            tweet["in_reply_to_user_id"] = parent["author_id"]
        if media:
            tweet["attachments"] = {"media_keys": [self.add_media()]}
        self.tweets.append(tweet)
        return tweet

    def dm(self, sender_id: str, recipient_id: str, text: str, *, media: bool = False) -> Json:
        event: Json = {"id": self.next_id(), "event_type": "MessageCreate", "text": text, "sender_id": sender_id,
                       "dm_conversation_id": dm_conversation_id(sender_id, recipient_id), "created_at": x_time()}
        if media:
            event["attachments"] = {"media_keys": [self.add_media()]}
        self.dm_events.append(event)
        return event

    def add_group(self, members: list[str]) -> str:
        """A group DM conversation (its id is a plain number, unlike one-to-one ids)."""
        conversation = self.next_id()
        self.groups[conversation] = set(members)
        return conversation

    def rate_limit_next(self, n: int = 1, *, seconds: float = 1.0, path: str | None = None) -> None:
        """The next `n` calls (to paths starting with `path`, if given) answer 429, resetting in `seconds`."""
        self._limited += [(path, seconds)] * n

    def outage(self, n: int = 1) -> None:
        """The next `n` API calls answer 503, as when X is over capacity."""
        self._down += n

    # ------------------------------------------------------------------ plumbing

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        path = request.path
        self.calls.append((request.method, path, dict(request.query)))
        if path == "/2/oauth2/token":
            return await handler(request)
        if self._down > 0:
            self._down -= 1
            return _problem(503, "Service Unavailable")
        for i, (prefix, seconds) in enumerate(self._limited):
            if prefix is None or path.startswith(prefix):
                del self._limited[i]
                reset = math.ceil(time.time() + seconds)
                response = _problem(429, "Too Many Requests")
                response.headers.update({"x-rate-limit-limit": "300", "x-rate-limit-remaining": "0",
                                         "x-rate-limit-reset": str(reset)})
                return response
        self.bearers.append(request.headers.get("Authorization", "").removeprefix("Bearer "))
        request[USER] = self._bearer_user(request)
        if request[USER] is None:
            return _problem(401, "Unauthorized")
        return await handler(request)

    def _bearer_user(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return None
        user, expires = self._access.get(auth.removeprefix("Bearer "), (None, 0.0))
        return user if expires > time.time() else None

    def _client_ok(self, request: web.Request) -> bool:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Basic "):
            return False
        client, _, secret = base64.b64decode(auth.removeprefix("Basic ")).decode().partition(":")
        return client == self.client_id and secret == self.client_secret

    async def _token(self, request: web.Request) -> web.Response:
        form = await request.post()

        def refuse(description: str, status: int = 400) -> web.Response:
            return web.json_response({"error": "invalid_request", "error_description": description}, status=status)

        if not self._client_ok(request):
            return web.json_response({"error": "unauthorized_client",
                                      "error_description": "Missing valid authorization header"}, status=401)
        if form.get("grant_type") == "authorization_code":
            code = self._codes.pop(str(form.get("code", "")), None)
            if code is None:
                return refuse("Value passed for the authorization code was invalid.")
            verifier = str(form.get("code_verifier", ""))
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
            if challenge != code.challenge or form.get("redirect_uri") != code.redirect_uri:
                return refuse("Value passed for the authorization code was invalid.")
            return web.json_response(self.issue_token(code.user_id))
        if form.get("grant_type") == "refresh_token":
            user = self._refresh.pop(str(form.get("refresh_token", "")), None)  # rotation: used once
            if user is None:
                return refuse("Value passed for the token was invalid.")
            self.refreshes += 1
            return web.json_response(self.issue_token(user))
        return refuse("Missing required parameter [grant_type].")

    async def _me(self, request: web.Request) -> web.Response:
        return web.json_response({"data": self.users[request[USER]]})

    def _includes(self, items: list[Json], expansions: set[str]) -> Json:
        """`includes` holds only what the `expansions` parameter asked for, as on X."""
        users: set[str] = set()
        for item in items:
            users |= {item[k] for k in ("author_id", "sender_id") if k in expansions and item.get(k)}
            if "entities.mentions.username" in expansions:
                users |= {m["id"] for m in item.get("entities", {}).get("mentions", [])}
        media = [self.media[m] for item in items for m in item.get("attachments", {}).get("media_keys", [])] \
            if "attachments.media_keys" in expansions else []
        includes: Json = {}
        if users:
            includes["users"] = [self.users[u] for u in sorted(users) if u in self.users]
        if media:
            includes["media"] = media
        return includes

    def _page(self, items: list[Json], query: Any, lo: int, hi: int, default: int) -> Json:
        """Newest first; `pagination_token` is the offset into that order (opaque to clients)."""
        size = int(query.get("max_results", default))
        if not lo <= size <= hi:
            raise web.HTTPBadRequest(text='{"title":"Invalid Request"}', content_type="application/json")
        start = int(query.get("pagination_token", "0") or 0)
        page = items[start:start + size]
        if not page:
            return {"meta": {"result_count": 0}}
        meta: Json = {"result_count": len(page), "newest_id": page[0]["id"], "oldest_id": page[-1]["id"]}
        if start + size < len(items):
            meta["next_token"] = str(start + size)
        expansions = set(filter(None, query.get("expansions", "").split(",")))
        return {"data": page, "includes": self._includes(page, expansions), "meta": meta}

    async def _mentions(self, request: web.Request) -> web.Response:
        user_id = request.match_info["id"]
        if user_id != request[USER]:
            return _problem(403, "Forbidden")
        since = int(request.query.get("since_id", "0") or 0)
        mine = [t for t in reversed(self.tweets)
                if any(m["id"] == user_id for m in t["entities"]["mentions"]) and int(t["id"]) > since]
        return web.json_response(self._page(mine, request.query, 5, 100, 10))

    async def _dm_events(self, request: web.Request) -> web.Response:
        me = request[USER]
        if me in self.forbidden:
            return _problem(403, "Forbidden", "You are not permitted to perform this action.")
        mine = [e for e in reversed(self.dm_events) if self._member(me, e["dm_conversation_id"])]
        return web.json_response(self._page(mine, request.query, 1, 100, 100))

    def _member(self, user: str, conversation: str) -> bool:
        return user in self.groups.get(conversation, set(conversation.split("-")))

    async def _send(self, request: web.Request) -> web.Response:
        me = request[USER]
        body = await request.json()
        text = body.get("text")
        if not text and not body.get("attachments"):
            return _problem(400, "Invalid Request", "One or more parameters to your request was invalid.")
        if "participant" in request.match_info:
            other = request.match_info["participant"]
            if other not in self.users:
                return _problem(400, "Invalid Request", f"Could not find user with participant_id: [{other}].")
            conversation = dm_conversation_id(me, other)
        else:
            conversation = request.match_info["conversation"]
            if not self._member(me, conversation):
                return _problem(403, "Forbidden")
        event = {"id": self.next_id(), "event_type": "MessageCreate", "text": text or "", "sender_id": me,
                 "dm_conversation_id": conversation, "created_at": x_time()}
        self.dm_events.append(event)
        self.sent.append({**request.match_info, "text": text, "event_id": event["id"]})
        return web.json_response({"data": {"dm_conversation_id": conversation, "dm_event_id": event["id"]}}, status=201)
