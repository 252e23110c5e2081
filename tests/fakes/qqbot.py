"""A loopback QQ bot platform: the app access-token endpoint, the OpenAPI (REST) and the
websocket gateway, with the semantics the hub's QQ connector relies on.

Why: QQ's bot gateway is Discord-shaped (op 10 HELLO, op 2 IDENTIFY, op 6 RESUME, op 7
RECONNECT, op 9 INVALID SESSION, op 1/11 heartbeats, op 0 dispatches with a sequence number
`s`), and a RESUME must replay every dispatch after the given `s` of that session. Testing the
connector against this fake checks resume positions, passive replies and rate limits on the
wire. Runs on aiohttp in the test's own event loop; all state is in memory.

Wire facts (QQ bot docs, v2 group/C2C API):
- `POST {token_url}` `{"appId","clientSecret"}` -> `{"access_token","expires_in":"7200"}`
  (`expires_in` is a string), or `{"code":100016,"message":"invalid appid or secret"}`.
- REST calls carry `Authorization: QQBot {access_token}`; `GET /gateway/bot` -> `{url, shards,
  session_start_limit}`; `GET /users/@me` -> the bot.
- `POST /v2/groups/{group_openid}/messages` and `/v2/users/{openid}/messages`
  `{content, msg_type: 0, msg_id, msg_seq}` -> `{id, timestamp}`. A passive reply names the
  inbound `msg_id` it answers; this fake refuses ids it never delivered in that chat (the real
  platform refuses stale or foreign ones), and a repeated (msg_id, msg_seq) as a duplicate.
- Dispatches: `GROUP_AT_MESSAGE_CREATE {id, content, timestamp, group_openid,
  author{member_openid}, attachments[]}` and `C2C_MESSAGE_CREATE {id, content, timestamp,
  author{user_openid}, attachments[]}`; each dispatch has its own event `id`.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import secrets
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from aiohttp import WSMsgType, web

__all__ = ["FakeQQ", "INTENT_GROUP_AND_C2C"]

Json = dict[str, Any]
INTENT_GROUP_AND_C2C = 1 << 25
CHINA = timezone(timedelta(hours=8))


def qq_time(ts: float | None = None) -> str:
    """QQ's timestamps: ISO 8601 with the +08:00 offset."""
    return datetime.fromtimestamp(ts or time.time(), CHINA).isoformat(timespec="seconds")


@dataclass
class _App:
    app_id: str
    secret: str
    bot_id: str
    username: str
    tokens: set[str] = field(default_factory=set)


@dataclass
class _Session:
    id: str
    app_id: str
    dispatches: list[Json] = field(default_factory=list)  # every op 0 sent in it, for RESUME
    seq: int = 0


