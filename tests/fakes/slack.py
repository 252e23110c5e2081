"""A loopback Slack that speaks the real Web API, Socket Mode and Events API wire formats.

Why: the hub's Slack connector must be tested with the real ``slack_sdk`` clients doing the
talking, so that a mismatch between what we *think* Slack sends and what the SDK expects
shows up here and not in production. The fake runs on aiohttp inside the test's own event
loop, keeps all state in memory and lets a test create traffic (``post_message`` ...) and
faults (``fail_next``, ``drop_connections``, ``send_disconnect``) on demand.

Point the SDK at it with ``AsyncWebClient(token=fake.bot_token, base_url=fake.base_url)``
and ``SocketModeClient(fake.app_token, web_client=AsyncWebClient(base_url=fake.base_url))``.

Deliberate simplifications: one workspace's worth of channels/users (OAuth installs for
other teams get working tokens but share the data), no scopes, no files API, events are
queued while no Socket Mode client is connected (Slack would retry, then give up).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import itertools
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Sequence

import aiohttp
from aiohttp import web

from tests.fakes.faults import Fault, FaultInjection, Faults

__all__ = ["FakeSlack", "HttpDelivery"]

Json = dict[str, Any]


def ts_key(ts: str) -> int:
    """A Slack ``ts`` as integer microseconds: string comparison breaks when digits differ."""
    sec, _, frac = str(ts).partition(".")
    return int(sec or 0) * 1_000_000 + int((frac + "000000")[:6])


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("1", "true", "yes")


def _cursor(kind: str, value: str) -> str:
    return base64.b64encode(f"{kind}:{value}".encode()).decode()


def _uncursor(cursor: str) -> str:
    try:
        return base64.b64decode(cursor.encode()).decode().partition(":")[2]
    except (ValueError, UnicodeDecodeError):
        return ""


def sign(signing_secret: str, timestamp: str, body: bytes) -> str:
    """Slack request signature: ``v0=`` + hex HMAC-SHA256 of ``v0:{ts}:{body}``."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


class SlackApiFailure(Exception):
    """Raised inside a handler to answer ``{"ok": false, "error": ...}`` (HTTP 200, like Slack)."""

    def __init__(self, error: str, status: int = 200) -> None:
        super().__init__(error)
        self.error = error
        self.status = status


@dataclass
class HttpDelivery:
    """One HTTP POST of an Events API body (kept so tests can assert on retries)."""

    url: str
    event_id: str | None
    retry_num: int
    status: int | None
    body: str
    headers: dict[str, str]
    error: str | None = None


@dataclass
class _Identity:
    """Who a token belongs to; answers auth.test and authors chat.postMessage."""

    team_id: str
    team_name: str
    user_id: str
    bot_id: str | None
    expires_at: float | None = None


@dataclass
class _Install:
    client_id: str
    client_secret: str
    redirect_uri: str | None
    team_id: str
    team_name: str
    access_token: str
    bot_user_id: str
    bot_id: str
    refresh_token: str | None
    expires_in: int | None
    authed_user_id: str
    scope: str


@dataclass
class _Conn:
    ws: web.WebSocketResponse
    request: web.Request
    closed: bool = False


@dataclass
class _Delivery:
    """One event on its way to a Socket Mode client; lives until acked or given up."""

    event_id: str
    payload: Json
    sends: int = 0
    retry_reason: str = ""
    conn: _Conn | None = None
    sent_at: float = 0.0
    envelope_ids: list[str] = field(default_factory=list)


