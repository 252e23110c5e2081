"""A loopback Feishu / Lark open platform: REST (`/open-apis/...`), the long-connection event
websocket (`/callback/ws/endpoint` + protobuf frames) and the HTTP event callback.

Why: the hub's Feishu connector is tested with lark-oapi doing the talking (its REST client,
its protobuf `Frame`; `tests/fakes/test_feishu_fake.py` also drives lark-oapi's own
`ws.Client` against it), so what we believe Feishu sends is checked against what the SDK
expects. Runs on aiohttp inside the test's loop; all state in memory.

Wire facts modelled (open.feishu.cn docs, lark-oapi 1.7 source):
- `POST /open-apis/auth/v3/tenant_access_token/internal {app_id, app_secret}` ->
  `{code, msg, tenant_access_token, expire}`; every other call wants `Authorization: Bearer t-...`
  (bad token: code 99991663).
- `POST /callback/ws/endpoint {AppID, AppSecret}` -> `{code, data: {URL, ClientConfig}}`; the
  socket speaks `pbbp2.Frame`: method 0 = control (ping/pong, service = service_id), method 1 =
  data with headers `type, message_id, sum, seq, trace_id`; the client answers a data frame with
  the same frame whose payload is `{"code": 200}`. Unacked events are sent again (same
  `event_id`, new frame `message_id`) when a client (re)connects.
- Rate limit: HTTP 429 `{code: 99991400}` with `x-ogw-ratelimit-reset` (seconds).
- HTTP callback: `{"encrypt": b64(iv + AES-256-CBC(json))}` with key sha256(encrypt_key), and
  `X-Lark-Signature = sha256hex(timestamp + nonce + encrypt_key + body)`.

Deliberate simplifications: one tenant; the bot is in every chat; no files API (attachments are
keys in `content`, as Feishu sends them); no edit events (Feishu pushes none to bots: edits show
in history as `updated: true`).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import itertools
import json
import os
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from lark_oapi.ws.pb.pbbp2_pb2 import Frame

__all__ = ["FakeFeishu", "encrypt", "sign"]

Json = dict[str, Any]
SERVICE_ID = 33
RATE_LIMITED = 99991400
BAD_TOKEN = 99991663
NO_HISTORY = 230027  # "Lack of necessary permissions"


def encrypt(encrypt_key: str, plaintext: bytes) -> str:
    """Feishu's callback encryption: base64(iv + AES-256-CBC(PKCS7(plaintext))), key sha256(key)."""
    key = hashlib.sha256(encrypt_key.encode()).digest()
    iv = os.urandom(16)
    padder = padding.PKCS7(128).padder()
    data = padder.update(plaintext) + padder.finalize()
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + enc.update(data) + enc.finalize()).decode()


def sign(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode() + body).hexdigest()


def data_frame(payload: bytes, message_id: str, *, sum_: int = 1, seq: int = 0, type_: str = "event") -> Frame:
    frame = Frame()
    frame.SeqID, frame.LogID, frame.service, frame.method = 0, 0, SERVICE_ID, 1
    for key, value in (("type", type_), ("message_id", message_id), ("sum", str(sum_)), ("seq", str(seq)),
                       ("trace_id", uuid.uuid4().hex)):
        header = frame.headers.add()
        header.key, header.value = key, value
    frame.payload = payload
    return frame


def header(frame: Frame, key: str) -> str | None:
    return next((h.value for h in frame.headers if h.key == key), None)


@dataclass
class _Conn:
    ws: web.WebSocketResponse
    request: web.Request
    app_id: str
    closed: bool = False


@dataclass
class _Delivery:
    event_id: str
    body: Json
    sends: int = 0
    frame_ids: list[str] = field(default_factory=list)
    conn: _Conn | None = None