class FakeQQ:
    def __init__(self, *, heartbeat_interval_ms: int = 30_000) -> None:
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.port = 0
        self.apps: dict[str, _App] = {}
        self.sessions: dict[str, _Session] = {}
        self.identifies = 0
        self.resumes: list[tuple[str, int]] = []  # (session_id, seq) asked for
        self.heartbeats = 0
        self.sent: list[Json] = []  # what the bot posted: {path, chat, body}
        self.delivered: dict[str, set[str]] = {}  # chat -> message ids delivered there
        self._token_apps: dict[str, str] = {}
        self._sockets: list[tuple[web.WebSocketResponse, _Session | None]] = []
        self._rate_limited = 0
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/app/getAppAccessToken"

    async def start(self) -> FakeQQ:
        app = web.Application()
        app.router.add_post("/app/getAppAccessToken", self._token)
        app.router.add_get("/gateway/bot", self._gateway_bot)
        app.router.add_get("/users/@me", self._me)
        app.router.add_post("/v2/groups/{chat}/messages", self._send)
        app.router.add_post("/v2/users/{chat}/messages", self._send)
        app.router.add_get("/websocket", self._websocket)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        for ws, _ in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> FakeQQ:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ controls

    def add_app(self, app_id: str, secret: str, bot_id: str = "bot-1", username: str = "loomi-bot") -> None:
        self.apps[app_id] = _App(app_id, secret, bot_id, username)

    async def post_group(self, app_id: str, group: str, member: str, text: str, attachments: list[Json] | None = None,
                         reply_to: str | None = None) -> str:
        """A member @-mentions the bot in `group`: a GROUP_AT_MESSAGE_CREATE dispatch."""
        return await self._post(app_id, "GROUP_AT_MESSAGE_CREATE", group, {
            "content": f" {text}", "group_openid": group, "group_id": group,
            "author": {"member_openid": member, "id": member}, "attachments": attachments or [],
            **({"message_reference": {"message_id": reply_to}} if reply_to else {})})

    async def post_c2c(self, app_id: str, user: str, text: str, attachments: list[Json] | None = None) -> str:
        """Someone writes to the bot directly: a C2C_MESSAGE_CREATE dispatch."""
        return await self._post(app_id, "C2C_MESSAGE_CREATE", user, {
            "content": text, "author": {"user_openid": user, "id": user}, "attachments": attachments or []})

    async def drop_connections(self) -> None:
        """Kill every gateway socket without a close frame (a network failure); the session
        stays resumable."""
        for ws, _ in list(self._sockets):
            transport = ws._req.transport if ws._req is not None else None  # noqa: SLF001 - no public abort
            if transport is not None:
                transport.abort()

    async def send_reconnect(self) -> None:
        """op 7: the platform asks every client to reconnect (and RESUME)."""
        for ws, _ in list(self._sockets):
            await ws.send_json({"op": 7})

    def invalidate_sessions(self) -> None:
        """Forget every session: a later RESUME gets op 9 and must IDENTIFY again."""
        self.sessions.clear()

    def rate_limit_next(self, n: int) -> None:
        """The next n sends answer HTTP 429."""
        self._rate_limited += n

    def sent_texts(self) -> list[str]:
        return [str(s["body"].get("content")) for s in self.sent]

    # ------------------------------------------------------------------ internals

    async def _post(self, app_id: str, kind: str, chat: str, data: Json) -> str:
        message_id = f"ROBOT1.0_{next(self._ids):06d}"
        self.delivered.setdefault(chat, set()).add(message_id)
        event = {"op": 0, "t": kind, "id": f"{kind}:{secrets.token_hex(6)}",
                 "d": {"id": message_id, "timestamp": qq_time(), **data}}
        await self._dispatch(app_id, event)
        return message_id

    async def _dispatch(self, app_id: str, event: Json) -> None:
        """Number the event in every live session of the app and send it where connected; a
        session without a socket keeps it for its RESUME."""
        for session in self.sessions.values():
            if session.app_id != app_id:
                continue
            session.seq += 1
            numbered = {**copy.deepcopy(event), "s": session.seq}
            session.dispatches.append(numbered)
            for ws, ws_session in list(self._sockets):
                if ws_session is session and not ws.closed:
                    try:
                        await ws.send_json(numbered)
                    except (ConnectionError, RuntimeError):
                        pass

    def _app_of(self, request: web.Request) -> _App | None:
        auth = request.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        app_id = self._token_apps.get(token) if scheme == "QQBot" else None
        return self.apps.get(app_id) if app_id else None

    @staticmethod
    def _unauthorized() -> web.Response:
        return web.json_response({"code": 11244, "message": "token not exist or expire"}, status=401)

    async def _token(self, request: web.Request) -> web.Response:
        body = await request.json()
        app = self.apps.get(str(body.get("appId")))
        if app is None or body.get("clientSecret") != app.secret:
            return web.json_response({"code": 100016, "message": "invalid appid or secret"})
        token = secrets.token_urlsafe(24)
        app.tokens.add(token)
        self._token_apps[token] = app.app_id
        return web.json_response({"access_token": token, "expires_in": "7200"})

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        if self._app_of(request) is None:
            return self._unauthorized()
        return web.json_response({"url": f"ws://127.0.0.1:{self.port}/websocket", "shards": 1,
                                  "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 86400000,
                                                          "max_concurrency": 1}})

    async def _me(self, request: web.Request) -> web.Response:
        app = self._app_of(request)
        if app is None:
            return self._unauthorized()
        return web.json_response({"id": app.bot_id, "username": app.username, "avatar": "", "union_openid": "",
                                  "union_user_account": ""})

    async def _send(self, request: web.Request) -> web.Response:
        app = self._app_of(request)
        if app is None:
            return self._unauthorized()
        if self._rate_limited:
            self._rate_limited -= 1
            return web.json_response({"code": 22009, "message": "msg limit exceed"}, status=429,
                                     headers={"Retry-After": "1"})
        chat, body = request.match_info["chat"], await request.json()
        msg_id = body.get("msg_id")
        if msg_id is not None and msg_id not in self.delivered.get(chat, set()):
            return web.json_response({"code": 40034024, "message": "msg_id is invalid"}, status=400)
        if any(s["chat"] == chat and s["body"].get("msg_id") == msg_id and msg_id is not None
               and s["body"].get("msg_seq", 1) == body.get("msg_seq", 1) for s in self.sent):
            return web.json_response({"code": 40054005, "message": "message is duplicated"}, status=400)
        self.sent.append({"path": request.path, "chat": chat, "body": body})
        return web.json_response({"id": f"SENT_{next(self._ids):06d}", "timestamp": qq_time()})

    async def _websocket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=None)
        await ws.prepare(request)
        entry: list[Any] = [ws, None]
        self._sockets.append(entry)  # type: ignore[arg-type]
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
        try:
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                op, d = frame.get("op"), frame.get("d")
                if op == 1:
                    self.heartbeats += 1
                    await ws.send_json({"op": 11})
                elif op == 2:
                    await self._identify(entry, d or {})
                elif op == 6:
                    await self._resume(entry, d or {})
        finally:
            if entry in self._sockets:
                self._sockets.remove(entry)  # type: ignore[arg-type]
        return ws

    async def _identify(self, entry: list[Any], d: Json) -> None:
        ws = entry[0]
        app_id = self._token_apps.get(str(d.get("token", "")).removeprefix("QQBot "))
        if app_id is None:
            await ws.close(code=4004, message=b"invalid token")
            return
        self.identifies += 1
        session = _Session(secrets.token_hex(8), app_id)
        self.sessions[session.id] = session
        app = self.apps[app_id]
        session.seq += 1
        ready = {"op": 0, "s": session.seq, "t": "READY", "id": "READY",
                 "d": {"version": 1, "session_id": session.id, "shard": [0, 1],
                       "user": {"id": app.bot_id, "username": app.username, "bot": True}}}
        session.dispatches.append(ready)
        entry[1] = session  # before any await: no dispatch can slip past this socket
        await ws.send_json(ready)

    async def _resume(self, entry: list[Any], d: Json) -> None:
        ws = entry[0]
        session = self.sessions.get(str(d.get("session_id")))
        token = str(d.get("token", "")).removeprefix("QQBot ")
        if session is None or self._token_apps.get(token) != session.app_id:
            await ws.send_json({"op": 9, "d": False})
            return
        sent_upto = int(d.get("seq") or 0)
        self.resumes.append((session.id, sent_upto))
        while pending := [e for e in session.dispatches if e["s"] > sent_upto]:
            for event in pending:  # in order; what arrives meanwhile is picked up next round
                await ws.send_json(event)
                sent_upto = event["s"]
        entry[1] = session  # no await since the last check: nothing dispatched is skipped
        session.seq += 1
        resumed = {"op": 0, "s": session.seq, "t": "RESUMED", "d": ""}
        session.dispatches.append(resumed)
        await ws.send_json(resumed)
