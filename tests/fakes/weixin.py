"""A loopback WeChat iLink bot API ("weixin": the personal account behind ClawBot) on 127.0.0.1.

Why: the hub's WeChat connector speaks iLink over plain HTTP + JSON (there is no official
Python SDK; the reference client is Tencent's openclaw-weixin npm plugin). This fake speaks the
same wire protocol, as read from public iLink clients, so connector tests exercise the real
long poll, the opaque `get_updates_buf` cursor, `context_token` replies, QR login and `-14`:

- every call is answered HTTP 200 with the outcome in `ret`/`errcode` (`-14` = session expired);
  requests must carry `Authorization: Bearer <bot_token>`, `AuthorizationType: ilink_bot_token`
  and `X-WECHAT-UIN` (base64 of a random u32 in decimal); POST bodies carry `base_info`.
- `POST ilink/bot/getupdates {get_updates_buf, base_info}` holds up to `poll_hold` seconds and
  answers `{ret:0, msgs:[WeixinMessage…], get_updates_buf, longpolling_timeout_ms}`; messages
  after the cursor are delivered again until a later call names a newer cursor.
- `POST ilink/bot/sendmessage {msg:{to_user_id, client_id, message_type:2, message_state:2,
  item_list, context_token}}`: accepted only with a context_token issued to that chat.
- `ilink/bot/get_bot_qrcode?bot_type=3` (GET or POST) -> `{qrcode, qrcode_img_content}`;
  `GET ilink/bot/get_qrcode_status?qrcode=` -> `wait | scaned | need_verifycode | expired |
  confirmed {bot_token, ilink_bot_id, baseurl, ilink_user_id}`.
- `POST ilink/bot/msg/notifystart` / `notifystop`: the client start/stop notices.

Choices of this fake where public clients say nothing (not verified against Tencent): a send
without a valid context_token answers `ret -2`; sendmessage answers `{}` (what clients observe)
unless `send_returns_message_id`; rate limiting is modelled as HTTP 429 + `Retry-After`
(`fail_next`); a recall arrives as the message again with `delete_time_ms` set.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import itertools
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

__all__ = ["FakeWeixin"]

Json = dict[str, Any]
EXPIRED = {"ret": -14, "errcode": -14, "errmsg": "session timeout"}
ITEM_TEXT, ITEM_IMAGE, ITEM_VOICE, ITEM_FILE, ITEM_VIDEO = 1, 2, 3, 4, 5


@dataclass
class _Bot:
    token: str
    bot_id: str  # ilink_bot_id, e.g. "3f1a…@im.bot"
    owner: str  # ilink_user_id of the person who scanned
    msgs: list[Json] = field(default_factory=list)
    expired: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    polls: list[web.Request] = field(default_factory=list)
    context_tokens: dict[str, set[str]] = field(default_factory=dict)  # chat -> tokens issued


@dataclass
class _Login:
    qrcode: str
    status: str = "wait"
    verify_code: str | None = None
    bot: _Bot | None = None
    polls: int = 0


@dataclass
class _Fault:
    status: int
    retry_after: float | None
    body: Json | None


def _cursor(seq: int) -> str:
    return base64.b64encode(f"fake-ilink:{seq}".encode()).decode()


def _seq(buf: Any) -> int:
    if not isinstance(buf, str) or not buf:
        return 0
    try:
        return int(base64.b64decode(buf).decode().split(":", 1)[1])
    except (ValueError, IndexError):
        return 0


class FakeWeixin:
    """In-memory iLink bot API behind a real HTTP server on 127.0.0.1."""

    def __init__(self, *, poll_hold: float = 35.0, send_returns_message_id: bool = False) -> None:
        self.poll_hold = poll_hold  # seconds a getupdates is held when nothing is pending
        self.send_returns_message_id = send_returns_message_id
        self.port = 0
        self.calls: Counter[str] = Counter()
        self.sent: list[Json] = []  # every accepted sendmessage `msg`, in order
        self.bad_requests: list[str] = []  # protocol violations seen (missing headers, base_info…)
        self.cursors_seen: list[str] = []  # get_updates_buf of every getupdates, in order
        self._bots: dict[str, _Bot] = {}
        self._logins: dict[str, _Login] = {}
        self._faults: dict[str, list[_Fault]] = {}
        self._seq = itertools.count(1)
        self._message_ids = itertools.count(7_000_000_000_000_000_001)  # uint64, past 2**53
        self._runner: web.AppRunner | None = None

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeWeixin:
        app = web.Application()
        app.router.add_route("*", "/ilink/bot/{endpoint:.+}", self._api)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        for bot in self._bots.values():
            bot.wake.set()
        if self._runner is not None:
            await self._runner.cleanup()
        self._runner = None

    async def __aenter__(self) -> FakeWeixin:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ controls

    def add_bot(self, token: str | None = None, bot_id: str | None = None, owner: str = "o9owner@im.wechat") -> str:
        """A logged-in bot; returns its bot_token."""
        token = token or f"{secrets.token_hex(8)}@im.bot:{secrets.token_hex(24)}"
        self._bots[token] = _Bot(token, bot_id or f"{secrets.token_hex(8)}@im.bot", owner)
        return token

    def bot_id(self, token: str) -> str:
        return self._bots[token].bot_id

    def post_message(
        self,
        token: str,
        from_user: str,
        text: str | None = None,
        *,
        items: list[Json] | None = None,
        group_id: str | None = None,
        quote: int | None = None,
        extra: Json | None = None,
    ) -> int:
        """Someone writes to the bot; returns the message_id. `items` replaces the text item;
        `quote` makes it quote an earlier message (a `ref_msg` on the first item)."""
        bot = self._bot(token)
        item_list = copy.deepcopy(items) if items is not None else [{"type": ITEM_TEXT, "text_item": {"text": text or ""}}]
        if quote is not None:
            quoted = next(m for m in bot.msgs if m["message_id"] == quote)
            item_list[0]["ref_msg"] = {"message_item": copy.deepcopy(quoted["item_list"][0]), "title": "quote", "svr_id": quote}
        chat = group_id or from_user
        context_token = secrets.token_urlsafe(24)
        bot.context_tokens.setdefault(chat, set()).add(context_token)
        now = int(time.time() * 1000)
        msg: Json = {
            "seq": 0,
            "message_id": next(self._message_ids),
            "from_user_id": from_user,
            "to_user_id": bot.bot_id,
            "client_id": "",
            "create_time_ms": now,
            "update_time_ms": now,
            "session_id": f"{from_user}#{bot.bot_id}",
            "message_type": 1,
            "message_state": 2,
            "item_list": item_list,
            "context_token": context_token,
        }
        if group_id:
            msg["group_id"] = group_id
        msg |= copy.deepcopy(extra or {})
        self._push(bot, msg)
        return int(msg["message_id"])

    def recall(self, token: str, message_id: int) -> None:
        """The sender withdraws a message (撤回): delivered again with `delete_time_ms`."""
        bot = self._bot(token)
        original = next(m for m in bot.msgs if m["message_id"] == message_id)
        msg = copy.deepcopy(original)
        msg["delete_time_ms"] = msg["update_time_ms"] = int(time.time() * 1000)
        msg["item_list"] = []
        self._push(bot, msg)

    def expire_session(self, token: str) -> None:
        """The bot's session ends (logged out on the phone): every call answers ret -14."""
        bot = self._bot(token)
        bot.expired = True
        bot.wake.set()

    def fail_next(self, endpoint: str, *, times: int = 1, status: int = 429, retry_after: float | None = 1,
                  body: Json | None = None) -> None:
        """The next `times` calls of `endpoint` (e.g. "getupdates") fail: HTTP `status` with
        `Retry-After`, or, with status 200, the given `body` (e.g. `{"ret": -1}`)."""
        self._faults.setdefault(endpoint, []).extend([_Fault(status, retry_after, body)] * times)

    def drop_connections(self) -> None:
        """Abort every hanging getupdates at the TCP level."""
        for bot in self._bots.values():
            for request in bot.polls:
                if request.transport is not None:
                    request.transport.abort()
            bot.polls.clear()

    def pending(self, token: str, cursor: str = "") -> list[Json]:
        """What a getupdates with `cursor` would return now."""
        after = _seq(cursor)
        return [copy.deepcopy(m) for m in self._bot(token).msgs if m["seq"] > after]

    def context_token(self, token: str, chat: str) -> str:
        """The newest context_token issued for `chat`."""
        return next(m["context_token"] for m in reversed(self._bot(token).msgs) if (m.get("group_id") or m["from_user_id"]) == chat)

    # QR login

    def scan(self, qrcode: str) -> None:
        self._logins[qrcode].status = "scaned"

    def need_verify_code(self, qrcode: str, code: str) -> None:
        login = self._logins[qrcode]
        login.status, login.verify_code = "need_verifycode", code

    def confirm(self, qrcode: str, owner: str = "o9owner@im.wechat") -> str:
        """The person confirms on the phone: a new bot exists; returns its bot_token."""
        login = self._logins[qrcode]
        token = self.add_bot(owner=owner)
        login.bot, login.status = self._bots[token], "confirmed"
        return token

    def expire_qrcode(self, qrcode: str) -> None:
        self._logins[qrcode].status = "expired"

    @property
    def qrcodes(self) -> list[str]:
        return list(self._logins)

    # ------------------------------------------------------------------ internals

    def _bot(self, token: str) -> _Bot:
        return self._bots[token]

    def _push(self, bot: _Bot, msg: Json) -> None:
        msg["seq"] = next(self._seq)
        bot.msgs.append(msg)
        bot.wake.set()

    def _check_headers(self, request: web.Request, endpoint: str) -> str | None:
        """The bearer token, after checking the iLink headers every authenticated call carries."""
        if request.headers.get("AuthorizationType") != "ilink_bot_token":
            self.bad_requests.append(f"{endpoint}: AuthorizationType")
        uin = request.headers.get("X-WECHAT-UIN", "")
        try:
            if not base64.b64decode(uin, validate=True).decode().isdigit():
                raise ValueError
        except ValueError:
            self.bad_requests.append(f"{endpoint}: X-WECHAT-UIN")
        auth = request.headers.get("Authorization", "")
        return auth[len("Bearer "):] if auth.startswith("Bearer ") else None

    async def _api(self, request: web.Request) -> web.StreamResponse:
        endpoint = request.match_info["endpoint"]
        self.calls[endpoint] += 1
        faults = self._faults.get(endpoint)
        if faults:
            fault = faults.pop(0)
            if fault.status != 200:
                headers = {"Retry-After": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
                return web.Response(status=fault.status, text="Too Many Requests" if fault.status == 429 else "error",
                                    headers=headers)
            return web.json_response(fault.body or {})
        body: Json = {}
        if request.method == "POST" and request.can_read_body:
            try:
                body = await request.json()
            except ValueError:
                return web.json_response({"ret": -1, "errmsg": "bad json"})
        if endpoint == "get_bot_qrcode":
            return web.json_response(self._qrcode())
        if endpoint == "get_qrcode_status":
            return web.json_response(self._qrcode_status(request.query))
        token = self._check_headers(request, endpoint)
        if request.method != "POST" or "base_info" not in body:
            self.bad_requests.append(f"{endpoint}: POST with base_info")
        bot = self._bots.get(token or "")
        if bot is None or bot.expired:
            return web.json_response(EXPIRED)
        if endpoint == "getupdates":
            return web.json_response(await self._getupdates(bot, body, request))
        if endpoint == "sendmessage":
            return web.json_response(self._sendmessage(bot, body))
        if endpoint in ("msg/notifystart", "msg/notifystop"):
            return web.json_response({"ret": 0})
        return web.json_response({"ret": -1, "errmsg": f"unknown endpoint {endpoint}"})

    def _qrcode(self) -> Json:
        qrcode = secrets.token_hex(16)
        self._logins[qrcode] = _Login(qrcode)
        return {"ret": 0, "qrcode": qrcode, "qrcode_img_content": f"https://liteapp.weixin.qq.com/q/{qrcode}?bot_type=3"}

    def _qrcode_status(self, query: Any) -> Json:
        login = self._logins.get(query.get("qrcode", ""))
        if login is None:
            return {"ret": 0, "status": "expired"}
        login.polls += 1
        if login.status == "need_verifycode" and query.get("verify_code") == login.verify_code:
            login.status = "scaned"
        if login.status != "confirmed" or login.bot is None:
            return {"ret": 0, "status": login.status}
        return {"ret": 0, "status": "confirmed", "bot_token": login.bot.token, "ilink_bot_id": login.bot.bot_id,
                "baseurl": self.base_url, "ilink_user_id": login.bot.owner}

    async def _getupdates(self, bot: _Bot, body: Json, request: web.Request) -> Json:
        buf = body.get("get_updates_buf", "")
        self.cursors_seen.append(buf)
        after = _seq(buf)
        deadline = time.monotonic() + self.poll_hold
        bot.polls.append(request)
        try:
            while True:
                if bot.expired:
                    return EXPIRED
                found = [copy.deepcopy(m) for m in bot.msgs if m["seq"] > after][:100]
                left = deadline - time.monotonic()
                if found or left <= 0:
                    break
                bot.wake.clear()
                try:
                    await asyncio.wait_for(bot.wake.wait(), left)
                except asyncio.TimeoutError:
                    pass
        finally:
            if request in bot.polls:
                bot.polls.remove(request)
        cursor = _cursor(found[-1]["seq"]) if found else (buf or _cursor(0))
        return {"ret": 0, "msgs": found, "get_updates_buf": cursor, "longpolling_timeout_ms": int(self.poll_hold * 1000)}

    def _sendmessage(self, bot: _Bot, body: Json) -> Json:
        msg = body.get("msg")
        if not isinstance(msg, dict) or not msg.get("to_user_id") or not msg.get("item_list"):
            return {"ret": -1, "errmsg": "invalid msg"}
        if msg.get("message_type") != 2 or not msg.get("client_id"):
            return {"ret": -1, "errmsg": "bot messages need message_type 2 and a client_id"}
        if msg.get("context_token") not in bot.context_tokens.get(msg["to_user_id"], set()):
            return {"ret": -2, "errmsg": "invalid context_token"}
        self.sent.append(copy.deepcopy(msg))
        if self.send_returns_message_id:
            return {"ret": 0, "message_id": next(self._message_ids)}
        return {}