class FakeSlack(FaultInjection):
    """In-memory Slack workspace behind a real HTTP + WebSocket server on 127.0.0.1.

    Faults beyond ``fail_next``/``drop_connections``/``send_disconnect`` (tests/fakes/faults.py):
    on the Web API ``fail_for`` (429/500 for a while), ``stall``/``stall_for``, ``drop_next``
    (an answer cut off halfway), ``garbage_next``; on Socket Mode ``stall_sockets`` (silent
    sockets: no pongs, no events, no new handshakes) and ``send_garbage`` (frames that are not
    what Slack sends)."""

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-fake-bot-token",
        app_token: str = "xapp-1-AFAKE-fake-app-token",
        team_id: str = "T0FAKE",
        team_name: str = "Fake Team",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        app_id: str = "A1",
        verification_token: str = "fake-verification-token",
        ack_timeout: float = 3.0,
        max_retries: int = 3,
        http_retry_delays: Sequence[float] = (0.05, 0.1, 0.2),
        http_timeout: float = 3.0,
    ) -> None:
        self.bot_token, self.app_token = bot_token, app_token
        self.team_id, self.team_name, self.app_id = team_id, team_name, app_id
        self.bot_user_id, self.bot_id = bot_user_id, bot_id
        self.verification_token = verification_token
        self.ack_timeout, self.max_retries = ack_timeout, max_retries
        self.http_retry_delays, self.http_timeout = tuple(http_retry_delays), http_timeout
        #: Push events over Socket Mode; and/or over HTTP when ``http_event_url`` is set.
        self.socket_mode = True
        self.http_event_url: str | None = None
        self.signing_secret: str | None = None

        self.port = 0
        self.calls: Counter[str] = Counter()
        self.acked_event_ids: list[str] = []
        self.given_up_event_ids: list[str] = []
        self.http_deliveries: list[HttpDelivery] = []
        #: Messages the bot posted via chat.postMessage, in order.
        self.sent_messages: list[Json] = []

        self._tokens: dict[str, _Identity] = {
            bot_token: _Identity(team_id, team_name, bot_user_id, bot_id)
        }
        self._app_tokens = {app_token}
        self._tickets: set[str] = set()
        self._channels: dict[str, Json] = {}
        self._messages: dict[str, list[Json]] = {}
        self._users: dict[str, Json] = {}
        self._codes: dict[str, _Install] = {}
        self._refresh: dict[str, _Install] = {}
        self._faults: dict[str, list[tuple[int, int, str | None]]] = {}
        self.faults = Faults()
        #: (time.monotonic(), method) of every Web API call, to check how a client spaces retries.
        self.call_log: list[tuple[float, str]] = []
        #: (channel, cursor) of every conversations.history call: where a backfill (re)started.
        self.history_requests: list[tuple[str, str | None]] = []
        self._sockets_silent_until = 0.0
        self._events: dict[str, Json] = {}
        self._deliveries: list[_Delivery] = []
        self._by_envelope: dict[str, _Delivery] = {}
        self._conns: list[_Conn] = []
        self._seq = itertools.count(1)
        self._last_us = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._dispatcher: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.add_user(bot_user_id, "fakebot", is_bot=True, bot_id=bot_id)

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """What ``AsyncWebClient(base_url=...)`` wants: trailing ``/api/`` included."""
        return f"http://127.0.0.1:{self.port}/api/"

    async def start(self) -> FakeSlack:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/link/", self._link)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._session = aiohttp.ClientSession()
        self._dispatcher = asyncio.create_task(self._dispatch_loop())
        return self

    async def stop(self) -> None:
        for task in [self._dispatcher, *self._tasks]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*[t for t in [self._dispatcher, *self._tasks] if t], return_exceptions=True)
        self.drop_connections()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        self._runner = self._session = self._dispatcher = None

    async def __aenter__(self) -> FakeSlack:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ controls

    def fail_next(
        self, method: str, status: int = 429, retry_after: int = 1, times: int = 1, error: str | None = None
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail. 429 looks exactly like Slack's
        rate limit (``Retry-After`` + ``ratelimited``); ``status=200, error="..."`` gives a
        plain ``ok: false`` answer such as ``token_revoked``."""
        self._faults.setdefault(method, []).extend([(status, retry_after, error)] * times)

    def drop_connections(self) -> None:
        """Kill every Socket Mode websocket without a close frame, like a network failure;
        unacked envelopes on them are re-delivered once a client is back."""
        for conn in list(self._conns):
            conn.closed = True
            transport = conn.request.transport
            if transport is not None:
                transport.abort()
        self._wake.set()

    def send_disconnect(self, reason: str = "refresh_requested", grace: float = 0.0) -> asyncio.Task[None]:
        """Send Slack's ``disconnect`` message on every socket, then (after ``grace`` seconds,
        in which a well-behaved client hangs up itself) close it. Returns a task: await it,
        or don't. slack_sdk re-opens twice when the close follows at once (once for the
        close frame, once for the message); with a grace period it re-opens once."""

        async def run() -> None:
            conns = list(self._conns)
            msg = {"type": "disconnect", "reason": reason, "debug_info": {"host": "applink-fake"}}
            for conn in conns:
                try:
                    await conn.ws.send_json(msg)
                except (ConnectionError, RuntimeError):
                    pass
            if grace:
                await asyncio.sleep(grace)
            for conn in conns:
                try:
                    await conn.ws.close()
                except (ConnectionError, RuntimeError):
                    pass

        return self._spawn(run())

    def add_user(
        self, id: str, name: str, real_name: str | None = None, is_bot: bool = False, bot_id: str | None = None
    ) -> Json:
        profile: Json = {"real_name": real_name or name, "display_name": name}
        if bot_id:
            profile["bot_id"] = bot_id
        user = {"id": id, "team_id": self.team_id, "name": name, "real_name": real_name or name,
                "deleted": False, "is_bot": is_bot, "is_app_user": False, "profile": profile}
        self._users[id] = user
        return user

    def add_channel(
        self, id: str, name: str, is_im: bool = False, is_private: bool = False, user: str | None = None
    ) -> Json:
        ch = {"id": id, "name": name, "name_normalized": name, "is_channel": not is_im and not is_private,
              "is_group": is_private and not is_im, "is_im": is_im, "is_mpim": False,
              "is_private": is_private or is_im, "is_archived": False, "is_general": False,
              "is_member": True, "created": int(time.time()), "creator": self.bot_user_id,
              "context_team_id": self.team_id}
        if is_im:
            ch["user"] = user or name
        self._channels[id] = ch
        self._messages.setdefault(id, [])
        return ch

    def post_message(
        self, channel: str, user: str, text: str, thread_ts: str | None = None, files: list[Json] | None = None
    ) -> str:
        """A human posts in ``channel``: stored in history and pushed as a ``message`` event."""
        msg = self._store(channel, {"type": "message", "user": user, "text": text,
                                    "client_msg_id": str(uuid.uuid4()), "team": self.team_id},
                          thread_ts, files)
        self._push_message_event(channel, msg)
        return str(msg["ts"])

    def add_history_only(self, channel: str, user: str, text: str, thread_ts: str | None = None) -> str:
        """Store a message without pushing an event: what a missed event looks like."""
        msg = self._store(channel, {"type": "message", "user": user, "text": text,
                                    "client_msg_id": str(uuid.uuid4()), "team": self.team_id}, thread_ts, None)
        return str(msg["ts"])

    def edit_message(self, channel: str, ts: str, new_text: str, editor: str | None = None) -> None:
        """Edit a stored message and push ``message_changed`` (with ``previous_message``)."""
        msg = self._find(channel, ts)
        if msg is None:
            raise KeyError(f"no message {ts} in {channel}")
        previous = copy.deepcopy(msg)
        event_ts = self._next_ts()
        msg["text"] = new_text
        msg["edited"] = {"user": editor or msg.get("user", ""), "ts": event_ts}
        self._push_event({"type": "message", "subtype": "message_changed", "hidden": True,
                          "message": copy.deepcopy(msg), "previous_message": previous, "channel": channel,
                          "channel_type": self._channel_type(channel), "ts": event_ts, "event_ts": event_ts})

    def delete_message(self, channel: str, ts: str) -> None:
        """Remove a message from history and push ``message_deleted``."""
        msg = self._find(channel, ts)
        if msg is None:
            raise KeyError(f"no message {ts} in {channel}")
        self._messages[channel].remove(msg)
        parent_ts = msg.get("thread_ts")
        if parent_ts and parent_ts != ts and (parent := self._find(channel, parent_ts)) is not None:
            replies = [m for m in self._messages[channel] if m.get("thread_ts") == parent_ts and m["ts"] != parent_ts]
            parent["reply_count"] = len(replies)
            parent["latest_reply"] = replies[-1]["ts"] if replies else parent_ts
        event_ts = self._next_ts()
        self._push_event({"type": "message", "subtype": "message_deleted", "hidden": True, "channel": channel,
                          "channel_type": self._channel_type(channel), "ts": event_ts, "deleted_ts": ts,
                          "event_ts": event_ts, "previous_message": msg})

    def push_event(self, event: Json) -> str:
        """Push any inner event (``app_mention``, ``reaction_added`` ...); returns its event_id."""
        return self._push_event(event)

    def redeliver(self, event_id: str) -> None:
        """Send an already-delivered event again under a new envelope_id (a duplicate)."""
        self._deliveries.append(_Delivery(event_id, self._events[event_id]))
        self._wake.set()

    def history(self, channel: str) -> list[Json]:
        """Every stored message of ``channel`` (threads included), oldest first, for asserts."""
        return copy.deepcopy(self._messages[channel])

    def add_oauth_code(
        self,
        code: str,
        client_id: str,
        client_secret: str,
        redirect_uri: str | None,
        team_id: str,
        team_name: str,
        access_token: str,
        bot_user_id: str,
        refresh_token: str | None = None,
        expires_in: int | None = None,
        *,
        bot_id: str | None = None,
        authed_user_id: str = "UINSTALLER",
        scope: str = "channels:history,chat:write,groups:history,im:history,users:read",
    ) -> None:
        """Register a one-time ``code`` that oauth.v2.access will exchange for a bot token."""
        self._codes[code] = _Install(client_id, client_secret, redirect_uri, team_id, team_name, access_token,
                                     bot_user_id, bot_id or f"B{bot_user_id.lstrip('U')}", refresh_token,
                                     expires_in, authed_user_id, scope)

    async def deliver_http(
        self,
        url: str,
        signing_secret: str,
        payload: Json | None = None,
        *,
        retry_delays: Sequence[float] | None = None,
    ) -> list[HttpDelivery]:
        """POST an Events API body to ``url`` signed like Slack, retrying on failure.

        ``payload`` may be a full body (``type`` is ``event_callback``/``url_verification``),
        a bare inner event (wrapped in a fresh ``event_callback``), or None for a
        ``url_verification`` challenge. Retries carry ``X-Slack-Retry-Num``/``-Reason`` and
        stop on a 2xx or ``X-Slack-No-Retry: 1``. Returns every attempt (also kept in
        ``http_deliveries``)."""
        if payload is None:
            body_obj: Json = {"token": self.verification_token, "challenge": uuid.uuid4().hex,
                              "type": "url_verification"}
        elif payload.get("type") in ("event_callback", "url_verification", "app_rate_limited"):
            body_obj = payload
        else:
            body_obj = self._wrap(payload)
        body = json.dumps(body_obj).encode()
        delays = list(self.http_retry_delays if retry_delays is None else retry_delays)
        assert self._session is not None, "start() the fake first"
        results: list[HttpDelivery] = []
        reason = ""
        for attempt in range(len(delays) + 1):
            if attempt:
                await asyncio.sleep(delays[attempt - 1])
            stamp = str(int(time.time()))
            headers = {"Content-Type": "application/json", "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)",
                       "X-Slack-Request-Timestamp": stamp, "X-Slack-Signature": sign(signing_secret, stamp, body)}
            if attempt:
                headers |= {"X-Slack-Retry-Num": str(attempt), "X-Slack-Retry-Reason": reason}
            result = HttpDelivery(url, body_obj.get("event_id"), attempt, None, "", {})
            try:
                timeout = aiohttp.ClientTimeout(total=self.http_timeout)
                async with self._session.post(url, data=body, headers=headers, timeout=timeout) as resp:
                    result.status, result.body, result.headers = resp.status, await resp.text(), dict(resp.headers)
                reason = "" if 200 <= resp.status < 300 else "http_error"
            except asyncio.TimeoutError:
                reason = result.error = "http_timeout"
            except aiohttp.ClientConnectionError:
                reason = result.error = "connection_failed"
            except aiohttp.ClientError:
                reason = result.error = "unknown_error"
            results.append(result)
            self.http_deliveries.append(result)
            if not reason or result.headers.get("X-Slack-No-Retry") == "1":
                break
        return results

    # ------------------------------------------------------------------ storage helpers

    def _next_ts(self) -> str:
        self._last_us = max(int(time.time() * 1_000_000), self._last_us + 1)
        return f"{self._last_us // 1_000_000}.{self._last_us % 1_000_000:06d}"

    def _channel(self, channel_id: Any) -> Json:
        if not channel_id:
            raise SlackApiFailure("channel_not_found")
        ch = self._channels.get(str(channel_id))
        if ch is None:
            raise SlackApiFailure("channel_not_found")
        return ch

    def _channel_type(self, channel_id: str) -> str:
        ch = self._channels[channel_id]
        return "im" if ch["is_im"] else "group" if ch["is_private"] else "channel"

    def _find(self, channel: str, ts: str) -> Json | None:
        return next((m for m in self._messages.get(channel, []) if m["ts"] == ts), None)

    def _store(self, channel: str, msg: Json, thread_ts: str | None, files: list[Json] | None) -> Json:
        if channel not in self._channels:
            raise KeyError(f"unknown channel {channel}; add_channel() it first")
        msg["ts"] = self._next_ts()
        if files:
            msg |= {"subtype": "file_share", "files": copy.deepcopy(files), "upload": False}
        if thread_ts:
            msg["thread_ts"] = thread_ts
            parent = self._find(channel, thread_ts)
            if parent is not None:
                msg["parent_user_id"] = parent.get("user", "")
                parent["thread_ts"] = thread_ts
                parent["reply_count"] = parent.get("reply_count", 0) + 1
                parent["latest_reply"] = msg["ts"]
                users = parent.setdefault("reply_users", [])
                if msg.get("user") and msg["user"] not in users:
                    users.append(msg["user"])
                parent["reply_users_count"] = len(users)
        self._messages[channel].append(msg)
        return msg

    # ------------------------------------------------------------------ event push

    def _wrap(self, event: Json) -> Json:
        event_id = f"Ev{next(self._seq):08X}"
        payload = {"token": self.verification_token, "team_id": self.team_id, "api_app_id": self.app_id,
                   "event": copy.deepcopy(event), "type": "event_callback", "event_id": event_id,
                   "event_time": int(time.time()), "event_context": f"4-{uuid.uuid4().hex}",
                   "authorizations": [{"enterprise_id": None, "team_id": self.team_id, "user_id": self.bot_user_id,
                                       "is_bot": True, "is_enterprise_install": False}],
                   "is_ext_shared_channel": False}
        self._events[event_id] = payload
        return payload

    def _push_message_event(self, channel: str, msg: Json) -> str:
        event = copy.deepcopy(msg)
        event |= {"channel": channel, "event_ts": msg["ts"], "channel_type": self._channel_type(channel)}
        return self._push_event(event)

    def _push_event(self, event: Json) -> str:
        payload = self._wrap(event)
        if self.socket_mode:
            self._deliveries.append(_Delivery(payload["event_id"], payload))
            self._wake.set()
        if self.http_event_url and self.signing_secret:
            self._spawn(self.deliver_http(self.http_event_url, self.signing_secret, payload))
        return str(payload["event_id"])

    # ------------------------------------------------------------------ socket mode

    def stall_sockets(self, seconds: float) -> None:
        """Socket Mode goes silent for `seconds`: open sockets stop reading (no pongs, no acks
        read) and get no events, and new handshakes wait until the silence ends."""
        loop = asyncio.get_running_loop()
        self._sockets_silent_until = loop.time() + seconds
        paused = [c.request.transport for c in self._conns if c.request.transport is not None]
        for transport in paused:
            transport.pause_reading()

        async def resume() -> None:
            await asyncio.sleep(seconds)
            for transport in paused:
                if not transport.is_closing():
                    transport.resume_reading()
            self._wake.set()

        self._spawn(resume())

    def send_garbage(self, text: str | None = None) -> asyncio.Task[None]:
        """Send every open socket a frame that is not JSON (``text``), then an ``events_api``
        envelope whose payload is not an event at all. Returns a task (await it, or don't)."""

        async def run() -> None:
            frames = [text or "{not json", json.dumps({"envelope_id": str(uuid.uuid4()), "type": "events_api",
                                                       "accepts_response_payload": False, "payload": "garbage"})]
            for conn in list(self._conns):
                for frame in frames:
                    try:
                        await conn.ws.send_str(frame)
                    except (ConnectionError, RuntimeError):
                        pass

        return self._spawn(run())

    def _silent_for(self) -> float:
        return max(self._sockets_silent_until - asyncio.get_running_loop().time(), 0.0)

    async def _link(self, request: web.Request) -> web.StreamResponse:
        if self._silent_for():
            await asyncio.sleep(self._silent_for())
        if request.query.get("ticket") not in self._tickets:
            return web.json_response({"ok": False, "error": "invalid_ticket"}, status=401)
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Conn(ws, request)
        await ws.send_json({"type": "hello", "num_connections": len(self._conns) + 1,
                            "debug_info": {"host": "applink-fake", "build_number": 1,
                                           "approximate_connection_time": 3600},
                            "connection_info": {"app_id": self.app_id}})
        self._conns.append(conn)
        self._wake.set()
        try:
            async for frame in ws:
                if frame.type == aiohttp.WSMsgType.TEXT:
                    self._on_ack(frame.data)
        finally:
            conn.closed = True
            if conn in self._conns:
                self._conns.remove(conn)
            self._wake.set()
        return ws

    def _on_ack(self, data: str) -> None:
        try:
            envelope_id = json.loads(data).get("envelope_id")
        except (ValueError, AttributeError):
            return
        delivery = self._by_envelope.get(envelope_id)
        if delivery is not None and delivery in self._deliveries:
            self._deliveries.remove(delivery)
            self.acked_event_ids.append(delivery.event_id)

    async def _dispatch_loop(self) -> None:
        """Send queued envelopes, and re-send those that timed out or whose socket died."""
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            if self._silent_for():
                await asyncio.sleep(self._silent_for())
                continue
            deadline = float("inf")
            for d in list(self._deliveries):
                now = loop.time()
                if d.conn is not None:
                    if not d.conn.closed and now - d.sent_at < self.ack_timeout:
                        deadline = min(deadline, d.sent_at + self.ack_timeout)
                        continue
                    d.retry_reason = "connection_failed" if d.conn.closed else "timeout"
                    d.conn = None
                    if d.sends > self.max_retries:
                        self._deliveries.remove(d)
                        self.given_up_event_ids.append(d.event_id)
                        continue
                conn = next((c for c in reversed(self._conns) if not c.closed), None)
                if conn is None:
                    continue
                envelope_id = str(uuid.uuid4())
                d.envelope_ids.append(envelope_id)
                self._by_envelope[envelope_id] = d
                frame = {"envelope_id": envelope_id, "payload": d.payload, "type": "events_api",
                         "accepts_response_payload": False, "retry_attempt": d.sends, "retry_reason": d.retry_reason}
                d.conn, d.sent_at, d.sends = conn, now, d.sends + 1
                deadline = min(deadline, now + self.ack_timeout)
                try:
                    await conn.ws.send_str(json.dumps(frame))
                except (ConnectionError, RuntimeError):
                    conn.closed = True
            timeout = None if deadline == float("inf") else max(0.0, deadline - loop.time())
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    # ------------------------------------------------------------------ web api

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        self.calls[method] += 1
        self.call_log.append((time.monotonic(), method))
        return await self._with_faults(request, method, lambda: self._answer(request, method))

    def _fault_status(self, fault: Fault) -> web.Response:
        """Slack's own error answer; 429 with ``Retry-After`` and ``ratelimited``."""
        headers = {"Retry-After": str(int(fault.retry_after))} if fault.status == 429 else {}
        error = "ratelimited" if fault.status == 429 else "internal_error"
        return web.json_response({"ok": False, "error": error}, status=fault.status, headers=headers)

    async def _answer(self, request: web.Request, method: str) -> web.Response:
        faults = self._faults.get(method)
        if faults:
            status, retry_after, error = faults.pop(0)
            headers = {"Retry-After": str(retry_after)} if status == 429 else {}
            default = "ratelimited" if status == 429 else "internal_error"
            return web.json_response({"ok": False, "error": error or default}, status=status, headers=headers)
        params: Json = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                try:
                    body = await request.json()
                except ValueError:
                    return web.json_response({"ok": False, "error": "invalid_json"})
                if isinstance(body, dict):
                    params |= body
            else:
                params |= {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth.startswith("Bearer ") else params.pop("token", None)
        handler: Callable[..., Awaitable[Json]] | None = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        try:
            if method == "oauth.v2.access":
                result = await handler(params, auth)
            elif method == "apps.connections.open":
                result = await handler(params, token)
            else:
                result = await handler(params, self._identity(token))
        except SlackApiFailure as failure:
            return web.json_response({"ok": False, "error": failure.error}, status=failure.status)
        return web.json_response({"ok": True, **result})

    def _identity(self, token: str | None) -> _Identity:
        if not token:
            raise SlackApiFailure("not_authed")
        ident = self._tokens.get(token)
        if ident is None:
            raise SlackApiFailure("invalid_auth")
        if ident.expires_at is not None and time.time() >= ident.expires_at:
            raise SlackApiFailure("token_expired")
        return ident

    async def _m_auth_test(self, p: Json, me: _Identity) -> Json:
        out: Json = {"url": f"https://{me.team_name.lower().replace(' ', '')}.slack.com/", "team": me.team_name,
                     "user": self._users.get(me.user_id, {}).get("name", "bot"), "team_id": me.team_id,
                     "user_id": me.user_id, "is_enterprise_install": False}
        if me.bot_id:
            out["bot_id"] = me.bot_id
        return out

    async def _m_apps_connections_open(self, p: Json, token: str | None) -> Json:
        if not token:
            raise SlackApiFailure("not_authed")
        if not token.startswith("xapp-"):
            raise SlackApiFailure("not_allowed_token_type")
        if token not in self._app_tokens:
            raise SlackApiFailure("invalid_auth")
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        return {"url": f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}&app_id={self.app_id}"}

    async def _m_conversations_list(self, p: Json, me: _Identity) -> Json:
        kinds = set(str(p.get("types") or "public_channel").split(","))

        def kind(ch: Json) -> str:
            return "im" if ch["is_im"] else "private_channel" if ch["is_private"] else "public_channel"

        chans = [copy.deepcopy(c) for c in self._channels.values() if kind(c) in kinds]
        if p.get("cursor"):
            after = _uncursor(str(p["cursor"]))
            ids = [c["id"] for c in chans]
            chans = chans[ids.index(after):] if after in ids else []
        limit = int(p.get("limit") or 100)
        more = len(chans) > limit
        return {"channels": chans[:limit],
                "response_metadata": {"next_cursor": _cursor("team", chans[limit]["id"]) if more else ""}}

    async def _m_conversations_info(self, p: Json, me: _Identity) -> Json:
        return {"channel": copy.deepcopy(self._channel(p.get("channel")))}

    def _bounded(self, p: Json, msgs: list[Json]) -> list[Json]:
        lo = ts_key(p["oldest"]) if p.get("oldest") else None
        hi = ts_key(p["latest"]) if p.get("latest") else None
        inclusive = _truthy(p.get("inclusive", ""))

        def within(m: Json) -> bool:
            k = ts_key(m["ts"])
            return ((lo is None or k > lo or (inclusive and k == lo))
                    and (hi is None or k < hi or (inclusive and k == hi)))

        return [m for m in msgs if within(m)]

    def _paged(self, p: Json, msgs: list[Json], newest_first: bool) -> Json:
        if p.get("cursor"):
            at = ts_key(_uncursor(str(p["cursor"])) or "0")
            msgs = [m for m in msgs if (ts_key(m["ts"]) <= at if newest_first else ts_key(m["ts"]) >= at)]
        limit = int(p.get("limit") or 100)
        more = len(msgs) > limit
        out: Json = {"messages": copy.deepcopy(msgs[:limit]), "has_more": more}
        if more:
            out["response_metadata"] = {"next_cursor": _cursor("next_ts", msgs[limit]["ts"])}
        return out

    async def _m_conversations_history(self, p: Json, me: _Identity) -> Json:
        self.history_requests.append((str(p.get("channel")), p.get("cursor") or None))
        ch = self._channel(p.get("channel"))
        top = [m for m in self._messages[ch["id"]] if m.get("thread_ts") in (None, m["ts"])]
        out = self._paged(p, list(reversed(self._bounded(p, top))), newest_first=True)
        return out | {"pin_count": 0, "channel_actions_ts": None, "channel_actions_count": 0}

    async def _m_conversations_replies(self, p: Json, me: _Identity) -> Json:
        ch = self._channel(p.get("channel"))
        parent = self._find(ch["id"], str(p.get("ts", "")))
        if parent is None:
            raise SlackApiFailure("thread_not_found")
        thread = [m for m in self._messages[ch["id"]] if m is parent or m.get("thread_ts") == parent["ts"]]
        return self._paged(p, self._bounded(p, thread), newest_first=False)

    async def _m_users_info(self, p: Json, me: _Identity) -> Json:
        user = self._users.get(str(p.get("user", "")))
        if user is None:
            raise SlackApiFailure("user_not_found")
        return {"user": copy.deepcopy(user)}

    def _bot_message(self, me: _Identity, text: str, p: Json) -> Json:
        msg: Json = {"type": "message", "text": text, "user": me.user_id, "bot_id": me.bot_id,
                     "app_id": self.app_id, "team": me.team_id,
                     "bot_profile": {"id": me.bot_id, "app_id": self.app_id, "name": "fakebot",
                                     "team_id": me.team_id, "deleted": False}}
        for key in ("blocks", "attachments", "metadata"):
            if p.get(key):
                value = p[key]
                msg[key] = json.loads(value) if isinstance(value, str) else value
        return msg

    async def _m_chat_postMessage(self, p: Json, me: _Identity) -> Json:
        ch = self._channel(p.get("channel"))
        text = str(p.get("text") or "")
        if not text and not p.get("blocks") and not p.get("attachments"):
            raise SlackApiFailure("no_text")
        msg = self._store(ch["id"], self._bot_message(me, text, p), p.get("thread_ts") or None, None)
        self.sent_messages.append(copy.deepcopy(msg) | {"channel": ch["id"]})
        self._push_message_event(ch["id"], msg)
        return {"channel": ch["id"], "ts": msg["ts"], "message": copy.deepcopy(msg)}

    async def _m_chat_update(self, p: Json, me: _Identity) -> Json:
        ch = self._channel(p.get("channel"))
        msg = self._find(ch["id"], str(p.get("ts", "")))
        if msg is None:
            raise SlackApiFailure("message_not_found")
        if msg.get("bot_id") != me.bot_id:
            raise SlackApiFailure("cant_update_message")
        previous = copy.deepcopy(msg)
        event_ts = self._next_ts()
        msg |= {k: v for k, v in self._bot_message(me, str(p.get("text") or ""), p).items()
                if k in ("text", "blocks", "attachments")}
        msg["edited"] = {"user": me.user_id, "ts": event_ts}
        self._push_event({"type": "message", "subtype": "message_changed", "hidden": True,
                          "message": copy.deepcopy(msg), "previous_message": previous, "channel": ch["id"],
                          "channel_type": self._channel_type(ch["id"]), "ts": event_ts, "event_ts": event_ts})
        return {"channel": ch["id"], "ts": msg["ts"], "text": msg["text"], "message": copy.deepcopy(msg)}

    async def _m_oauth_v2_access(self, p: Json, auth_header: str) -> Json:
        client_id, client_secret = p.get("client_id"), p.get("client_secret")
        if auth_header.startswith("Basic "):
            try:
                decoded = base64.b64decode(auth_header[6:].strip(), validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                raise SlackApiFailure("invalid_client_id") from None
            client_id, _, client_secret = decoded.partition(":")
        if p.get("grant_type") == "refresh_token":
            install = self._refresh.get(str(p.get("refresh_token", "")))
            if install is None:
                raise SlackApiFailure("invalid_refresh_token")
        else:
            install = self._codes.get(str(p.get("code", "")))
            if install is None:
                raise SlackApiFailure("invalid_code")
        if client_id != install.client_id:
            raise SlackApiFailure("invalid_client_id")
        if client_secret != install.client_secret:
            raise SlackApiFailure("bad_client_secret")
        if p.get("grant_type") == "refresh_token":
            del self._refresh[str(p["refresh_token"])]  # refresh tokens are single-use here
            n = next(self._seq)
            install.access_token, install.refresh_token = f"xoxe.xoxb-1-refreshed-{n}", f"xoxe-1-refresh-{n}"
        else:
            if install.redirect_uri is not None and p.get("redirect_uri") != install.redirect_uri:
                raise SlackApiFailure("bad_redirect_uri")
            del self._codes[str(p["code"])]
        expires_at = time.time() + install.expires_in if install.expires_in else None
        self._tokens[install.access_token] = _Identity(install.team_id, install.team_name, install.bot_user_id,
                                                       install.bot_id, expires_at)
        out: Json = {"app_id": self.app_id, "authed_user": {"id": install.authed_user_id},
                     "scope": install.scope, "token_type": "bot", "access_token": install.access_token,
                     "bot_user_id": install.bot_user_id, "team": {"id": install.team_id, "name": install.team_name},
                     "enterprise": None, "is_enterprise_install": False}
        if install.refresh_token:
            self._refresh[install.refresh_token] = install
            out["refresh_token"] = install.refresh_token
        if install.expires_in:
            out["expires_in"] = install.expires_in
        return out
