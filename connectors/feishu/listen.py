"""The long-connection event listener: Feishu's websocket spoken with lark-oapi's protobuf Frame.

Why not `lark.ws.Client`: its `start()` runs forever on a module-global event loop
(`lark_oapi.ws.client.loop`), so two accounts in one worker cannot each run one (both threads
would drive the same loop), it has no stop (a cancelled listener would leave a thread holding a
socket that keeps acking events the worker that took the account over never sees), and its
handler is synchronous and acks as soon as it returns, so acking "only after the event is
durable" means blocking its loop on ours. The protocol is small, so this module speaks it on
the hub's own loop with the SDK's pieces: its `pbbp2.Frame`, its frame and header constants,
and the same endpoint call (`POST {root}/callback/ws/endpoint {AppID, AppSecret}` -> a ws URL
with `device_id` and `service_id`, plus the ClientConfig for pings and reconnects).

Per frame: control frames are pings (ours, every PingInterval) and pongs (which may carry a new
ClientConfig); data frames of type `event` carry one v2 event, split in `sum` parts (`seq`)
under one `message_id` when large. Every complete event is queued with `ctx.emit` (its
`header.event_id` is the delivery id, so Feishu's re-sends are dropped by the stream, and by
a small in-memory window here before that) and only then acked: the frame sent back with
payload `{"code": 200}`. Unacked events are re-sent by Feishu after a reconnect.

Reconnects happen in place, paced as ClientConfig says (first after a random share of
ReconnectNonce, then every ReconnectInterval), reporting CONNECTING and then
`ctx.reconnected()` so the supervisor recovers the gap from history.
"""

from __future__ import annotations

import asyncio
import collections
import hashlib
import json
import logging
import random
import time
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
from lark_oapi.api.im.v1 import GetMessageRequest
from lark_oapi.ws.const import (
    AUTH_FAILED,
    EXCEED_CONN_LIMIT,
    FORBIDDEN,
    GEN_ENDPOINT_URI,
    HEADER_BIZ_RT,
    HEADER_HANDSHAKE_AUTH_ERRCODE,
    HEADER_HANDSHAKE_MSG,
    HEADER_HANDSHAKE_STATUS,
    HEADER_MESSAGE_ID,
    HEADER_SEQ,
    HEADER_SUM,
    HEADER_TYPE,
)
from lark_oapi.ws.enum import FrameType, MessageType
from lark_oapi.ws.pb.pbbp2_pb2 import Frame
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from connectors.base import AccountState, Envelope, ListenContext, NeedsReauth, RateLimited
from connectors.feishu.client import PLATFORM, FeishuApi, FeishuError
from connectors.feishu.inbound import REACTION_ADDED, REACTION_REMOVED, RECEIVE

log = logging.getLogger("loomi.feishu")

MAX_BATCH = 500  # events per emit
SEEN_WINDOW = 10_000  # event ids remembered per listener for dropping re-sends early
CHAT_CACHE = 10_000  # message id -> chat id, for placing reactions without a lookup
ACK = json.dumps({"code": 200}).encode()
TRANSIENT_ENDPOINT_CODES = frozenset({1, 1000040343, 99991400})  # system busy, internal error, rate limit


class Config:
    """Feishu's ClientConfig (seconds), as the endpoint and pongs give it."""

    def __init__(self) -> None:
        self.ping_interval, self.reconnect_interval, self.reconnect_nonce = 120.0, 120.0, 30.0

    def update(self, conf: Any) -> None:
        if not isinstance(conf, dict):
            return
        for key, attr in (("PingInterval", "ping_interval"), ("ReconnectInterval", "reconnect_interval"),
                          ("ReconnectNonce", "reconnect_nonce")):
            value = conf.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
                setattr(self, attr, float(value))


async def listen(base_url: str, ctx: ListenContext, *, max_wait: float = 300.0) -> None:
    api = FeishuApi.for_account(base_url, ctx.account)
    session = _Session(api, ctx, base_url)
    await ctx.report(AccountState.CONNECTING)
    await api.token()  # dead credentials fail here, before any socket
    connects = 0
    failures = 0
    while True:
        try:
            url = await session.endpoint()
            async with connect(url, proxy=None, max_size=None) as ws:  # websockets' own 20 s keepalive, as the SDK
                failures = 0
                await ctx.report(AccountState.CONNECTED)
                connects += 1
                if connects > 1:
                    await ctx.reconnected()
                await session.run(ws)
        except (ConnectionClosed, OSError, asyncio.TimeoutError, httpx.TransportError, FeishuError) as err:
            log.info("feishu: connection lost (%s); reconnecting", type(err).__name__)
        except InvalidStatus as err:
            _raise_for_handshake(err)
        except InvalidHandshake as err:
            log.info("feishu: handshake failed (%s); reconnecting", err)
        except RateLimited as err:
            await ctx.report(AccountState.BACKOFF, str(err))
            await asyncio.sleep(min(err.retry_after, max_wait))
            continue
        await ctx.report(AccountState.CONNECTING, "reconnecting")
        conf = session.config
        pause = random.random() * conf.reconnect_nonce if failures == 0 else conf.reconnect_interval
        failures += 1
        await asyncio.sleep(min(pause, max_wait))


