"""A loopback Telegram Bot API server with real long-poll and webhook semantics.

Why: the hub's Telegram connector is driven by python-telegram-bot; testing it against this
fake (instead of mocking PTB) checks that offsets, long-poll timeouts, 409 conflicts, 429
``retry_after`` and webhook secrets behave the way the real SDK expects. Runs on aiohttp in the
test's own event loop; all state is in memory.

Point PTB at it with ``ApplicationBuilder().token(T).base_url(f"{fake.base_url}/bot")
.base_file_url(f"{fake.base_url}/file/bot")``; PTB then POSTs ``/bot{token}/{method}``.

Deliberate simplifications: webhooks may be plain ``http://`` on any port, one webhook
request at a time per bot, no file uploads, and entities are only auto-detected for
``/commands`` and ``@mentions``.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Awaitable, Callable, Sequence

import aiohttp
from aiohttp import web

from tests.fakes.faults import Fault, FaultInjection, Faults

__all__ = ["FakeTelegram", "WebhookDelivery"]

Json = dict[str, Any]

#: What Telegram sends when ``allowed_updates`` is unset or empty.
DEFAULT_EXCLUDED = {"chat_member", "message_reaction", "message_reaction_count"}


class BotApiError(Exception):
    """Raised in a handler to answer ``{"ok": false, "error_code", "description"}``."""

    def __init__(self, code: int, description: str, parameters: Json | None = None) -> None:
        super().__init__(description)
        self.code, self.description, self.parameters = code, description, parameters


def _bad(description: str) -> BotApiError:
    return BotApiError(400, f"Bad Request: {description}")


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def detect_entities(text: str) -> list[Json]:
    """``bot_command``/``mention`` entities, offsets in UTF-16 units like Telegram's parser."""
    found = []
    for kind, pattern in (("bot_command", r"(?<!\S)/[A-Za-z0-9_]{1,32}(?:@[A-Za-z0-9_]{5,32})?"),
                          ("mention", r"(?<![\w/])@[A-Za-z0-9_]{5,32}")):
        for m in re.finditer(pattern, text):
            found.append({"type": kind, "offset": _utf16_len(text[: m.start()]), "length": _utf16_len(m.group())})
    return sorted(found, key=lambda e: e["offset"])


@dataclass
class WebhookDelivery:
    """One webhook POST attempt, kept so tests can assert on retries."""

    token: str
    update_id: int
    status: int | None
    error: str | None


@dataclass
class _Poll:
    request: web.Request
    outcome: asyncio.Future[str]


@dataclass
class _Bot:
    token: str
    user: Json
    updates: list[Json] = field(default_factory=list)
    next_update_id: int = 100_000_001
    last_confirmed: Json | None = None
    redeliver: bool = False
    allowed_updates: list[str] | None = None
    poll: _Poll | None = None
    webhook_url: str | None = None
    secret_token: str | None = None
    webhook_task: asyncio.Task[None] | None = None
    webhook_wake: asyncio.Event = field(default_factory=asyncio.Event)
    last_error_date: int | None = None
    last_error_message: str | None = None

    def allows(self, kind: str) -> bool:
        if not self.allowed_updates:
            return kind not in DEFAULT_EXCLUDED
        return kind in self.allowed_updates


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise _bad(f"invalid integer value {value!r}") from None


