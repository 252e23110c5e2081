"""The Stream-mode listener: one websocket per account to DingTalk's gateway, with the
`dingtalk-stream` SDK's client, frames and handlers.

Protocol: POST `{root}/v1.0/gateway/connections/open {clientId, clientSecret, subscriptions,
ua, localIp}` -> `{endpoint, ticket}`; websocket `endpoint?ticket=`; JSON frames
`{specVersion, type: SYSTEM|EVENT|CALLBACK, headers: {messageId, topic, …}, data}`; every
frame is answered with an ack `{code, headers: {messageId}, message, data}`. DingTalk pushes an
unacked CALLBACK again (on this or the next connection), so an ack is a promise that the
message is safe.

Why the SDK's `start()` loop is not used (we subclass DingTalkStreamClient and drive its
pieces instead): it calls the blocking `open_connection` inside the event loop; it swallows
rejected credentials (returns None and retries every 10 s forever) and also swallows
CancelledError; it handles every frame in a fire-and-forget task, so order is lost and a
crash can ack nothing or anything. Here:
- `open_connection` is ours (async, `LOOMI_DINGTALK_BASE_URL`, the SDK's request body and
  subscriptions), so a rejected clientSecret ends the listener with NeedsReauth and 429 waits;
- `get_host_ip` answers "" instead of probing 8.8.8.8 with a UDP socket;
- frames are read in order; each batch of robot messages is emitted (queued durably by the
  supervisor) BEFORE its acks are sent, so a crash in between costs a redelivery, which the
  `msgId` dedup (here, and by delivery id in the inbound stream) absorbs;
- SYSTEM `ping` is answered by the SDK's SystemHandler (it echoes the `opaque`); SYSTEM
  `disconnect` is acked, the batch in hand finished, and a new connection opened;
- a dropped socket reconnects with backoff and tells the supervisor (`ctx.reconnected`).
There is no resume cursor: DingTalk keeps what was not acked and pushes it again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from typing import Any
from urllib.parse import quote_plus

import httpx
import websockets
from dingtalk_stream import AckMessage, CallbackHandler, Credential, DingTalkStreamClient, SystemMessage
from dingtalk_stream.frames import Headers
from dingtalk_stream.version import VERSION_STRING

from connectors.base import AccountState, Envelope, ListenContext, RateLimited
from connectors.dingtalk.api import ApiError, OpenApi, credentials
from connectors.dingtalk.inbound import TOPIC, chat_of, stored_payload
from connectors.dingtalk.outbound import SessionWebhooks

log = logging.getLogger("loomi.dingtalk")
OPEN_PATH = "/v1.0/gateway/connections/open"
MAX_BATCH = 500  # frames per emit
SEEN = 10_000  # msgIds remembered for dedup of redeliveries
MAX_BACKOFF = 30.0  # s


class _Closed:
    """Queue marker: the socket is gone (`error` None for a clean close)."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class StreamClient(DingTalkStreamClient):
    """The SDK client with our connection opening and no network probing (see module doc)."""

    def __init__(self, credential: Credential, api: OpenApi) -> None:
        super().__init__(credential, logger=logging.getLogger("loomi.dingtalk.sdk"))
        self.api = api
        self.register_callback_handler(TOPIC, CallbackHandler())  # the subscription; acks are ours

    def get_host_ip(self) -> str:
        return ""  # the SDK would connect a UDP socket to 8.8.8.8 to learn it; it is informational

    def subscriptions(self) -> list[dict[str, str]]:
        topics = [{"type": "EVENT", "topic": "*"}] if self._is_event_required else []
        return topics + [{"type": "CALLBACK", "topic": t} for t in self.callback_handler_map]

    async def open(self, http: httpx.AsyncClient) -> str:
        """The websocket URI with its one-time ticket."""
        body = {
            "clientId": self.credential.client_id,
            "clientSecret": self.credential.client_secret,
            "subscriptions": self.subscriptions(),
            "ua": f"dingtalk-sdk-python/v{VERSION_STRING}-union",
            "localIp": self.get_host_ip(),
        }
        answer = await self.api.call(http, OPEN_PATH, body, auth_rejects=True)
        endpoint, ticket = answer.get("endpoint"), answer.get("ticket")
        if not isinstance(endpoint, str) or not isinstance(ticket, str):
            raise ApiError(200, "", "connections/open answered without endpoint and ticket")
        return f"{endpoint}?ticket={quote_plus(ticket)}"

    async def answer_system(self, frame: dict[str, Any]) -> bool:
        """Ack a SYSTEM frame through the SDK's SystemHandler; True when it is `disconnect`."""
        message = SystemMessage.from_dict(frame)
        ack = await self.system_handler.raw_process(message)
        await self.websocket.send(json.dumps(ack.to_dict()))
        return message.headers.topic == SystemMessage.TOPIC_DISCONNECT


def ack_for(frame: dict[str, Any]) -> AckMessage:
    """What a CallbackHandler answers for a handled frame, built without parsing `data` (a
    malformed payload is still acked once it is queued: it goes to the DLQ, not round again)."""
    ack = AckMessage()
    ack.headers.message_id = (frame.get("headers") or {}).get("messageId")
    ack.headers.content_type = Headers.CONTENT_TYPE_APPLICATION_JSON
    ack.message = "OK"
    ack.data = {"response": "OK"}
    return ack


