"""A loopback Discord: the REST API (v10) and the bot gateway, as discord.py speaks them.

Why: the hub's Discord connector drives discord.py's own gateway client (`DiscordWebSocket`)
and HTTP client; testing it against this fake - not mocks of discord.py - checks HELLO and
heartbeats, IDENTIFY, RESUME with replay from a sequence number, op 7 RECONNECT, op 9
INVALID_SESSION, close codes, 429s with `retry_after`/`X-RateLimit-*` and history paging the
way the real SDK expects them. Runs on aiohttp in the test's own event loop; all state is in
memory.

Point discord.py at it with ``discord.http.Route.BASE = fake.base_url`` (or rewrite route URLs
in an HTTPClient subclass) and connect the gateway to ``fake.gateway_url`` (what
``GET /gateway/bot`` answers). REST answers carry ``Content-Type: application/json`` exactly:
discord.py only decodes JSON when the header is exactly that.

Model: the bot is in the guilds added with ``bot_member=True`` or joined through the OAuth2
``bot`` scope (``add_oauth_code`` + ``POST /oauth2/token``, which also dispatches GUILD_CREATE,
as Discord does). Each IDENTIFY opens a session with its own sequence numbers and event log;
events that happen while a session has no socket are logged and replayed on RESUME, as
Discord does for a resumable session. Deliberate simplifications: one shard, no intents
filtering, no members/presences, no voice, no file uploads (attachments are metadata only),
no permission checks beyond guild membership.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime as dtm
import itertools
import json
import math
import secrets
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import aiohttp
from aiohttp import web

__all__ = ["FakeDiscord", "DISCORD_EPOCH_MS", "snowflake_ms"]

Json = dict[str, Any]
DISCORD_EPOCH_MS = 1_420_070_400_000
API = "/api/v10"

# channel types (Discord's numbers)
GUILD_TEXT, DM, GUILD_VOICE, GUILD_ANNOUNCEMENT, PUBLIC_THREAD = 0, 1, 2, 5, 11


def snowflake_ms(snowflake: int | str) -> int:
    """When a snowflake was made, epoch ms (its top 42 bits count ms since 2015)."""
    return (int(snowflake) >> 22) + DISCORD_EPOCH_MS


def iso(ms: int) -> str:
    return dtm.datetime.fromtimestamp(ms / 1000, dtm.timezone.utc).isoformat(timespec="microseconds")


class ApiFailure(Exception):
    """Raised in a handler to answer ``{"message", "code"}`` with an HTTP status, like Discord."""

    def __init__(self, status: int, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status,
                        headers={"Content-Type": "application/json", **(headers or {})})


@dataclass
class _Conn:
    ws: web.WebSocketResponse
    request: web.Request
    path: str
    compressor: Any = None  # zlib compressobj when the client asked for zlib-stream
    outbox: asyncio.Queue[Json | None] = field(default_factory=asyncio.Queue)
    session: _Session | None = None
    closed: bool = False


@dataclass
class _Session:
    id: str
    seq: int = 0
    log: list[Json] = field(default_factory=list)  # dispatch frames, for RESUME
    conn: _Conn | None = None
    valid: bool = True


@dataclass
class _Grant:
    guild_id: str
    redirect_uri: str | None
    user_id: str
    scope: str


class FakeDiscord:
    """In-memory Discord behind a real HTTP + WebSocket server on 127.0.0.1."""

    def __init__(
        self,
        *,
        bot_token: str = "MTEwMDAwMDAwMDAwMDAwMDAx.fake.bot-token",
        client_id: str = "1100000000000000001",
        client_secret: str = "fake-discord-client-secret",
        heartbeat_interval_ms: int = 41_250,
        bucket_limit: int = 50,
    ) -> None:
        self.bot_token, self.client_id, self.client_secret = bot_token, client_id, client_secret
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.bucket_limit = bucket_limit  # requests per route bucket per second, like X-RateLimit-Limit
        self.port = 0
        self._ids = itertools.count(1)
        self._last_snowflake = 0
        self.bot_user: Json = self._user_obj(client_id, "loomibot", bot=True)
        self.users: dict[str, Json] = {client_id: self.bot_user}
        self.guilds: dict[str, Json] = {}
        self.channels: dict[str, Json] = {}
        self.messages: dict[str, list[Json]] = {}
        self.bot_guilds: set[str] = set()
        self._grants: dict[str, _Grant] = {}
        self._bearer: dict[str, str] = {}  # OAuth access token -> user id
        self._sessions: dict[str, _Session] = {}
        self._conns: list[_Conn] = []
        self._rate_limits: list[tuple[float, bool, str | None]] = []
        self._buckets: dict[str, tuple[float, int]] = {}
        self._runner: web.AppRunner | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        #: what tests assert on
        self.calls: Counter[str] = Counter()  # "GET /channels/{channel_id}/messages" -> n
        self.sent: list[Json] = []  # messages the bot posted over REST, in order
        self.identifies: list[Json] = []  # IDENTIFY payloads (token redacted)
        self.resumes: list[tuple[str, int | None, str]] = []  # (session_id, seq, path) of each RESUME
        self.heartbeats: list[int | None] = []  # the `d` of every heartbeat
        self.gateway_queries: list[dict[str, str]] = []  # the query of every gateway connection
        self.rate_limited: list[str] = []  # routes answered with a 429

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """The REST root, what `LOOMI_DISCORD_BASE_URL` and discord.py's Route.BASE want."""
        return f"http://127.0.0.1:{self.port}{API}"

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    @property
    def resume_gateway_url(self) -> str:
        """READY's `resume_gateway_url`: a different path, so tests see RESUME go there."""
        return f"ws://127.0.0.1:{self.port}/resume-gateway"

    async def start(self) -> FakeDiscord:
        app = web.Application(middlewares=[self._middleware])
        r = app.router
        r.add_get("/gateway", self._gateway)
        r.add_get("/resume-gateway", self._gateway)
        r.add_get(API + "/users/@me", self._me)
        r.add_get(API + "/oauth2/applications/@me", self._application)
        r.add_post(API + "/oauth2/token", self._token)
        r.add_get(API + "/gateway", self._get_gateway)
        r.add_get(API + "/gateway/bot", self._get_gateway_bot)
        r.add_get(API + "/guilds/{guild_id}", self._get_guild)
        r.add_get(API + "/guilds/{guild_id}/channels", self._get_guild_channels)
        r.add_get(API + "/guilds/{guild_id}/threads/active", self._get_active_threads)
        r.add_get(API + "/channels/{channel_id}", self._get_channel)
        r.add_get(API + "/channels/{channel_id}/messages", self._get_messages)
        r.add_post(API + "/channels/{channel_id}/messages", self._post_message)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        self.drop_connections()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ world building

    def snowflake(self) -> str:
        """A fresh snowflake, strictly increasing (so ids sort like Discord's)."""
        value = max((int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22, self._last_snowflake + 1)
        self._last_snowflake = value
        return str(value)

    @staticmethod
    def _user_obj(user_id: str, name: str, bot: bool = False) -> Json:
        user = {"id": user_id, "username": name, "discriminator": "0", "global_name": name.title(),
                "avatar": None, "public_flags": 0, "flags": 0}
        if bot:
            user["bot"] = True
        return user

    def add_user(self, name: str, bot: bool = False) -> str:
        user_id = self.snowflake()
        self.users[user_id] = self._user_obj(user_id, name, bot)
        return user_id

    def add_guild(self, name: str, *, bot_member: bool = True) -> str:
        guild_id = self.snowflake()
        self.guilds[guild_id] = {"id": guild_id, "name": name, "icon": None, "owner_id": self.client_id,
                                 "roles": [], "emojis": [], "features": [], "verification_level": 0,
                                 "default_message_notifications": 0, "explicit_content_filter": 0,
                                 "mfa_level": 0, "system_channel_flags": 0, "premium_tier": 0,
                                 "preferred_locale": "en-US", "nsfw_level": 0, "stickers": []}
        if bot_member:
            self.join(guild_id)
        return guild_id

    def join(self, guild_id: str) -> None:
        """The bot joins a guild: it shows up in READY from now on, and live sessions get
        GUILD_CREATE (what Discord sends when a bot is added to a server)."""
        if guild_id in self.bot_guilds:
            return
        self.bot_guilds.add(guild_id)
        self._dispatch("GUILD_CREATE", self._guild_create(guild_id, joined=True))

    def add_channel(self, guild_id: str, name: str, kind: int = GUILD_TEXT, parent_id: str | None = None) -> str:
        channel_id = self.snowflake()
        channel = {"id": channel_id, "type": kind, "guild_id": guild_id, "name": name,
                   "position": len([c for c in self.channels.values() if c.get("guild_id") == guild_id]),
                   "permission_overwrites": [], "nsfw": False, "parent_id": parent_id,
                   "last_message_id": None, "rate_limit_per_user": 0, "topic": None, "flags": 0}
        if kind == PUBLIC_THREAD:
            channel |= {"owner_id": self.client_id, "message_count": 0, "member_count": 1,
                        "thread_metadata": {"archived": False, "auto_archive_duration": 1440,
                                            "archive_timestamp": iso(int(time.time() * 1000)), "locked": False}}
        self.channels[channel_id] = channel
        self.messages[channel_id] = []
        if guild_id in self.bot_guilds:
            self._dispatch("THREAD_CREATE" if kind == PUBLIC_THREAD else "CHANNEL_CREATE",
                           copy.deepcopy(channel) | ({"newly_created": True} if kind == PUBLIC_THREAD else {}))
        return channel_id

    def add_thread(self, parent_id: str, name: str) -> str:
        return self.add_channel(self.channels[parent_id]["guild_id"], name, PUBLIC_THREAD, parent_id)

    def rename_channel(self, channel_id: str, name: str) -> None:
        channel = self.channels[channel_id]
        channel["name"] = name
        kind = "THREAD_UPDATE" if channel["type"] == PUBLIC_THREAD else "CHANNEL_UPDATE"
        self._dispatch(kind, copy.deepcopy(channel))

    def _message_obj(
        self,
        channel_id: str,
        author_id: str,
        content: str,
        *,
        reply_to: str | None = None,
        attachments: list[Json] | None = None,
        mentions: list[str] | None = None,
    ) -> Json:
        channel = self.channels[channel_id]
        message_id = self.snowflake()
        msg: Json = {"id": message_id, "type": 0, "channel_id": channel_id,
                     "author": copy.deepcopy(self.users[author_id]), "content": content,
                     "timestamp": iso(snowflake_ms(message_id)), "edited_timestamp": None, "tts": False,
                     "mention_everyone": False, "mentions": [copy.deepcopy(self.users[u]) for u in mentions or []],
                     "mention_roles": [], "attachments": [], "embeds": [], "pinned": False, "flags": 0,
                     "components": []}
        for a in attachments or []:
            att_id = self.snowflake()
            url = f"https://cdn.discordapp.com/attachments/{channel_id}/{att_id}/{a['filename']}"
            msg["attachments"].append({"id": att_id, "filename": a["filename"], "size": a.get("size", 0),
                                       "url": url, "proxy_url": url.replace("cdn", "media"),
                                       "content_type": a.get("content_type")})
        if reply_to is not None:
            parent = self._find(channel_id, reply_to)
            msg["type"] = 19  # REPLY
            msg["message_reference"] = {"type": 0, "message_id": reply_to, "channel_id": channel_id,
                                        "guild_id": channel.get("guild_id")}
            msg["referenced_message"] = copy.deepcopy(parent) if parent else None
        channel["last_message_id"] = message_id
        self.messages[channel_id].append(msg)
        return msg

    def _gateway_message(self, msg: Json) -> Json:
        """A message as MESSAGE_CREATE/UPDATE carries it: REST fields plus guild_id, member."""
        out = copy.deepcopy(msg)
        guild_id = self.channels[msg["channel_id"]].get("guild_id")
        if guild_id:
            out["guild_id"] = guild_id
            out["member"] = {"roles": [], "joined_at": iso(snowflake_ms(guild_id)), "deaf": False, "mute": False,
                             "flags": 0, "nick": None}
        return out

    def post_message(self, channel_id: str, author_id: str, content: str, **kw: Any) -> str:
        """Someone posts in `channel_id`: stored in history and dispatched as MESSAGE_CREATE.
        Keywords: `reply_to` (message id), `attachments` ([{filename, size, content_type}]),
        `mentions` (user ids)."""
        msg = self._message_obj(channel_id, author_id, content, **kw)
        self._dispatch("MESSAGE_CREATE", self._gateway_message(msg))
        return str(msg["id"])

    def add_history_only(self, channel_id: str, author_id: str, content: str, **kw: Any) -> str:
        """A message stored without any gateway event: only backfill can find it."""
        return str(self._message_obj(channel_id, author_id, content, **kw)["id"])

    def edit_message(self, channel_id: str, message_id: str, content: str) -> None:
        msg = self._require(channel_id, message_id)
        msg["content"] = content
        msg["edited_timestamp"] = iso(max(int(time.time() * 1000), snowflake_ms(message_id) + 1))
        self._dispatch("MESSAGE_UPDATE", self._gateway_message(msg))

    def delete_message(self, channel_id: str, message_id: str) -> None:
        msg = self._require(channel_id, message_id)
        self.messages[channel_id].remove(msg)
        data: Json = {"id": message_id, "channel_id": channel_id}
        if self.channels[channel_id].get("guild_id"):
            data["guild_id"] = self.channels[channel_id]["guild_id"]
        self._dispatch("MESSAGE_DELETE", data)

    def react(self, channel_id: str, message_id: str, user_id: str, emoji: str, *, added: bool = True) -> None:
        """MESSAGE_REACTION_ADD (or _REMOVE with added=False) with a unicode emoji."""
        msg = self._require(channel_id, message_id)
        reactions = msg.setdefault("reactions", [])
        entry = next((r for r in reactions if r["emoji"]["name"] == emoji), None)
        if added:
            if entry is None:
                entry = {"count": 0, "me": False, "emoji": {"id": None, "name": emoji}, "burst_colors": [],
                         "count_details": {"burst": 0, "normal": 0}, "me_burst": False, "burst_count": 0}
                reactions.append(entry)
            entry["count"] += 1
        elif entry is not None:
            entry["count"] -= 1
            if entry["count"] <= 0:
                reactions.remove(entry)
        data: Json = {"user_id": user_id, "channel_id": channel_id, "message_id": message_id,
                      "emoji": {"id": None, "name": emoji}, "burst": False, "type": 0}
        guild_id = self.channels[channel_id].get("guild_id")
        if guild_id:
            data["guild_id"] = guild_id
        if added:
            data["message_author_id"] = msg["author"]["id"]
        self._dispatch("MESSAGE_REACTION_ADD" if added else "MESSAGE_REACTION_REMOVE", data)

    def history(self, channel_id: str) -> list[Json]:
        return copy.deepcopy(self.messages[channel_id])

    def _find(self, channel_id: str, message_id: str) -> Json | None:
        return next((m for m in self.messages.get(channel_id, []) if m["id"] == message_id), None)

    def _require(self, channel_id: str, message_id: str) -> Json:
        msg = self._find(channel_id, message_id)
        if msg is None:
            raise KeyError(f"no message {message_id} in {channel_id}")
        return msg

    def add_oauth_code(self, code: str, guild_id: str, *, redirect_uri: str | None = None,
                       user_id: str | None = None, scope: str = "bot identify guilds") -> None:
        """A one-time code that POST /oauth2/token exchanges; with the `bot` scope the bot joins
        `guild_id` and the answer carries the guild, as Discord's does."""
        self._grants[code] = _Grant(guild_id, redirect_uri, user_id or self.add_user("installer"), scope)

    # ------------------------------------------------------------------ faults

    def rate_limit_next(self, n: int, retry_after: float = 0.3, *, is_global: bool = False,
                        route: str | None = None) -> None:
        """The next `n` REST calls (of `route`, e.g. "POST /channels/{channel_id}/messages",
        when given) answer 429 with `retry_after` and the matching headers."""
        self._rate_limits += [(retry_after, is_global, route)] * n

    def drop_connections(self) -> None:
        """Kill every gateway socket without a close frame, like a network failure. Sessions
        stay resumable; events until the client is back are replayed on RESUME."""
        for conn in list(self._conns):
            self._detach(conn)
            transport = conn.request.transport
            if transport is not None:
                transport.abort()

    def send_reconnect(self) -> None:
        """op 7 RECONNECT on every socket: the client should close and RESUME."""
        for conn in list(self._conns):
            conn.outbox.put_nowait({"op": 7, "d": None})

    def invalidate_sessions(self, resumable: bool = False) -> None:
        """op 9 INVALID_SESSION on every socket; with resumable=False the sessions are gone
        and only a new IDENTIFY works."""
        for conn in list(self._conns):
            if not resumable and conn.session is not None:
                conn.session.valid = False
            conn.outbox.put_nowait({"op": 9, "d": resumable})

    def close_connections(self, code: int, reason: str = "") -> None:
        """A close frame with a gateway close code (4004 auth failed, 4009 session timed out…)."""
        for conn in list(self._conns):
            if code in (4007, 4009) and conn.session is not None:
                conn.session.valid = False
            conn.outbox.put_nowait({"_close": code, "reason": reason})

    @property
    def connected(self) -> int:
        """Live gateway sockets with a session (identified or resumed)."""
        return sum(1 for c in self._conns if c.session is not None and not c.closed)

    # ------------------------------------------------------------------ gateway

    def _guild_create(self, guild_id: str, joined: bool = False) -> Json:
        """GUILD_CREATE: after READY for each guild READY listed (`unavailable: false`), or
        when the bot joins one (no `unavailable` key; discord.py then dispatches guild_join)."""
        guild = copy.deepcopy(self.guilds[guild_id])
        channels = [copy.deepcopy(c) for c in self.channels.values() if c.get("guild_id") == guild_id]
        if not joined:
            guild["unavailable"] = False
        return guild | {"large": False, "member_count": 2,
                        "joined_at": iso(snowflake_ms(guild_id)), "members": [], "presences": [],
                        "voice_states": [], "stage_instances": [], "guild_scheduled_events": [],
                        "channels": [c for c in channels if c["type"] != PUBLIC_THREAD],
                        "threads": [c for c in channels if c["type"] == PUBLIC_THREAD]}

    def _dispatch(self, kind: str, data: Json) -> None:
        """Log the event in every live session and send it where a socket is attached."""
        guild_id = data.get("guild_id") or (data.get("id") if kind == "GUILD_CREATE" else None)
        if guild_id and guild_id not in self.bot_guilds:
            return  # the bot is not in that guild: Discord tells it nothing
        for session in self._sessions.values():
            if session.valid:
                self._send_dispatch(session, kind, copy.deepcopy(data))

    def _send_dispatch(self, session: _Session, kind: str, data: Json) -> None:
        session.seq += 1
        frame = {"op": 0, "t": kind, "s": session.seq, "d": data}
        session.log.append(frame)
        if session.conn is not None and not session.conn.closed:
            session.conn.outbox.put_nowait(frame)

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(autoping=True, max_msg_size=0)
        await ws.prepare(request)
        conn = _Conn(ws, request, request.path)
        self.gateway_queries.append(dict(request.query))
        if request.query.get("compress") == "zlib-stream":
            conn.compressor = zlib.compressobj()
        self._conns.append(conn)
        writer = self._spawn(self._writer(conn))
        conn.outbox.put_nowait({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms,
                                                "_trace": ["fake-gateway"]}})
        try:
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    payload = json.loads(frame.data)
                except ValueError:
                    conn.outbox.put_nowait({"_close": 4002, "reason": "Error while decoding payload."})
                    continue
                self._on_frame(conn, payload)
        finally:
            self._detach(conn)
            conn.outbox.put_nowait(None)
            await asyncio.gather(writer, return_exceptions=True)
        return ws

    async def _writer(self, conn: _Conn) -> None:
        """Send the connection's frames in order (zlib-stream compressed when asked)."""
        while True:
            frame = await conn.outbox.get()
            if frame is None or conn.ws.closed:
                return
            try:
                if "_close" in frame:
                    self._detach(conn)
                    await conn.ws.close(code=frame["_close"], message=frame["reason"].encode())
                    return
                text = json.dumps(frame)
                if conn.compressor is not None:
                    data = conn.compressor.compress(text.encode()) + conn.compressor.flush(zlib.Z_SYNC_FLUSH)
                    await conn.ws.send_bytes(data)
                else:
                    await conn.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                self._detach(conn)
                return

    def _detach(self, conn: _Conn) -> None:
        conn.closed = True
        if conn in self._conns:
            self._conns.remove(conn)
        if conn.session is not None and conn.session.conn is conn:
            conn.session.conn = None

    def _on_frame(self, conn: _Conn, payload: Any) -> None:
        op = payload.get("op") if isinstance(payload, dict) else None
        data = payload.get("d") if isinstance(payload, dict) else None
        if op == 1:
            self.heartbeats.append(data)
            conn.outbox.put_nowait({"op": 11})
        elif op == 2:
            self._identify(conn, data if isinstance(data, dict) else {})
        elif op == 6:
            self._resume(conn, data if isinstance(data, dict) else {})
        elif conn.session is None:
            conn.outbox.put_nowait({"_close": 4003, "reason": "Not authenticated."})
        elif op not in (3, 4, 8):
            conn.outbox.put_nowait({"_close": 4001, "reason": "Unknown opcode."})

    def _identify(self, conn: _Conn, data: Json) -> None:
        self.identifies.append({k: v for k, v in data.items() if k != "token"})
        if data.get("token") != self.bot_token:
            conn.outbox.put_nowait({"_close": 4004, "reason": "Authentication failed."})
            return
        if conn.session is not None:
            conn.outbox.put_nowait({"_close": 4005, "reason": "Already authenticated."})
            return
        session = _Session(secrets.token_hex(16))
        self._sessions[session.id] = session
        session.conn, conn.session = conn, session
        ready = {"v": 10, "user": copy.deepcopy(self.bot_user), "session_type": "normal",
                 "guilds": [{"id": g, "unavailable": True} for g in sorted(self.bot_guilds)],
                 "session_id": session.id, "resume_gateway_url": self.resume_gateway_url,
                 "private_channels": [], "relationships": [], "presences": [], "guild_join_requests": [],
                 "geo_ordered_rtc_regions": [], "auth_session_id_hash": "fake", "user_settings": {},
                 "application": {"id": self.client_id, "flags": 0}, "_trace": ["fake-gateway"]}
        self._send_dispatch(session, "READY", ready)
        for guild_id in sorted(self.bot_guilds):
            self._send_dispatch(session, "GUILD_CREATE", self._guild_create(guild_id))

    def _resume(self, conn: _Conn, data: Json) -> None:
        self.resumes.append((str(data.get("session_id")), data.get("seq"), conn.path))
        if data.get("token") != self.bot_token:
            conn.outbox.put_nowait({"_close": 4004, "reason": "Authentication failed."})
            return
        session = self._sessions.get(str(data.get("session_id")))
        if session is None or not session.valid:
            conn.outbox.put_nowait({"op": 9, "d": False})
            return
        seq = data.get("seq") or 0
        if not isinstance(seq, int) or seq > session.seq:
            conn.outbox.put_nowait({"_close": 4007, "reason": "Invalid seq."})
            return
        if session.conn is not None and session.conn is not conn:
            old = session.conn
            self._detach(old)
            old.outbox.put_nowait({"_close": 4000, "reason": "Session resumed elsewhere."})
        session.conn, conn.session = conn, session
        for frame in session.log:
            if frame["s"] > seq:
                conn.outbox.put_nowait(frame)
        self._send_dispatch(session, "RESUMED", {"_trace": ["fake-gateway"]})

    # ------------------------------------------------------------------ REST plumbing

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        if request.path in ("/gateway", "/resume-gateway"):
            return await handler(request)
        resource = request.match_info.route.resource
        route = f"{request.method} {resource.canonical.removeprefix(API) if resource else request.path}"
        self.calls[route] += 1
        headers = self._bucket_headers(route, request)
        fault = next((f for f in self._rate_limits if f[2] in (None, route)), None)
        if fault is not None:
            self._rate_limits.remove(fault)
            return self._too_many(route, fault[0], fault[1], headers)
        if headers["X-RateLimit-Remaining"] == "-1":
            return self._too_many(route, float(headers["X-RateLimit-Reset-After"]), False, headers)
        try:
            response = await handler(request)
        except ApiFailure as failure:
            response = _json({"message": failure.message, "code": failure.code}, failure.status)
        response.headers.update(headers)
        return response

    def _bucket_headers(self, route: str, request: web.Request) -> dict[str, str]:
        """Per-route, per-major-parameter buckets of `bucket_limit` requests a second."""
        major = request.match_info.get("channel_id") or request.match_info.get("guild_id") or ""
        key = f"{route}:{major}"
        now = time.time()
        start, used = self._buckets.get(key, (now, 0))
        if now - start >= 1.0:
            start, used = now, 0
        used += 1
        self._buckets[key] = (start, used)
        reset_after = max(0.001, start + 1.0 - now)
        remaining = self.bucket_limit - used
        return {"X-RateLimit-Limit": str(self.bucket_limit), "X-RateLimit-Remaining": str(max(remaining, -1)),
                "X-RateLimit-Reset": f"{start + 1.0:.3f}", "X-RateLimit-Reset-After": f"{reset_after:.3f}",
                "X-RateLimit-Bucket": base64.b32encode(route.encode()).decode()[:16].lower()}

    def _too_many(self, route: str, retry_after: float, is_global: bool, headers: dict[str, str]) -> web.Response:
        self.rate_limited.append(route)
        headers = headers | {"Retry-After": str(math.ceil(retry_after)), "X-RateLimit-Remaining": "0",
                             "X-RateLimit-Reset-After": f"{retry_after:.3f}", "Via": "1.1 google",
                             "X-RateLimit-Scope": "global" if is_global else "user"}
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        body = {"message": "You are being rate limited.", "retry_after": retry_after, "global": is_global}
        return _json(body, 429, headers)

    def _bot(self, request: web.Request) -> None:
        if request.headers.get("Authorization") != f"Bot {self.bot_token}":
            raise ApiFailure(401, "401: Unauthorized")

    def _channel(self, request: web.Request) -> Json:
        self._bot(request)
        channel = self.channels.get(request.match_info["channel_id"])
        if channel is None:
            raise ApiFailure(404, "Unknown Channel", 10003)
        if channel.get("guild_id") not in self.bot_guilds:
            raise ApiFailure(403, "Missing Access", 50001)
        return channel

    # ------------------------------------------------------------------ REST routes

    async def _me(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and auth[7:] in self._bearer:
            user = self.users[self._bearer[auth[7:]]]
            return _json(copy.deepcopy(user) | {"locale": "en-US", "mfa_enabled": False, "premium_type": 0})
        self._bot(request)
        return _json(copy.deepcopy(self.bot_user) | {"verified": True, "mfa_enabled": False, "bio": "", "banner": None})

    async def _application(self, request: web.Request) -> web.Response:
        self._bot(request)
        owner = self._user_obj(self.snowflake(), "owner")
        return _json({"id": self.client_id, "name": "Loomi Fake", "icon": None, "description": "",
                      "summary": "", "type": None, "bot_public": True, "bot_require_code_grant": False,
                      "verify_key": "0" * 64, "flags": 0, "owner": owner, "team": None, "bot": self.bot_user,
                      "rpc_origins": [], "redirect_uris": [], "interactions_endpoint_url": None,
                      "install_params": {"scopes": ["bot"], "permissions": "0"}})

    async def _get_gateway(self, request: web.Request) -> web.Response:
        return _json({"url": self.gateway_url})

    async def _get_gateway_bot(self, request: web.Request) -> web.Response:
        self._bot(request)
        return _json({"url": self.gateway_url, "shards": 1,
                      "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 14_400_000,
                                              "max_concurrency": 1}})

    async def _get_guild(self, request: web.Request) -> web.Response:
        self._bot(request)
        guild_id = request.match_info["guild_id"]
        if guild_id not in self.guilds:
            raise ApiFailure(404, "Unknown Guild", 10004)
        if guild_id not in self.bot_guilds:
            raise ApiFailure(403, "Missing Access", 50001)
        return _json(copy.deepcopy(self.guilds[guild_id]))

    async def _get_guild_channels(self, request: web.Request) -> web.Response:
        await self._get_guild(request)
        guild_id = request.match_info["guild_id"]
        return _json([copy.deepcopy(c) for c in self.channels.values()
                      if c.get("guild_id") == guild_id and c["type"] != PUBLIC_THREAD])

    async def _get_active_threads(self, request: web.Request) -> web.Response:
        await self._get_guild(request)
        guild_id = request.match_info["guild_id"]
        threads = [copy.deepcopy(c) for c in self.channels.values() if c.get("guild_id") == guild_id
                   and c["type"] == PUBLIC_THREAD and not c["thread_metadata"]["archived"]]
        return _json({"threads": threads, "members": []})

    async def _get_channel(self, request: web.Request) -> web.Response:
        return _json(copy.deepcopy(self._channel(request)))

    async def _get_messages(self, request: web.Request) -> web.Response:
        """Newest first, like Discord; `before`/`after` are exclusive message ids; with
        `after` the page is the `limit` messages right after it (still newest first)."""
        channel = self._channel(request)
        q = request.query
        try:
            limit = int(q.get("limit", "50"))
        except ValueError:
            raise ApiFailure(400, "Invalid Form Body", 50035) from None
        if not 1 <= limit <= 100:
            raise ApiFailure(400, "Invalid Form Body", 50035)
        msgs = sorted(self.messages[channel["id"]], key=lambda m: int(m["id"]))
        if q.get("before"):
            msgs = [m for m in msgs if int(m["id"]) < int(q["before"])][-limit:]
        elif q.get("after"):
            msgs = [m for m in msgs if int(m["id"]) > int(q["after"])][:limit]
        else:
            msgs = msgs[-limit:]
        return _json([copy.deepcopy(m) for m in reversed(msgs)])

    async def _post_message(self, request: web.Request) -> web.Response:
        channel = self._channel(request)
        try:
            body = await request.json()
        except ValueError:
            raise ApiFailure(400, "Invalid Form Body", 50035) from None
        content = body.get("content") or ""
        if not content:
            raise ApiFailure(400, "Cannot send an empty message", 50006)
        if len(content) > 2000:
            raise ApiFailure(400, "Invalid Form Body", 50035)
        ref = body.get("message_reference") or {}
        reply_to = str(ref["message_id"]) if ref.get("message_id") else None
        if reply_to and self._find(channel["id"], reply_to) is None and ref.get("fail_if_not_exists", True):
            raise ApiFailure(400, "Invalid Form Body", 50035)
        if reply_to and self._find(channel["id"], reply_to) is None:
            reply_to = None
        msg = self._message_obj(channel["id"], self.client_id, content, reply_to=reply_to)
        if body.get("nonce") is not None:
            msg["nonce"] = body["nonce"]
        self.sent.append(copy.deepcopy(msg))
        self._dispatch("MESSAGE_CREATE", self._gateway_message(msg))  # the bot sees its own message too
        return _json(copy.deepcopy(msg))

    async def _token(self, request: web.Request) -> web.Response:
        """OAuth2 code exchange; client credentials by Basic auth or in the form."""
        form = dict(await request.post())
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            client_id, _, client_secret = base64.b64decode(auth[6:]).decode().partition(":")
        if client_id != self.client_id or client_secret != self.client_secret:
            return _json({"error": "invalid_client"}, 401)
        if form.get("grant_type") != "authorization_code":
            return _json({"error": "unsupported_grant_type"}, 400)
        grant = self._grants.pop(str(form.get("code")), None)
        if grant is None:
            return _json({"error": "invalid_grant", "error_description": 'Invalid "code" in request.'}, 400)
        if grant.redirect_uri is not None and form.get("redirect_uri") != grant.redirect_uri:
            return _json({"error": "invalid_grant", "error_description": 'Invalid "redirect_uri" in request.'}, 400)
        access = secrets.token_urlsafe(24)
        self._bearer[access] = grant.user_id
        out: Json = {"token_type": "Bearer", "access_token": access, "expires_in": 604800,
                     "refresh_token": secrets.token_urlsafe(24), "scope": grant.scope}
        if "bot" in grant.scope.split():
            self.join(grant.guild_id)
            out["guild"] = copy.deepcopy(self.guilds[grant.guild_id])
        return _json(out)