class FakeFeishu:
    """One Feishu tenant with self-built apps, chats, users and a message store."""

    def __init__(self, *, tenant_key: str = "tenant-fake", ping_interval: int = 120,
                 reconnect_interval: int = 1, reconnect_nonce: int = 0, fragment: bool = False) -> None:
        self.tenant_key = tenant_key
        self.client_config = {"ReconnectCount": -1, "ReconnectInterval": reconnect_interval,
                              "ReconnectNonce": reconnect_nonce, "PingInterval": ping_interval}
        self.fragment = fragment  # split each event into two frames (sum=2), as Feishu does for big ones
        self.port = 0
        self.calls: Counter[str] = Counter()
        self.sent: list[Json] = []  # what the bots sent (create or reply), in order
        self.acked_event_ids: list[str] = []
        self.ack_payloads: list[Json] = []
        self.pings = 0
        self.history_allowed = True
        self.endpoint_faults: list[tuple[int, str]] = []  # (code, msg) for the next endpoint calls
        self.refuse_handshake: tuple[str, str, str] | None = None  # (status, msg, auth errcode) headers
        self._apps: dict[str, Json] = {}  # app_id -> {secret, bot_open_id, name}
        self._tokens: dict[str, str] = {}  # tenant token -> app_id
        self._chats: dict[str, Json] = {}
        self._messages: dict[str, list[Json]] = {}  # chat_id -> items, oldest first
        self._users: dict[str, Json] = {}
        self._rate_limits: list[int] = []  # reset seconds for the next calls
        self._tickets: dict[str, str] = {}  # ws ticket -> app_id
        self._deliveries: list[_Delivery] = []
        self._acked: list[_Delivery] = []
        self._conns: list[_Conn] = []
        self._seq = itertools.count(1)
        self._clock_ms = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        """The API domain (what `lark.Client.builder().domain(...)` and LOOMI_FEISHU_BASE_URL take)."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeFeishu:
        app = web.Application()
        app.router.add_post("/open-apis/auth/v3/tenant_access_token/internal", self._tenant_token)
        app.router.add_post("/callback/ws/endpoint", self._endpoint)
        app.router.add_get("/ws", self._ws)
        app.router.add_route("*", "/open-apis/{path:.*}", self._api)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._session = aiohttp.ClientSession()
        return self

    async def stop(self) -> None:
        self.drop_connections()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        self._runner = self._session = None

    async def __aenter__(self) -> FakeFeishu:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ set-up controls

    def add_app(self, app_id: str, app_secret: str, name: str = "Loomi Bot", bot_open_id: str | None = None) -> Json:
        app = {"app_id": app_id, "secret": app_secret, "name": name, "bot_open_id": bot_open_id or f"ou_bot_{app_id}"}
        self._apps[app_id] = app
        return app

    def add_user(self, open_id: str, name: str) -> Json:
        user = {"open_id": open_id, "union_id": f"on_{open_id}", "user_id": f"u_{open_id}", "name": name}
        self._users[open_id] = user
        return user

    def add_chat(self, chat_id: str, name: str, chat_type: str = "group") -> Json:
        """`chat_type` is what message events say: `group` or `p2p`."""
        chat = {"chat_id": chat_id, "name": name, "chat_type": chat_type,
                "chat_mode": "p2p" if chat_type == "p2p" else "group", "description": "", "external": False}
        self._chats[chat_id] = chat
        self._messages.setdefault(chat_id, [])
        return chat

    def rate_limit_next(self, n: int, reset: int = 1) -> None:
        """The next `n` API calls (token calls included) answer 429 / code 99991400."""
        self._rate_limits.extend([reset] * n)

    def drop_connections(self) -> None:
        """Kill every event socket without a close frame, like a network failure."""
        for conn in list(self._conns):
            conn.closed = True
            if conn.request.transport is not None:
                conn.request.transport.abort()
        self._conns.clear()
        for d in self._deliveries:
            d.conn = None

    @property
    def connections(self) -> int:
        return len([c for c in self._conns if not c.closed])

    # ------------------------------------------------------------------ traffic controls

    def post_message(
        self,
        chat_id: str,
        sender: str,
        text: str = "",
        *,
        app_id: str | None = None,
        message_type: str = "text",
        content: Json | None = None,
        reply_to: str | None = None,
        mentions: list[str] | None = None,
        push: bool = True,
    ) -> str:
        """A person posts: stored in history and (unless `push=False`, a message only backfill
        finds) delivered as `im.message.receive_v1` to `app_id` (default: every app). `mentions`
        are open ids (users or a bot), written as `@_user_N` keys in the text."""
        chat = self._chats[chat_id]
        keys = []
        mention_list = []
        for i, open_id in enumerate(mentions or [], 1):
            key = f"@_user_{i}"
            keys.append(key)
            person = self._users.get(open_id) or next(
                ({"open_id": a["bot_open_id"], "union_id": f"on_{a['bot_open_id']}", "user_id": "", "name": a["name"]}
                 for a in self._apps.values() if a["bot_open_id"] == open_id), None)
            if person is None:
                raise KeyError(f"unknown mention {open_id}")
            mention_list.append((key, person))
        if content is None:
            content = {"text": " ".join([*keys, text]).strip()}
        now = self._now_ms()
        message_id = f"om_{uuid.uuid4().hex[:24]}"
        parent = self._find(reply_to) if reply_to else None
        root_id = (parent.get("root_id") or parent["message_id"]) if parent else None
        item = {
            "message_id": message_id, "root_id": root_id, "parent_id": reply_to, "thread_id": None,
            "msg_type": message_type, "create_time": str(now), "update_time": str(now), "deleted": False,
            "updated": False, "chat_id": chat_id,
            "sender": {"id": sender, "id_type": "open_id", "sender_type": "user", "tenant_key": self.tenant_key},
            "body": {"content": json.dumps(content, ensure_ascii=False)},
            "mentions": [{"key": k, "id": p["open_id"], "id_type": "open_id", "name": p["name"],
                          "tenant_key": self.tenant_key} for k, p in mention_list],
        }
        item = {k: v for k, v in item.items() if v is not None}
        self._messages[chat_id].append(item)
        if push:
            user = self._users.get(sender, {"open_id": sender, "union_id": "", "user_id": ""})
            message = {
                "message_id": message_id, "root_id": root_id, "parent_id": reply_to, "create_time": str(now),
                "update_time": str(now), "chat_id": chat_id, "chat_type": chat["chat_type"],
                "message_type": message_type, "content": item["body"]["content"],
                "mentions": [{"key": k, "id": {"union_id": p["union_id"], "user_id": p["user_id"],
                                                "open_id": p["open_id"]},
                              "name": p["name"], "tenant_key": self.tenant_key} for k, p in mention_list] or None,
                "user_agent": "Mozilla/5.0 fake",
            }
            event = {"sender": {"sender_id": {"union_id": user.get("union_id", ""), "user_id": user.get("user_id", ""),
                                              "open_id": sender},
                                "sender_type": "user", "tenant_key": self.tenant_key},
                     "message": {k: v for k, v in message.items() if v is not None}}
            self.push_event("im.message.receive_v1", event, app_id=app_id)
        return message_id

    def edit_message(self, message_id: str, text: str) -> None:
        """Edit in history only: Feishu pushes no edit event to bots; backfill sees `updated`."""
        item = self._find(message_id)
        if item is None:
            raise KeyError(message_id)
        item["body"]["content"] = json.dumps({"text": text}, ensure_ascii=False)
        item["updated"] = True
        item["update_time"] = str(self._now_ms())

    def recall_message(self, message_id: str, app_id: str | None = None) -> str:
        item = self._find(message_id)
        if item is None:
            raise KeyError(message_id)
        item["deleted"] = True
        item["body"]["content"] = json.dumps({"text": "This message was recalled"})
        return self.push_event("im.message.recalled_v1", {
            "message_id": message_id, "chat_id": item["chat_id"], "recall_time": str(self._now_ms()),
            "recall_type": "message_owner"}, app_id=app_id)

    def react(self, message_id: str, user: str, emoji: str, added: bool = True, app_id: str | None = None) -> str:
        kind = "im.message.reaction.created_v1" if added else "im.message.reaction.deleted_v1"
        return self.push_event(kind, {
            "message_id": message_id, "reaction_type": {"emoji_type": emoji}, "operator_type": "user",
            "user_id": {"open_id": user, "union_id": f"on_{user}", "user_id": f"u_{user}"},
            "action_time": str(self._now_ms())}, app_id=app_id)

    def rename_chat(self, chat_id: str, name: str, app_id: str | None = None) -> str:
        chat = self._chats[chat_id]
        before = chat["name"]
        chat["name"] = name
        return self.push_event("im.chat.updated_v1", {
            "chat_id": chat_id, "operator_id": {"open_id": "ou_admin"}, "external": False,
            "operator_tenant_key": self.tenant_key, "after_change": {"name": name},
            "before_change": {"name": before}}, app_id=app_id)

    def push_event(self, event_type: str, event: Json, app_id: str | None = None) -> str:
        """Queue one v2 event per app (or for `app_id` only); returns the last event_id."""
        event_id = ""
        for app in ([self._apps[app_id]] if app_id else list(self._apps.values())):
            event_id = uuid.uuid4().hex
            body = {"schema": "2.0",
                    "header": {"event_id": event_id, "token": "", "create_time": str(self._now_ms()),
                               "event_type": event_type, "tenant_key": self.tenant_key, "app_id": app["app_id"]},
                    "event": copy.deepcopy(event)}
            self._deliveries.append(_Delivery(event_id, body))
        self._kick()
        return event_id

    def redeliver(self, event_id: str) -> None:
        """Feishu re-sends an event it thinks was not received: same event_id, new frame id."""
        body = next(d.body for d in self._deliveries + self._acked if d.event_id == event_id)
        self._deliveries.append(_Delivery(event_id, copy.deepcopy(body)))
        self._kick()

    def event_body(self, event_id: str) -> Json:
        return copy.deepcopy(next(d.body for d in self._deliveries + self._acked if d.event_id == event_id))

    def history(self, chat_id: str) -> list[Json]:
        return copy.deepcopy(self._messages[chat_id])

    @property
    def pending_event_ids(self) -> list[str]:
        return [d.event_id for d in self._deliveries]

    async def deliver_http(self, url: str, event_id: str, *, encrypt_key: str | None = None,
                           verification_token: str | None = None, tamper: bool = False) -> aiohttp.ClientResponse:
        """POST an event to an HTTP callback the way Feishu does (encrypted and signed when the
        app has an encrypt key; the verification token in `header.token`)."""
        body_obj = self.event_body(event_id)
        body_obj["header"]["token"] = verification_token or ""
        return await self.post_callback(url, body_obj, encrypt_key=encrypt_key, tamper=tamper)

    async def post_callback(self, url: str, body_obj: Json, *, encrypt_key: str | None = None,
                            tamper: bool = False) -> aiohttp.ClientResponse:
        plain = json.dumps(body_obj).encode()
        body = json.dumps({"encrypt": encrypt(encrypt_key, plain)}).encode() if encrypt_key else plain
        stamp, nonce = str(int(time.time())), uuid.uuid4().hex[:16]
        headers = {"Content-Type": "application/json", "X-Lark-Request-Timestamp": stamp,
                   "X-Lark-Request-Nonce": nonce, "X-Request-Id": uuid.uuid4().hex}
        if encrypt_key:
            headers["X-Lark-Signature"] = sign(stamp, nonce, encrypt_key, body)
        if tamper:
            body = body[:-1] + b" }"
        assert self._session is not None, "start() the fake first"
        resp = await self._session.post(url, data=body, headers=headers)
        await resp.read()
        return resp

    # ------------------------------------------------------------------ internals

    def _now_ms(self) -> int:
        self._clock_ms = max(int(time.time() * 1000), self._clock_ms + 1)
        return self._clock_ms

    def _find(self, message_id: str | None) -> Json | None:
        for items in self._messages.values():
            for item in items:
                if item["message_id"] == message_id:
                    return item
        return None

    def _kick(self) -> None:
        try:
            asyncio.get_running_loop().create_task(self._dispatch())
        except RuntimeError:  # no loop (set-up before start): sent when a client connects
            pass

    async def _dispatch(self) -> None:
        """Send every delivery not yet on a live socket to the newest socket of its app."""
        for d in list(self._deliveries):
            if d.conn is not None and not d.conn.closed:
                continue
            app_id = d.body["header"]["app_id"]
            conn = next((c for c in reversed(self._conns) if not c.closed and c.app_id == app_id), None)
            if conn is None:
                continue
            d.conn, d.sends = conn, d.sends + 1
            frame_id = uuid.uuid4().hex
            d.frame_ids.append(frame_id)
            payload = json.dumps(d.body).encode()
            parts = [payload[: len(payload) // 2], payload[len(payload) // 2:]] if self.fragment else [payload]
            try:
                for seq, part in enumerate(parts):
                    frame = data_frame(part, frame_id, sum_=len(parts), seq=seq)
                    await conn.ws.send_bytes(frame.SerializeToString())
            except (ConnectionError, RuntimeError):
                conn.closed = True
                d.conn = None

    def _rate_limited(self) -> web.Response | None:
        if not self._rate_limits:
            return None
        reset = self._rate_limits.pop(0)
        return web.json_response({"code": RATE_LIMITED, "msg": "request trigger frequency limit"}, status=429,
                                 headers={"x-ogw-ratelimit-limit": "50", "x-ogw-ratelimit-reset": str(reset)})

    # ------------------------------------------------------------------ auth + websocket

    async def _tenant_token(self, request: web.Request) -> web.Response:
        self.calls["tenant_access_token"] += 1
        if (limited := self._rate_limited()) is not None:
            return limited
        body = await request.json()
        app = self._apps.get(str(body.get("app_id")))
        if app is None:
            return web.json_response({"code": 10003, "msg": "invalid param: app_id not found"})
        if body.get("app_secret") != app["secret"]:
            return web.json_response({"code": 10014, "msg": "app secret invalid"})
        token = f"t-{uuid.uuid4().hex}"
        self._tokens[token] = app["app_id"]
        return web.json_response({"code": 0, "msg": "ok", "tenant_access_token": token, "expire": 7200})

    async def _endpoint(self, request: web.Request) -> web.Response:
        self.calls["ws_endpoint"] += 1
        if self.endpoint_faults:
            code, msg = self.endpoint_faults.pop(0)
            return web.json_response({"code": code, "msg": msg})
        body = await request.json()
        app = self._apps.get(str(body.get("AppID")))
        if app is None or body.get("AppSecret") != app["secret"]:
            return web.json_response({"code": 1000040343 if app is None else 10014, "msg": "app secret invalid"})
        ticket = uuid.uuid4().hex
        self._tickets[ticket] = app["app_id"]
        url = f"ws://127.0.0.1:{self.port}/ws?device_id=dev{next(self._seq)}&service_id={SERVICE_ID}&ticket={ticket}"
        return web.json_response({"code": 0, "msg": "ok", "data": {"URL": url, "ClientConfig": self.client_config}})

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        app_id = self._tickets.pop(request.query.get("ticket", ""), None)
        if self.refuse_handshake is not None:  # Feishu answers a refused upgrade with handshake-* headers
            status, msg, auth = self.refuse_handshake
            return web.Response(status=403, headers={"handshake-status": status, "handshake-msg": msg,
                                                     "handshake-autherrcode": auth})
        if app_id is None:
            return web.Response(status=403, headers={"handshake-status": "403", "handshake-msg": "invalid ticket"})
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Conn(ws, request, app_id)
        self._conns.append(conn)
        await self._dispatch()
        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.BINARY:
                    await self._on_frame(conn, msg.data)
        finally:
            conn.closed = True
            if conn in self._conns:
                self._conns.remove(conn)
            for d in self._deliveries:
                if d.conn is conn:
                    d.conn = None
        return ws

    async def _on_frame(self, conn: _Conn, data: bytes) -> None:
        frame = Frame()
        frame.ParseFromString(data)
        if frame.method == 0 and header(frame, "type") == "ping":
            self.pings += 1
            pong = Frame()
            pong.SeqID, pong.LogID, pong.service, pong.method = 0, 0, frame.service, 0
            h = pong.headers.add()
            h.key, h.value = "type", "pong"
            pong.payload = json.dumps(self.client_config).encode()
            await conn.ws.send_bytes(pong.SerializeToString())
        elif frame.method == 1:
            frame_id = header(frame, "message_id")
            delivery = next((d for d in self._deliveries if frame_id in d.frame_ids), None)
            try:
                answer = json.loads(frame.payload)
            except ValueError:
                answer = {}
            self.ack_payloads.append(answer)
            if delivery is not None and answer.get("code") == 200:
                self._deliveries.remove(delivery)
                self._acked.append(delivery)
                self.acked_event_ids.append(delivery.event_id)

    # ------------------------------------------------------------------ REST

    async def _api(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        self.calls[f"{request.method} {path}"] += 1
        if (limited := self._rate_limited()) is not None:
            return limited
        auth = request.headers.get("Authorization", "")
        app_id = self._tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
        if app_id is None:
            return web.json_response({"code": BAD_TOKEN, "msg": "Invalid access token for authorization."},
                                     status=400)
        app = self._apps[app_id]
        parts = path.strip("/").split("/")
        if path == "bot/v3/info":
            return self._ok(bot={"activate_status": 2, "app_name": app["name"], "avatar_url": "",
                                 "ip_white_list": [], "open_id": app["bot_open_id"]}, flat=True)
        if path == "im/v1/chats" and request.method == "GET":
            return self._page(request, [copy.deepcopy(c) | {"tenant_key": self.tenant_key, "chat_status": "normal"}
                                        for c in self._chats.values()])
        if path == "im/v1/messages" and request.method == "GET":
            return self._history(request)
        if path == "im/v1/messages" and request.method == "POST":
            if request.query.get("receive_id_type") != "chat_id":
                return web.json_response({"code": 99992402, "msg": "field validation failed"}, status=400)
            body = await request.json()
            return self._bot_message(app, str(body.get("receive_id")), body, None)
        if len(parts) == 4 and parts[:3] == ["im", "v1", "chats"] and request.method == "GET":
            chat = self._chats.get(parts[3])
            return self._ok(**copy.deepcopy(chat)) if chat else self._fail(232011, "chat not found")
        if len(parts) == 4 and parts[:3] == ["im", "v1", "messages"] and request.method == "GET":
            item = self._find(parts[3])
            return self._ok(items=[copy.deepcopy(item)]) if item else self._fail(230011, "message not found")
        if len(parts) == 5 and parts[:3] == ["im", "v1", "messages"] and parts[4] == "reply":
            parent = self._find(parts[3])
            if parent is None:
                return self._fail(230011, "The message is not found.")
            return self._bot_message(app, parent["chat_id"], await request.json(), parent)
        return web.json_response({"code": 404, "msg": f"no such API {path}"}, status=404)

    def _ok(self, flat: bool = False, **data: Any) -> web.Response:
        body = {"code": 0, "msg": "success", **data} if flat else {"code": 0, "msg": "success", "data": data}
        return web.json_response(body)

    def _fail(self, code: int, msg: str, status: int = 400) -> web.Response:
        return web.json_response({"code": code, "msg": msg}, status=status)

    def _page(self, request: web.Request, items: list[Json]) -> web.Response:
        start = int(request.query.get("page_token") or 0)
        size = int(request.query.get("page_size") or 20)
        more = start + size < len(items)
        return self._ok(items=items[start:start + size], has_more=more, page_token=str(start + size) if more else "")

    def _history(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("container_id_type") != "chat" or q.get("container_id") not in self._chats:
            return self._fail(230001, "invalid container_id")
        if not self.history_allowed:
            return self._fail(NO_HISTORY, "Bot has NO availability to this chat / lack of history permission.")
        items = self._messages[q["container_id"]]
        lo = int(q["start_time"]) * 1000 if q.get("start_time") else None
        hi = int(q["end_time"]) * 1000 if q.get("end_time") else None
        items = [m for m in items if (lo is None or int(m["create_time"]) >= lo)
                 and (hi is None or int(m["create_time"]) <= hi)]
        if q.get("sort_type") == "ByCreateTimeDesc":
            items = list(reversed(items))
        return self._page(request, copy.deepcopy(items))

    def _bot_message(self, app: Json, chat_id: str, body: Json, parent: Json | None) -> web.Response:
        if chat_id not in self._chats:
            return self._fail(230001, "invalid receive_id")
        if not body.get("content") or not body.get("msg_type"):
            return self._fail(99992402, "field validation failed")
        now = str(self._now_ms())
        item = {"message_id": f"om_{uuid.uuid4().hex[:24]}", "msg_type": body["msg_type"], "create_time": now,
                "update_time": now, "deleted": False, "updated": False, "chat_id": chat_id,
                "sender": {"id": app["app_id"], "id_type": "app_id", "sender_type": "app",
                           "tenant_key": self.tenant_key},
                "body": {"content": body["content"]}}
        if parent is not None:
            item["parent_id"] = parent["message_id"]
            item["root_id"] = parent.get("root_id") or parent["message_id"]
        self._messages[chat_id].append(item)
        self.sent.append(copy.deepcopy(item))
        return self._ok(**copy.deepcopy(item))
