"""A loopback DingTalk: the OpenAPI calls a Stream-mode bot makes, and the Stream gateway itself.

Why: the hub's DingTalk connector is built on the official `dingtalk-stream` SDK; this fake
speaks what that SDK and DingTalk's robot OpenAPI speak, so a mismatch shows up in tests:
- `POST /v1.0/oauth2/accessToken {appKey, appSecret}` -> `{accessToken, expireIn}`;
- `POST /v1.0/gateway/connections/open {clientId, clientSecret, subscriptions, ua, localIp}` ->
  `{endpoint: "ws://…/connect", ticket}`; the websocket at `endpoint?ticket=` (tickets are
  single-use) carries JSON frames `{specVersion, type: SYSTEM|EVENT|CALLBACK, headers:
  {messageId, topic, …}, data: "<json string>"}` and the client's acks `{code, headers:
  {messageId}, message, data}`. A CALLBACK stays pending until acked with code 200 and is
  pushed again on the app's next connection (DingTalk's redelivery);
- SYSTEM `ping` (answered with the same `opaque`) and `disconnect` (the server stops pushing
  to that connection and closes it after `disconnect_grace` seconds);
- chatbot messages on topic `/v1.0/im/bot/messages/get` with a `sessionWebhook`
  (`POST /robot/sendBySession?session=…` -> `{errcode, errmsg}`);
- the robot API: `POST /v1.0/robot/oToMessages/batchSend` and `/v1.0/robot/groupMessages/send`
  with `x-acs-dingtalk-access-token` -> `{processQueryKey, …}`;
- errors as DingTalk writes them: HTTP 4xx with `{code, message, requestid}`, and throttling
  as HTTP 429 `{code: "Throttling.Api", …}`.

The server runs in its own thread with its own event loop because the SDK makes blocking
`requests` calls (`open_connection`, `get_access_token`) from inside its event loop: a fake
in the same loop would never answer. Test controls are plain methods, safe from any thread.

Deliberate simplifications: one organisation; the bot gets every DM and the group messages it
is @-mentioned in (as DingTalk sends them); no media upload/download; DingTalk has no
message history API for bots, so there is no history to page through.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import hmac
import itertools
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import aiohttp
from aiohttp import web

__all__ = ["FakeDingTalk", "sign", "BOT_TOPIC"]

Json = dict[str, Any]
T = TypeVar("T")

BOT_TOPIC = "/v1.0/im/bot/messages/get"
TOKEN_TTL = 7200  # s, as DingTalk issues them


def sign(app_secret: str, timestamp: str) -> str:
    """DingTalk's HTTP-mode robot callback signature: base64(HMAC-SHA256(secret, ts + "\\n" + secret))."""
    digest = hmac.new(app_secret.encode(), f"{timestamp}\n{app_secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _now_ms() -> int:
    return int(time.time() * 1000)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


@dataclass
class _App:
    client_id: str
    client_secret: str
    corp_id: str
    bot_user_id: str
    tokens: dict[str, float] = field(default_factory=dict)  # access token -> expiry (epoch s)
    pending: dict[str, Json] = field(default_factory=dict)  # messageId -> CALLBACK frame not yet acked, in order
    conns: list["_Conn"] = field(default_factory=list)


@dataclass
class _Conn:
    app: _App
    ws: web.WebSocketResponse
    subscriptions: list[Json]
    draining: bool = False  # got `disconnect`: no more pushes


@dataclass
class _Session:
    app: _App
    chat_id: str  # what the hub calls this chat: "user:{staffId}" or "group:{conversationId}"
    expires_ms: int


class FakeDingTalk:
    """In-memory DingTalk behind a real HTTP + WebSocket server on 127.0.0.1, in its own thread."""

    def __init__(self, *, disconnect_grace: float = 10.0, session_ttl_ms: int = 90 * 60 * 1000) -> None:
        self.disconnect_grace, self.session_ttl_ms = disconnect_grace, session_ttl_ms
        self.port = 0
        self._lock = threading.Lock()
        self._apps: dict[str, _App] = {}
        self._tickets: dict[str, tuple[_App, list[Json]]] = {}
        self._sessions: dict[str, _Session] = {}
        self._faults: list[tuple[str | None, int, str, float | None]] = []
        self._ids = itertools.count(1)
        # What tests read: copies under the lock
        self._sent: list[Json] = []
        self._acks: list[Json] = []
        self._pongs: list[str] = []
        self._calls: list[str] = []
        self._open_bodies: list[Json] = []
        self._delivered: list[Json] = []  # every CALLBACK frame ever made (for redeliver/quotes)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._start_error: BaseException | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeDingTalk:
        self._thread = threading.Thread(target=self._run, name="fake-dingtalk", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._start_error is not None:
            raise RuntimeError(f"fake DingTalk did not start: {self._start_error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)
        self._thread = self._loop = None

    async def __aenter__(self) -> FakeDingTalk:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as err:  # surfaced by start()
            self._start_error = err
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stopped = asyncio.Event()
        app = web.Application()
        app.router.add_post("/v1.0/oauth2/accessToken", self._h_token)
        app.router.add_post("/v1.0/gateway/connections/open", self._h_open)
        app.router.add_get("/connect", self._h_ws)
        app.router.add_post("/v1.0/robot/oToMessages/batchSend", self._h_batch_send)
        app.router.add_post("/v1.0/robot/groupMessages/send", self._h_group_send)
        app.router.add_post("/robot/sendBySession", self._h_session_send)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = self._runner.addresses[0][1]
        self._ready.set()
        await self._stopped.wait()
        for app_ in list(self._apps.values()):
            for conn in list(app_.conns):
                await conn.ws.close()
        await self._runner.cleanup()

    def _call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the fake's loop (state is only touched there) and return its result."""
        assert self._loop is not None, "fake not started"

        async def run() -> T:
            result = fn()
            if asyncio.iscoroutine(result):
                return await result  # type: ignore[no-any-return]
            return result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)

    # ------------------------------------------------------------------ controls

    def add_app(self, client_id: str, client_secret: str, *, corp_id: str = "dingcorp0001") -> None:
        bot = f"$:LWCP_v1:$bot{len(self._apps) + 1}"
        self._call(lambda: self._apps.__setitem__(client_id, _App(client_id, client_secret, corp_id, bot)))

    def post_message(
        self,
        client_id: str,
        text: str | None = "hello",
        *,
        sender: tuple[str, str] = ("staff-alice", "Alice"),  # (staffId, nick)
        group: str | None = None,  # a conversationId: a group chat; None: a DM with the sender
        title: str = "Team chat",
        at: list[str] | None = None,  # staff ids @-mentioned (the bot is always @-ed in groups)
        msgtype: str = "text",
        content: Json | None = None,  # for picture/file/richText/audio/video
        reply_to: str | None = None,  # msgId of a quoted message
        msg_id: str | None = None,
    ) -> str:
        """Someone writes to the bot; returns the msgId. Queued while no connection is open."""
        return self._call(lambda: self._post(client_id, text, sender, group, title, at, msgtype, content,
                                             reply_to, msg_id))

    def push_frame(self, client_id: str, frame: Json) -> None:
        """Push any frame as is (an EVENT, an unknown topic, a malformed payload…)."""
        self._call(lambda: self._push_all(self._apps[client_id], frame))

    def redeliver(self, client_id: str, msg_id: str) -> None:
        """DingTalk pushes an already-acked message again (same msgId, new messageId): a duplicate."""
        def run() -> None:
            app = self._apps[client_id]
            frame = next(f for f in self._delivered if json.loads(f["data"])["msgId"] == msg_id)
            again = copy.deepcopy(frame)
            again["headers"]["messageId"] = self._message_id()
            app.pending[again["headers"]["messageId"]] = again
            self._push_all(app, again)
        self._call(run)

    def ping(self, client_id: str) -> str:
        """A SYSTEM ping; the answer's `opaque` lands in `pongs`."""
        opaque = secrets.token_hex(8)
        frame = self._system("ping", {"opaque": opaque})
        self._call(lambda: self._push_all(self._apps[client_id], frame))
        return opaque

    def disconnect(self, client_id: str) -> None:
        """A SYSTEM disconnect: stop pushing to the open connections, close them after the grace."""
        def run() -> None:
            for conn in list(self._apps[client_id].conns):
                conn.draining = True
                asyncio.ensure_future(self._send(conn, self._system("disconnect", {"reason": "server restart"})))
                asyncio.get_running_loop().call_later(self.disconnect_grace,
                                                      lambda c=conn: asyncio.ensure_future(c.ws.close()))
        self._call(run)

    def drop_connections(self, client_id: str | None = None) -> int:
        """Kill every open websocket at the TCP level (no close frame); returns how many."""
        def run() -> int:
            n = 0
            for app in self._apps.values():
                if client_id is not None and app.client_id != client_id:
                    continue
                for conn in list(app.conns):
                    transport = conn.ws._req.transport if conn.ws._req is not None else None  # noqa: SLF001
                    if transport is not None:
                        transport.abort()
                    app.conns.remove(conn)
                    n += 1
            return n
        return self._call(run)

    def rate_limit_next(self, n: int = 1, *, path: str | None = None, retry_after: float | None = None) -> None:
        """The next n OpenAPI calls (to `path`, or any) answer 429 Throttling; `retry_after`
        adds a Retry-After header (DingTalk itself usually sends none)."""
        self._call(lambda: self._faults.extend([(path, 429, "Throttling.Api", retry_after)] * n))

    def fail_next(self, path: str, status: int, code: str) -> None:
        self._call(lambda: self._faults.append((path, status, code, None)))

    def expire_sessions(self) -> None:
        """Every sessionWebhook handed out so far stops working (as after ~90 minutes)."""
        self._call(lambda: [setattr(s, "expires_ms", 0) for s in self._sessions.values()])

    def rotate_secret(self, client_id: str, new_secret: str) -> None:
        """The admin resets the app's secret: the old one stops working, open sockets stay up
        (as on DingTalk) until they drop."""
        def run() -> None:
            self._apps[client_id].client_secret = new_secret
            self._apps[client_id].tokens.clear()
        self._call(run)

    def revoke_tokens(self, client_id: str) -> None:
        self._call(lambda: self._apps[client_id].tokens.clear())

    def connections(self, client_id: str) -> int:
        return self._call(lambda: len(self._apps[client_id].conns))

    def pending(self, client_id: str) -> list[str]:
        return self._call(lambda: [json.loads(f["data"])["msgId"] for f in self._apps[client_id].pending.values()])

    @property
    def sent(self) -> list[Json]:
        """Everything the bot sent: `{via: session|oto|group, chat_id, msgKey, text, body}`."""
        with self._lock:
            return copy.deepcopy(self._sent)

    @property
    def acks(self) -> list[Json]:
        """Acks of CALLBACK/EVENT frames: `{messageId, msgId, code}` in arrival order."""
        with self._lock:
            return copy.deepcopy(self._acks)

    @property
    def ack_count(self) -> int:
        with self._lock:
            return len(self._acks)

    @property
    def acked_msg_ids(self) -> list[str]:
        return [a["msgId"] for a in self.acks if a["code"] == 200 and a["msgId"]]

    @property
    def pongs(self) -> list[str]:
        with self._lock:
            return list(self._pongs)

    @property
    def calls(self) -> list[str]:
        with self._lock:
            return list(self._calls)

    @property
    def open_requests(self) -> list[Json]:
        with self._lock:
            return copy.deepcopy(self._open_bodies)

    # ------------------------------------------------------------------ internals (fake loop only)

    def _message_id(self) -> str:
        return f"{uuid.uuid4().hex[:8]}-{next(self._ids)}"

    def _system(self, topic: str, data: Json) -> Json:
        return {"specVersion": "1.0", "type": "SYSTEM",
                "headers": {"contentType": "application/json", "messageId": self._message_id(),
                            "time": str(_now_ms()), "topic": topic},
                "data": json.dumps(data)}

    def _post(self, client_id: str, text: str | None, sender: tuple[str, str], group: str | None, title: str,
              at: list[str] | None, msgtype: str, content: Json | None, reply_to: str | None,
              msg_id: str | None) -> str:
        app = self._apps[client_id]
        staff_id, nick = sender
        now = _now_ms()
        msg_id = msg_id or f"msg{uuid.uuid4().hex[:20]}"
        conversation_id = group or f"cid{hashlib.sha1(f'{client_id}:{staff_id}'.encode()).hexdigest()[:22]}"
        chat_id = f"group:{conversation_id}" if group else f"user:{staff_id}"
        session = secrets.token_urlsafe(16)
        self._sessions[session] = _Session(app, chat_id, now + self.session_ttl_ms)
        data: Json = {
            "conversationId": conversation_id, "chatbotCorpId": app.corp_id, "chatbotUserId": app.bot_user_id,
            "msgId": msg_id, "senderNick": nick, "isAdmin": False, "senderStaffId": staff_id,
            "sessionWebhookExpiredTime": now + self.session_ttl_ms, "createAt": now,
            "senderCorpId": app.corp_id, "conversationType": "2" if group else "1",
            "senderId": f"$:LWCP_v1:${staff_id}", "robotCode": app.client_id,
            "sessionWebhook": f"{self.base_url}/robot/sendBySession?session={session}", "msgtype": msgtype,
        }
        if group:
            data |= {"conversationTitle": title, "isInAtList": True,
                     "atUsers": [{"dingtalkId": app.bot_user_id}] + [
                         {"dingtalkId": f"$:LWCP_v1:${s}", "staffId": s} for s in (at or [])]}
        if msgtype == "text":
            data["text"] = {"content": text or ""}
            if reply_to:
                quoted = next((json.loads(f["data"]) for f in self._delivered
                               if json.loads(f["data"])["msgId"] == reply_to), None)
                data["text"] |= {"isReplyMsg": True, "repliedMsg": {
                    "msgId": reply_to, "msgType": "text", "senderId": (quoted or {}).get("senderId", ""),
                    "createdAt": (quoted or {}).get("createAt", now),
                    "content": {"text": ((quoted or {}).get("text") or {}).get("content", "")}}}
        else:
            data["content"] = copy.deepcopy(content or {})
        frame = {"specVersion": "1.0", "type": "CALLBACK",
                 "headers": {"appId": app.client_id, "connectionId": "", "contentType": "application/json",
                             "messageId": self._message_id(), "time": str(now), "topic": BOT_TOPIC},
                 "data": json.dumps(data, ensure_ascii=False)}
        self._delivered.append(frame)
        app.pending[frame["headers"]["messageId"]] = frame
        self._push_all(app, frame)
        return msg_id

    def _live(self, app: _App) -> _Conn | None:
        live = [c for c in app.conns if not c.draining and not c.ws.closed]
        return live[-1] if live else None  # DingTalk picks one connection per app

    def _push_all(self, app: _App, frame: Json) -> None:
        conn = self._live(app)
        if conn is not None and (frame["type"] != "CALLBACK" or self._subscribed(conn, frame)):
            asyncio.ensure_future(self._send(conn, frame))

    @staticmethod
    def _subscribed(conn: _Conn, frame: Json) -> bool:
        topic = frame["headers"].get("topic")
        return any(s.get("type") == "CALLBACK" and s.get("topic") == topic for s in conn.subscriptions)

    async def _send(self, conn: _Conn, frame: Json) -> None:
        try:
            await conn.ws.send_str(json.dumps(frame, ensure_ascii=False))
        except (ConnectionError, RuntimeError):
            pass  # gone: the frame stays pending and goes out on the next connection

    def _fault(self, path: str) -> None:
        for i, (where, status, code, retry_after) in enumerate(self._faults):
            if where is None or where == path:
                del self._faults[i]
                headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
                raise ApiError(status, code, "请求被限流 (throttled)" if status == 429 else code, headers)

    def _record_call(self, name: str) -> None:
        with self._lock:
            self._calls.append(name)

    @staticmethod
    def _error(err: ApiError) -> web.Response:
        body = {"code": err.code, "message": err.message, "requestid": uuid.uuid4().hex.upper()}
        return web.json_response(body, status=err.status, headers=err.headers)

    async def _json(self, request: web.Request) -> Json:
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "MissingBody", "body is mandatory for this action.") from None
        if not isinstance(body, dict):
            raise ApiError(400, "InvalidParameter", "body must be a JSON object")
        return body

    def _app_for_token(self, request: web.Request) -> _App:
        token = request.headers.get("x-acs-dingtalk-access-token", "")
        now = time.time()
        for app in self._apps.values():
            if app.tokens.get(token, 0) > now:
                return app
        raise ApiError(401, "InvalidAuthentication", "不合法的access_token")

    # ------------------------------------------------------------------ handlers

    async def _h_token(self, request: web.Request) -> web.Response:
        self._record_call("accessToken")
        try:
            self._fault(request.path)
            body = await self._json(request)
            app = self._apps.get(str(body.get("appKey") or ""))
            if app is None:
                raise ApiError(400, "invalidClientId", "无效的clientId (invalid clientId)")
            if not hmac.compare_digest(str(body.get("appSecret") or ""), app.client_secret):
                raise ApiError(400, "invalidClientSecret", "无效的clientSecret (invalid clientSecret)")
        except ApiError as err:
            return self._error(err)
        token = secrets.token_hex(16)
        app.tokens[token] = time.time() + TOKEN_TTL
        return web.json_response({"accessToken": token, "expireIn": TOKEN_TTL})

    async def _h_open(self, request: web.Request) -> web.Response:
        self._record_call("connections/open")
        try:
            self._fault(request.path)
            body = await self._json(request)
            with self._lock:
                self._open_bodies.append({k: v for k, v in body.items() if k != "clientSecret"})
            app = self._apps.get(str(body.get("clientId") or ""))
            if app is None or not hmac.compare_digest(str(body.get("clientSecret") or ""), app.client_secret):
                raise ApiError(401, "Unauthorized", "clientId or clientSecret is invalid")
            subs = body.get("subscriptions")
            if not isinstance(subs, list) or not subs:
                raise ApiError(400, "InvalidParameter", "subscriptions is required")
        except ApiError as err:
            return self._error(err)
        ticket = uuid.uuid4().hex
        self._tickets[ticket] = (app, subs)
        return web.json_response({"endpoint": f"ws://127.0.0.1:{self.port}/connect", "ticket": ticket})

    async def _h_ws(self, request: web.Request) -> web.StreamResponse:
        found = self._tickets.pop(request.query.get("ticket", ""), None)
        if found is None:
            return web.json_response({"code": "InvalidTicket", "message": "ticket is invalid or used"}, status=401)
        app, subs = found
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Conn(app, ws, subs)
        app.conns.append(conn)
        for frame in list(app.pending.values()):  # unacked messages again, oldest first
            if self._subscribed(conn, frame):
                await self._send(conn, frame)
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    self._on_ack(app, msg.data)
        finally:
            if conn in app.conns:
                app.conns.remove(conn)
        return ws

    def _on_ack(self, app: _App, raw: str) -> None:
        try:
            ack = json.loads(raw)
            message_id = ack["headers"]["messageId"]
        except (ValueError, KeyError, TypeError):
            return  # DingTalk ignores what it cannot read
        frame = app.pending.get(message_id)
        if frame is None:  # a SYSTEM answer (ping) or an ack for something already acked
            try:
                opaque = json.loads(ack.get("data") or "{}").get("opaque")
            except (ValueError, AttributeError):
                opaque = None
            if opaque:
                with self._lock:
                    self._pongs.append(opaque)
            return
        code = ack.get("code")
        msg_id = json.loads(frame["data"]).get("msgId") if frame["type"] == "CALLBACK" else None
        with self._lock:
            self._acks.append({"messageId": message_id, "msgId": msg_id, "code": code})
        if code == 200:
            del app.pending[message_id]

    async def _h_batch_send(self, request: web.Request) -> web.Response:
        return await self._robot_send(request, "oto")

    async def _h_group_send(self, request: web.Request) -> web.Response:
        return await self._robot_send(request, "group")

    async def _robot_send(self, request: web.Request, via: str) -> web.Response:
        self._record_call(via)
        try:
            self._fault(request.path)
            app = self._app_for_token(request)
            body = await self._json(request)
            if body.get("robotCode") != app.client_id:
                raise ApiError(400, "robot.notExist", "robot 不存在 (unknown robotCode)")
            key, param = body.get("msgKey"), body.get("msgParam")
            if not isinstance(key, str) or not isinstance(param, str):
                raise ApiError(400, "InvalidParameter", "msgKey and msgParam are required")
            try:
                params = json.loads(param)
            except ValueError:
                raise ApiError(400, "InvalidParameter.msgParam", "msgParam is not JSON") from None
            if via == "oto":
                users = body.get("userIds")
                if not isinstance(users, list) or not users:
                    raise ApiError(400, "InvalidParameter", "userIds is required")
                chats = [f"user:{u}" for u in users]
            else:
                cid = body.get("openConversationId")
                if not isinstance(cid, str) or not cid:
                    raise ApiError(400, "InvalidParameter", "openConversationId is required")
                chats = [f"group:{cid}"]
        except ApiError as err:
            return self._error(err)
        key_ = uuid.uuid4().hex
        with self._lock:
            for chat in chats:
                self._sent.append({"via": via, "chat_id": chat, "msgKey": key, "text": params.get("content"),
                                   "processQueryKey": key_, "body": body})
        if via == "oto":
            return web.json_response({"processQueryKey": key_, "invalidStaffIdList": [],
                                      "flowControlledStaffIdList": []})
        return web.json_response({"processQueryKey": key_})

    async def _h_session_send(self, request: web.Request) -> web.Response:
        self._record_call("session")
        try:
            self._fault(request.path)
        except ApiError:  # a session webhook's flow control answers HTTP 200 with an errcode
            return web.json_response({"errcode": 130101, "errmsg": "send too fast, exceed 20 times per minute"})
        session = self._sessions.get(request.query.get("session", ""))
        if session is None or session.expires_ms < _now_ms():
            return web.json_response({"errcode": 300001, "errmsg": "session不存在或已过期"})
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"errcode": 40035, "errmsg": "缺少参数 json"})
        if body.get("msgtype") == "text":
            text = (body.get("text") or {}).get("content")
        elif body.get("msgtype") == "markdown":
            text = (body.get("markdown") or {}).get("text")
        else:
            return web.json_response({"errcode": 40035, "errmsg": "不支持的消息类型"})
        with self._lock:
            self._sent.append({"via": "session", "chat_id": session.chat_id, "msgKey": body.get("msgtype"),
                               "text": text, "body": body})
        return web.json_response({"errcode": 0, "errmsg": "ok"})