async def listen(api: OpenApi, hooks: SessionWebhooks, ctx: ListenContext, *, ping_interval: float = 20.0) -> None:
    client_id, secret = credentials(ctx.account)
    client = StreamClient(Credential(client_id, secret), api)
    seen: OrderedDict[str, None] = OrderedDict()
    connected_once = False
    failures = 0
    await ctx.report(AccountState.CONNECTING)
    async with api.client() as http:
        while True:
            try:
                uri = await client.open(http)  # NeedsReauth propagates: the supervisor stops
                async with websockets.connect(uri, ping_interval=ping_interval, ping_timeout=ping_interval,
                                              open_timeout=10, close_timeout=2, max_size=2**23) as ws:
                    client.websocket = ws
                    failures = 0
                    await ctx.report(AccountState.CONNECTED)
                    if connected_once:
                        await ctx.reconnected()
                    connected_once = True
                    dropped = await _serve(client, ws, ctx, hooks, seen)
                if dropped is not None:
                    raise dropped
                await ctx.report(AccountState.CONNECTING, "DingTalk asked to reconnect")
            except RateLimited as exc:
                await ctx.report(AccountState.BACKOFF, str(exc))
                await asyncio.sleep(exc.retry_after)
            except (OSError, asyncio.TimeoutError, httpx.HTTPError, ApiError,
                    websockets.exceptions.WebSocketException) as exc:
                failures += 1
                delay = min(MAX_BACKOFF, 0.25 * 2 ** (failures - 1))
                log.info("dingtalk account %s: connection lost (%s); retrying in %.2f s", ctx.account.id,
                         type(exc).__name__, delay)
                await ctx.report(AccountState.BACKOFF, f"{type(exc).__name__}: retrying in {delay:.1f} s")
                await asyncio.sleep(delay)


async def _serve(client: StreamClient, ws: Any, ctx: ListenContext, hooks: SessionWebhooks,
                 seen: OrderedDict[str, None]) -> BaseException | None:
    """Handle frames until the socket closes (returns its error, or None for a clean close)
    or DingTalk says `disconnect` (returns None after finishing the batch in hand)."""
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    reader = asyncio.create_task(_read(ws, inbox))
    try:
        while True:
            items = [await inbox.get()]
            while not inbox.empty() and len(items) < MAX_BATCH:
                items.append(inbox.get_nowait())
            closed: _Closed | None = None
            disconnect = False
            callbacks: list[dict[str, Any]] = []
            for item in items:
                if isinstance(item, _Closed):
                    closed = item
                    break
                frame = _parse(item)
                if frame is None:
                    continue
                if frame.get("type") == SystemMessage.TYPE:
                    try:
                        disconnect = await client.answer_system(frame) or disconnect
                    except (ValueError, TypeError):
                        log.warning("dingtalk: unreadable SYSTEM frame dropped")
                else:
                    callbacks.append(frame)
            envelopes = _envelopes(ctx, hooks, callbacks, seen)
            if envelopes:
                await ctx.emit(envelopes)  # durable first…
            for envelope in envelopes:
                seen[envelope.delivery_id] = None
                if len(seen) > SEEN:
                    seen.popitem(last=False)
            if closed is None:
                for frame in callbacks:  # …then ack
                    try:
                        await ws.send(json.dumps(ack_for(frame).to_dict()))
                    except websockets.exceptions.ConnectionClosed:
                        break  # DingTalk pushes them again; the dedup absorbs it
            if closed is not None:
                return closed.error or websockets.exceptions.ConnectionClosedOK(None, None)
            if disconnect:
                return None
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def _read(ws: Any, inbox: asyncio.Queue[Any]) -> None:
    try:
        async for raw in ws:
            inbox.put_nowait(raw)
        inbox.put_nowait(_Closed(None))
    except websockets.exceptions.ConnectionClosed as exc:
        inbox.put_nowait(_Closed(exc))


def _parse(raw: Any) -> dict[str, Any] | None:
    try:
        frame = json.loads(raw)
    except (TypeError, ValueError):
        log.warning("dingtalk: a frame that is not JSON was dropped")
        return None
    return frame if isinstance(frame, dict) else None


def _envelopes(ctx: ListenContext, hooks: SessionWebhooks, frames: list[dict[str, Any]],
               seen: OrderedDict[str, None]) -> list[Envelope]:
    """Robot messages not seen before (by msgId), as Envelopes; other topics are only acked."""
    out: dict[str, Envelope] = {}
    now = int(time.time() * 1000)
    for frame in frames:
        headers = frame.get("headers") if isinstance(frame.get("headers"), dict) else {}
        if frame.get("type") != "CALLBACK" or headers.get("topic") != TOPIC:
            continue
        try:
            data = json.loads(frame.get("data") or "")
        except (TypeError, ValueError):
            data = None
        if not isinstance(data, dict):  # still queued: normalize raises, so it lands in the DLQ
            delivery = str(headers.get("messageId") or now)
            out[delivery] = Envelope("dingtalk", ctx.account.id, delivery, now, {"unreadable_frame": headers})
            continue
        delivery = str(data.get("msgId") or headers.get("messageId"))
        if delivery in seen or delivery in out:
            continue
        try:
            hooks.remember(ctx.account.id, chat_of(data)[0], data)
        except ValueError:
            pass
        out[delivery] = Envelope("dingtalk", ctx.account.id, delivery, now, stored_payload(data))
    return list(out.values())