def _raise_for_handshake(err: InvalidStatus) -> None:
    """Feishu refuses a socket with `handshake-status` headers: 514 with an auth error code
    (other than too many connections) or 403 means the app may not connect (NeedsReauth);
    anything else is retried."""
    headers = err.response.headers
    status, msg = headers.get(HEADER_HANDSHAKE_STATUS), headers.get(HEADER_HANDSHAKE_MSG) or ""
    auth_code = headers.get(HEADER_HANDSHAKE_AUTH_ERRCODE)
    if status == str(FORBIDDEN) or (status == str(AUTH_FAILED) and auth_code != str(EXCEED_CONN_LIMIT)):
        raise NeedsReauth(f"Feishu refused the event connection: {msg or status}")
    log.info("feishu: event connection refused (%s); reconnecting", msg or err)  # busy, too many connections


class _Session:
    """Everything one listener keeps across reconnects."""

    def __init__(self, api: FeishuApi, ctx: ListenContext, base_url: str) -> None:
        self.api, self.ctx, self.base_url = api, ctx, base_url
        self.config = Config()
        self.service_id = 0
        self.seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.chats: collections.OrderedDict[str, str] = collections.OrderedDict()
        self.parts: dict[str, list[bytes | None]] = {}

    async def endpoint(self) -> str:
        """POST /callback/ws/endpoint: the socket URL, and Feishu's ClientConfig."""
        body = {"AppID": self.api.app_id, "AppSecret": self.api.app_secret}
        async with httpx.AsyncClient(timeout=30) as http:
            resp = await http.post(self.base_url + GEN_ENDPOINT_URI, json=body, headers={"locale": "zh"})
        try:
            data = resp.json()
        except ValueError:
            data = {}
        code, msg = data.get("code"), str(data.get("msg") or "")
        if resp.status_code == 429 or code == 99991400:
            raise RateLimited(float(resp.headers.get("x-ogw-ratelimit-reset") or 1), "Feishu endpoint rate limit")
        if resp.status_code >= 500 or code in TRANSIENT_ENDPOINT_CODES:
            raise FeishuError(int(code or resp.status_code), msg, resp.status_code)
        if code != 0 or not isinstance(data.get("data"), dict) or not data["data"].get("URL"):
            raise NeedsReauth(f"Feishu refused the event connection: {msg or code}")
        self.config.update(data["data"].get("ClientConfig"))
        url = str(data["data"]["URL"])
        self.service_id = int((parse_qs(urlparse(url).query).get("service_id") or ["0"])[0])
        return url

    async def run(self, ws: ClientConnection) -> None:
        inbox: asyncio.Queue[bytes] = asyncio.Queue()
        pinger = asyncio.create_task(self._ping(ws))
        reader = asyncio.create_task(self._read(ws, inbox))
        try:
            while True:
                getter = asyncio.ensure_future(inbox.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    reader.result()  # raises why the socket ended
                    return
                raws = [getter.result()]
                while not inbox.empty() and len(raws) < MAX_BATCH:
                    raws.append(inbox.get_nowait())
                await self._handle(ws, raws)
        finally:
            for task in (pinger, reader):
                task.cancel()
            await asyncio.gather(pinger, reader, return_exceptions=True)

    async def _read(self, ws: ClientConnection, inbox: asyncio.Queue[bytes]) -> None:
        async for raw in ws:
            if isinstance(raw, bytes):
                inbox.put_nowait(raw)

    async def _ping(self, ws: ClientConnection) -> None:
        while True:
            frame = Frame()
            frame.SeqID, frame.LogID, frame.service, frame.method = 0, 0, self.service_id, FrameType.CONTROL.value
            header = frame.headers.add()
            header.key, header.value = HEADER_TYPE, MessageType.PING.value
            await ws.send(frame.SerializeToString())
            await asyncio.sleep(max(self.config.ping_interval, 1.0))

    async def _handle(self, ws: ClientConnection, raws: list[bytes]) -> None:
        """Parse a batch of frames; emit the complete events at once; then ack each of them."""
        started = time.monotonic()
        envelopes: list[Envelope] = []
        acks: list[Frame] = []
        for raw in raws:
            frame = Frame()
            try:
                frame.ParseFromString(raw)
            except Exception:  # protobuf's DecodeError: not a frame at all
                log.warning("feishu: unreadable frame dropped")
                continue
            headers = {h.key: h.value for h in frame.headers}
            if frame.method == FrameType.CONTROL.value:
                if headers.get(HEADER_TYPE) == MessageType.PONG.value and frame.payload:
                    try:
                        self.config.update(json.loads(frame.payload))
                    except ValueError:
                        pass
                continue
            payload = self._combine(headers, bytes(frame.payload))
            if payload is None:
                continue  # more parts to come
            acks.append(frame)
            if headers.get(HEADER_TYPE) != MessageType.EVENT.value:
                continue  # card callbacks: not messages; acked so Feishu stops re-sending
            envelope = await self._envelope(payload)
            if envelope is not None:
                envelopes.append(envelope)
        if envelopes:
            await self.ctx.emit(envelopes)  # durable first…
            for envelope in envelopes:
                self._remember(self.seen, envelope.delivery_id, None, SEEN_WINDOW)
        for frame in acks:  # …then ack
            header = frame.headers.add()
            header.key, header.value = HEADER_BIZ_RT, str(int((time.monotonic() - started) * 1000))
            frame.payload = ACK
            await ws.send(frame.SerializeToString())

    def _combine(self, headers: dict[str, str], payload: bytes) -> bytes | None:
        total = int(headers.get(HEADER_SUM) or 1)
        if total <= 1:
            return payload
        key, seq = headers.get(HEADER_MESSAGE_ID, ""), int(headers.get(HEADER_SEQ) or 0)
        parts = self.parts.setdefault(key, [None] * total)
        if 0 <= seq < total:
            parts[seq] = payload
        if any(p is None for p in parts):
            return None
        del self.parts[key]
        return b"".join(p for p in parts if p is not None)

    async def _envelope(self, payload: bytes) -> Envelope | None:
        try:
            body = json.loads(payload)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            body = {"unreadable_event": payload.decode("utf-8", "replace")}  # normalize raises: DLQ
        header = body.get("header") if isinstance(body.get("header"), dict) else {}
        event_id = str(header.get("event_id") or body.get("uuid") or "")
        if event_id and event_id in self.seen:
            return None  # re-sent after a lost ack: already queued
        body.pop("token", None)
        header.pop("token", None)  # the verification token is a secret: never queued or stored
        event = body.get("event") if isinstance(body.get("event"), dict) else {}
        kind = header.get("event_type")
        if kind == RECEIVE and isinstance(event.get("message"), dict):
            message = event["message"]
            self._remember(self.chats, str(message.get("message_id")), str(message.get("chat_id")), CHAT_CACHE)
        elif kind in (REACTION_ADDED, REACTION_REMOVED) and not event.get("chat_id"):
            chat_id = await self._chat_of(str(event.get("message_id") or ""))
            if chat_id:
                event["chat_id"] = chat_id  # Feishu names only the message; the store needs its chat
        return Envelope(platform=PLATFORM, account_id=self.ctx.account.id, delivery_id=event_id or hashlib.sha256(payload).hexdigest(),
                        received_at=int(time.time() * 1000), payload=body, source="listen")

    async def _chat_of(self, message_id: str) -> str | None:
        if not message_id:
            return None
        if message_id in self.chats:
            return self.chats[message_id]
        request = GetMessageRequest.builder().message_id(message_id).build()
        try:
            data = await self.api.call(lambda option: self.api.sdk.im.v1.message.aget(request, option))
        except (FeishuError, RateLimited, httpx.TransportError) as err:
            log.info("feishu: chat of reacted message %s unknown (%s)", message_id, err)
            return None
        items = (data.get("data") or {}).get("items") or []
        chat_id = str(items[0].get("chat_id") or "") if items and isinstance(items[0], dict) else ""
        if chat_id:
            self._remember(self.chats, message_id, chat_id, CHAT_CACHE)
        return chat_id or None

    @staticmethod
    def _remember(cache: collections.OrderedDict[str, Any], key: str, value: Any, limit: int) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > limit:
            cache.popitem(last=False)