def _json(value: Any) -> Any:
    """Form bodies carry non-string values JSON-encoded; JSON bodies carry them natively."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise _bad(f"can't parse JSON value {value!r}") from None
    return value


class FakeTelegram(FaultInjection):
    """In-memory Telegram Bot API behind a real HTTP server on 127.0.0.1.

    Faults beyond ``fail_next``/``drop_connections`` (tests/fakes/faults.py): ``fail_for``
    (429/500 for a while), ``stall``/``stall_for`` (no answer), ``drop_next`` (an answer cut
    off halfway), ``garbage_next`` (200 with a body that is not the Bot API's)."""

    def __init__(
        self,
        *,
        webhook_retry_delays: Sequence[float] = (0.05, 0.1, 0.2, 0.5, 1.0),
        webhook_timeout: float = 5.0,
    ) -> None:
        self.webhook_retry_delays, self.webhook_timeout = tuple(webhook_retry_delays), webhook_timeout
        self.port = 0
        self.calls: Counter[str] = Counter()
        #: Every Message a bot sent with sendMessage, in order.
        self.sent_messages: list[Json] = []
        self.webhook_deliveries: list[WebhookDelivery] = []
        self._bots: dict[str, _Bot] = {}
        self._chats: dict[int, Json] = {}
        self._messages: dict[tuple[int, int], Json] = {}
        self._next_message_id: dict[int, itertools.count[int]] = {}
        self._files: dict[str, tuple[str, bytes]] = {}
        self._faults: dict[str, list[tuple[int, int, str | None]]] = {}
        self.faults = Faults()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        #: lower-case method -> canonical name (Telegram method names are case-insensitive).
        self._methods = {name.lower(): name for name in (
            "getMe", "getUpdates", "deleteWebhook", "setWebhook", "getWebhookInfo",
            "sendMessage", "editMessageText", "getChat", "getFile")}

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeTelegram:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self._session = aiohttp.ClientSession()
        return self

    async def stop(self) -> None:
        tasks = [b.webhook_task for b in self._bots.values() if b.webhook_task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for bot in self._bots.values():
            self._end_poll(bot, "timeout")
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()
        self._runner = self._session = None

    async def __aenter__(self) -> FakeTelegram:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ controls

    def add_bot(self, token: str, id: int, username: str, first_name: str | None = None) -> Json:
        user = {"id": id, "is_bot": True, "first_name": first_name or username, "username": username,
                "can_join_groups": True, "can_read_all_group_messages": False, "supports_inline_queries": False,
                "can_connect_to_business": False, "has_main_web_app": False}
        self._bots[token] = _Bot(token, user)
        return user

    def add_chat(
        self, id: int, type: str, title: str | None = None, *, username: str | None = None,
        first_name: str | None = None, is_forum: bool = False,
    ) -> Json:
        chat: Json = {"id": id, "type": type}
        for key, value in (("title", title), ("username", username), ("first_name", first_name)):
            if value is not None:
                chat[key] = value
        if is_forum:
            chat["is_forum"] = True
        self._chats[id] = chat
        return chat

    def add_file(self, file_id: str, content: bytes, file_path: str | None = None) -> str:
        """Make ``getFile(file_id)`` work and serve ``content`` under /file/bot<token>/<path>."""
        path = file_path or f"documents/{file_id}.bin"
        self._files[file_id] = (path, content)
        return path

    def fail_next(
        self, method: str, status: int = 429, retry_after: int = 1, times: int = 1, description: str | None = None
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail; 429 carries ``retry_after`` exactly
        like Telegram's flood control (PTB raises ``RetryAfter``)."""
        self._faults.setdefault(method.lower(), []).extend([(status, retry_after, description)] * times)

    def drop_connections(self) -> None:
        """Abort every hanging getUpdates request at the TCP level (PTB sees a NetworkError)."""
        for bot in self._bots.values():
            if bot.poll is not None and bot.poll.request.transport is not None:
                bot.poll.request.transport.abort()
            self._end_poll(bot, "dropped")

    def post_message(
        self,
        token: str,
        chat_id: int,
        from_user: Json | None,
        text: str | None,
        reply_to_message_id: int | None = None,
        message_thread_id: int | None = None,
        entities: list[Json] | None = None,
        *,
        extra: Json | None = None,
    ) -> int:
        """Someone writes in ``chat_id``; bot ``token`` gets a ``message`` (``channel_post`` in
        channels) update. ``extra`` merges more Message fields (``photo``, ``caption`` ...)."""
        bot = self._bot(token, control=True)
        chat = self._chats.get(chat_id)
        if chat is None:
            kind = "private" if chat_id > 0 else "group"
            chat = self.add_chat(chat_id, kind, first_name=(from_user or {}).get("first_name"))
        sender = None if from_user is None else {"is_bot": False} | from_user
        msg = self._new_message(chat, sender, text, reply_to_message_id, message_thread_id)
        if text is not None:
            ents = detect_entities(text) if entities is None else entities
            if ents:
                msg["entities"] = copy.deepcopy(ents)
        if chat["type"] == "channel":
            msg["sender_chat"] = copy.deepcopy(chat)
        msg |= copy.deepcopy(extra or {})
        self._push(bot, "channel_post" if chat["type"] == "channel" else "message", msg)
        return int(msg["message_id"])

    def edit_message(self, token: str, chat_id: int, message_id: int, text: str) -> None:
        """The author edits a message: bot ``token`` gets an ``edited_message`` update."""
        bot = self._bot(token, control=True)
        msg = self._messages.get((chat_id, message_id))
        if msg is None:
            raise KeyError(f"no message {message_id} in chat {chat_id}")
        msg["text"], msg["edit_date"] = text, int(time.time())
        if "entities" in msg or detect_entities(text):
            msg["entities"] = detect_entities(text)
        kind = "edited_channel_post" if msg["chat"]["type"] == "channel" else "edited_message"
        self._push(bot, kind, msg)

    def push_update(self, token: str, kind: str, obj: Json) -> int:
        """Queue any other update type (``callback_query``, ``my_chat_member`` ...)."""
        return self._push(self._bot(token, control=True), kind, obj)

    def redeliver_next(self, token: str) -> None:
        """Next getUpdates (or webhook POST) repeats the last confirmed update: a duplicate."""
        bot = self._bot(token, control=True)
        bot.redeliver = True
        self._wake(bot)

    def pending_updates(self, token: str) -> list[Json]:
        return copy.deepcopy(self._bot(token, control=True).updates)

    def message(self, chat_id: int, message_id: int) -> Json:
        return copy.deepcopy(self._messages[(chat_id, message_id)])

    # ------------------------------------------------------------------ internals

    def _bot(self, token: str, control: bool = False) -> _Bot:
        bot = self._bots.get(token)
        if bot is None:
            if control:
                raise KeyError(f"unknown bot token {token!r}; add_bot() it first")
            raise BotApiError(401, "Unauthorized")
        return bot

    def _new_message(
        self, chat: Json, sender: Json | None, text: str | None, reply_to: int | None, thread_id: int | None
    ) -> Json:
        counter = self._next_message_id.setdefault(chat["id"], itertools.count(1))
        msg: Json = {"message_id": next(counter), "date": int(time.time()), "chat": copy.deepcopy(chat)}
        if sender is not None:
            msg["from"] = copy.deepcopy(sender)
        if thread_id is not None:
            msg["message_thread_id"] = thread_id
            if chat.get("is_forum"):
                msg["is_topic_message"] = True
        if reply_to is not None:
            replied = self._messages.get((chat["id"], reply_to))
            if replied is None:
                raise _bad("message to be replied not found")
            msg["reply_to_message"] = {k: copy.deepcopy(v) for k, v in replied.items() if k != "reply_to_message"}
        if text is not None:
            msg["text"] = text
        self._messages[(chat["id"], msg["message_id"])] = msg
        return msg

    def _push(self, bot: _Bot, kind: str, obj: Json) -> int:
        update_id = bot.next_update_id
        bot.next_update_id += 1
        if bot.allows(kind):  # Telegram never creates updates the bot opted out of
            bot.updates.append({"update_id": update_id, kind: copy.deepcopy(obj)})
            self._wake(bot)
        return update_id

    def _wake(self, bot: _Bot) -> None:
        self._end_poll(bot, "update")
        bot.webhook_wake.set()

    def _end_poll(self, bot: _Bot, outcome: str) -> None:
        if bot.poll is not None and not bot.poll.outcome.done():
            bot.poll.outcome.set_result(outcome)

    def _confirm(self, bot: _Bot, offset: int) -> None:
        if offset < 0:
            done, bot.updates = bot.updates[:offset], bot.updates[offset:]
        else:
            done = [u for u in bot.updates if u["update_id"] < offset]
            bot.updates = [u for u in bot.updates if u["update_id"] >= offset]
        if done:
            bot.last_confirmed = done[-1]

    def _take(self, bot: _Bot, limit: int) -> list[Json]:
        out = bot.updates[:limit]
        if bot.redeliver and bot.last_confirmed is not None:
            out.insert(0, bot.last_confirmed)
            bot.redeliver = False
        return copy.deepcopy(out)

    async def _api(self, request: web.Request) -> web.StreamResponse:
        raw = request.match_info["method"]
        name = self._methods.get(raw.lower(), raw)
        self.calls[name] += 1
        return await self._with_faults(request, name, lambda: self._answer(request, name, raw))

    def _fault_status(self, fault: Fault) -> web.Response:
        """An error exactly as the Bot API words it (429: ``parameters.retry_after``)."""
        body: Json = {"ok": False, "error_code": fault.status}
        if fault.status == 429:
            retry = int(fault.retry_after) if float(fault.retry_after).is_integer() else fault.retry_after
            body |= {"description": f"Too Many Requests: retry after {retry}", "parameters": {"retry_after": retry}}
        else:
            body["description"] = HTTPStatus(fault.status).phrase
        return web.json_response(body, status=fault.status)

    async def _answer(self, request: web.Request, name: str, raw: str) -> web.Response:
        try:
            faults = self._faults.get(name.lower())
            if faults:
                status, retry_after, description = faults.pop(0)
                if status == 429:
                    raise BotApiError(429, description or f"Too Many Requests: retry after {retry_after}",
                                      {"retry_after": retry_after})
                raise BotApiError(status, description or HTTPStatus(status).phrase)
            bot = self._bot(request.match_info["token"])
            if raw.lower() not in self._methods:
                raise BotApiError(404, "Not Found")
            params: Json = dict(request.query)
            if request.method == "POST" and request.can_read_body:
                if request.content_type == "application/json":
                    decoded = await request.json()
                    params |= decoded if isinstance(decoded, dict) else {}
                else:
                    params |= {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
            if name == "getUpdates":
                result: Any = await self._get_updates(bot, params, request)
            else:
                handler: Callable[[_Bot, Json], Awaitable[Any]] = getattr(self, "_m_" + name)
                result = await handler(bot, params)
        except BotApiError as err:
            body: Json = {"ok": False, "error_code": err.code, "description": err.description}
            if err.parameters:
                body["parameters"] = err.parameters
            return web.json_response(body, status=err.code)
        if isinstance(result, tuple):  # (result, description)
            return web.json_response({"ok": True, "result": result[0], "description": result[1]})
        return web.json_response({"ok": True, "result": result})

    async def _download(self, request: web.Request) -> web.Response:
        if request.match_info["token"] not in self._bots:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        for path, content in self._files.values():
            if path == request.match_info["path"]:
                return web.Response(body=content, content_type="application/octet-stream")
        return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)

    def _chat(self, chat_id: Any) -> Json:
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            chat = next((c for c in self._chats.values() if c.get("username") == chat_id[1:]), None)
        else:
            chat = self._chats.get(_int(chat_id)) if chat_id not in (None, "") else None
        if chat is None:
            raise _bad("chat not found")
        return chat

    # ------------------------------------------------------------------ methods

    async def _m_getMe(self, bot: _Bot, p: Json) -> Json:
        return copy.deepcopy(bot.user)

    async def _get_updates(self, bot: _Bot, p: Json, request: web.Request) -> list[Json]:
        if bot.webhook_url:
            raise BotApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                   "use deleteWebhook to delete the webhook first")
        if p.get("allowed_updates") not in (None, ""):
            bot.allowed_updates = list(_json(p["allowed_updates"]))
        if p.get("offset") not in (None, ""):
            self._confirm(bot, _int(p["offset"]))
        limit = min(max(_int(p.get("limit") or 100), 1), 100)
        timeout = float(_json(p.get("timeout") or 0))
        self._end_poll(bot, "conflict")  # a newer getUpdates terminates the older one
        found = self._take(bot, limit)
        if found or timeout <= 0:
            return found
        poll = _Poll(request, asyncio.get_running_loop().create_future())
        bot.poll = poll
        try:
            outcome = await asyncio.wait_for(asyncio.shield(poll.outcome), timeout)
        except asyncio.TimeoutError:
            outcome = "timeout"
        finally:
            if bot.poll is poll:
                bot.poll = None
        if outcome == "conflict":
            raise BotApiError(409, "Conflict: terminated by other getUpdates request; "
                                   "make sure that only one bot instance is running")
        if outcome == "webhook":
            raise BotApiError(409, "Conflict: can't use getUpdates method while webhook is active; "
                                   "use deleteWebhook to delete the webhook first")
        return self._take(bot, limit)

    async def _m_deleteWebhook(self, bot: _Bot, p: Json) -> tuple[bool, str]:
        had = bot.webhook_url is not None
        bot.webhook_url = bot.secret_token = None
        if bot.webhook_task is not None:
            bot.webhook_task.cancel()
            bot.webhook_task = None
        if _json(p.get("drop_pending_updates") or False):
            bot.updates.clear()
        return True, "Webhook was deleted" if had else "Webhook is already deleted"

    async def _m_setWebhook(self, bot: _Bot, p: Json) -> tuple[bool, str]:
        url = str(p.get("url") or "")
        if not url:
            return await self._m_deleteWebhook(bot, p)
        if not url.startswith(("http://", "https://")):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        secret = p.get("secret_token") or None
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", str(secret)):
            raise _bad("secret token contains unallowed characters")
        if _json(p.get("drop_pending_updates") or False):
            bot.updates.clear()
        if p.get("allowed_updates") not in (None, ""):
            bot.allowed_updates = list(_json(p["allowed_updates"]))
        bot.webhook_url, bot.secret_token = url, secret
        self._end_poll(bot, "webhook")
        if bot.webhook_task is None or bot.webhook_task.done():
            bot.webhook_task = asyncio.create_task(self._webhook_loop(bot))
        bot.webhook_wake.set()
        return True, "Webhook was set"

    async def _m_getWebhookInfo(self, bot: _Bot, p: Json) -> Json:
        info: Json = {"url": bot.webhook_url or "", "has_custom_certificate": False,
                      "pending_update_count": len(bot.updates)}
        if bot.webhook_url:
            info |= {"max_connections": 40, "ip_address": "127.0.0.1"}
            if bot.allowed_updates:
                info["allowed_updates"] = list(bot.allowed_updates)
        if bot.last_error_date is not None:
            info |= {"last_error_date": bot.last_error_date, "last_error_message": bot.last_error_message}
        return info

    async def _m_sendMessage(self, bot: _Bot, p: Json) -> Json:
        chat = self._chat(p.get("chat_id"))
        text = str(p.get("text") or "")
        if not text.strip():
            raise _bad("message text is empty")
        reply_to = _int(p["reply_to_message_id"]) if p.get("reply_to_message_id") not in (None, "") else None
        if p.get("reply_parameters") not in (None, ""):
            params = _json(p["reply_parameters"])
            reply_to = _int(params["message_id"])
            if params.get("allow_sending_without_reply") and (chat["id"], reply_to) not in self._messages:
                reply_to = None
        thread = _int(p["message_thread_id"]) if p.get("message_thread_id") not in (None, "") else None
        msg = self._new_message(chat, self._sender(bot), text, reply_to, thread)
        for key in ("entities", "reply_markup", "link_preview_options"):
            if p.get(key) not in (None, ""):
                msg[key] = _json(p[key])
        self.sent_messages.append(copy.deepcopy(msg))
        return copy.deepcopy(msg)  # bots never get updates for their own messages

    @staticmethod
    def _sender(bot: _Bot) -> Json:
        return {k: bot.user[k] for k in ("id", "is_bot", "first_name", "username")}

    async def _m_editMessageText(self, bot: _Bot, p: Json) -> Json:
        chat = self._chat(p.get("chat_id"))
        msg = self._messages.get((chat["id"], _int(p.get("message_id"))))
        if msg is None:
            raise _bad("message to edit not found")
        if msg.get("from", {}).get("id") != bot.user["id"]:
            raise _bad("message can't be edited")
        text = str(p.get("text") or "")
        if not text.strip():
            raise _bad("message text is empty")
        if text == msg.get("text"):
            raise _bad("message is not modified: specified new message content and reply markup are exactly "
                       "the same as a current content and reply markup of the message")
        msg["text"], msg["edit_date"] = text, int(time.time())
        return copy.deepcopy(msg)

    async def _m_getChat(self, bot: _Bot, p: Json) -> Json:
        chat = copy.deepcopy(self._chat(p.get("chat_id")))
        return chat | {"accent_color_id": 0, "max_reaction_count": 11,
                       "accepted_gift_types": {"unlimited_gifts": False, "limited_gifts": False,
                                               "unique_gifts": False, "premium_subscription": False,
                                               "gifts_from_channels": False}}

    async def _m_getFile(self, bot: _Bot, p: Json) -> Json:
        file_id = str(p.get("file_id") or "")
        if file_id not in self._files:
            raise _bad("invalid file_id")
        path, content = self._files[file_id]
        return {"file_id": file_id, "file_unique_id": f"u{abs(hash(file_id)) % 10**10}",
                "file_size": len(content), "file_path": path}

    # ------------------------------------------------------------------ webhook push

    async def _webhook_loop(self, bot: _Bot) -> None:
        """Deliver pending updates one at a time, oldest first, retrying with backoff."""
        failures = 0
        while bot.webhook_url:
            duplicate = bot.redeliver and bot.last_confirmed is not None
            update = bot.last_confirmed if duplicate else (bot.updates[0] if bot.updates else None)
            if update is None:
                bot.webhook_wake.clear()
                await bot.webhook_wake.wait()
                continue
            headers = {"Content-Type": "application/json"}
            if bot.secret_token:
                headers["X-Telegram-Bot-Api-Secret-Token"] = bot.secret_token
            status: int | None = None
            try:
                assert self._session is not None
                timeout = aiohttp.ClientTimeout(total=self.webhook_timeout)
                async with self._session.post(bot.webhook_url, data=json.dumps(update), headers=headers,
                                              timeout=timeout) as resp:
                    status = resp.status
                    await resp.read()
                error = None if 200 <= status < 300 else f"Wrong response from the webhook: {status} {resp.reason}"
            except asyncio.TimeoutError:
                error = "Read timeout expired"
            except aiohttp.ClientError as exc:
                error = f"Connection refused ({type(exc).__name__})"
            self.webhook_deliveries.append(WebhookDelivery(bot.token, update["update_id"], status, error))
            if error is None:
                failures = 0
                if duplicate:
                    bot.redeliver = False
                elif bot.updates and bot.updates[0] is update:
                    bot.updates.pop(0)
                    bot.last_confirmed = update
                continue
            bot.last_error_date, bot.last_error_message = int(time.time()), error
            delays = self.webhook_retry_delays or (1.0,)
            await asyncio.sleep(delays[min(failures, len(delays) - 1)])
            failures += 1
