"""The QQ gateway, per account: one websocket, resumed across drops without losing a message.

QQ's gateway speaks Discord's opcodes: HELLO (10) gives the heartbeat interval; the client
IDENTIFYs (2) with its token and intents, or RESUMEs (6) an earlier session from a sequence
number, and QQ replays every dispatch after it; RECONNECT (7) asks for a resume, INVALID
SESSION (9) for a fresh IDENTIFY; heartbeats (1) are acked (11).

The resume position `{session_id, seq}` is saved by `ctx.emit` atomically with the message it
follows, so a crash, a kill -9 or a worker hand-over resumes exactly after the last queued
message (QQ keeps a session resumable for a while; after that, messages in between are gone,
as QQ has no history API for bots). A small loop over aiohttp's websocket rather than
qq-botpy's client: botpy advances its sequence number in memory before our handler runs, and
gives no hook to save it with the queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from connectors.base import AccountState, Envelope, ListenContext, NeedsReauth
from connectors.qqbot.client import PLATFORM, QQApi, app_credentials
from connectors.qqbot.inbound import JOINED, MESSAGES, delivery_id

log = logging.getLogger("loomi.qqbot")

HELLO, HEARTBEAT, IDENTIFY, RESUME, RECONNECT, INVALID_SESSION, HEARTBEAT_ACK, DISPATCH = 10, 1, 2, 6, 7, 9, 11, 0
AUTH_FAILED = 4004
SESSION_GONE = {4006, 4007, 4009, 9001, 9005}  # resume impossible: identify again
BANNED = {4914, 4915}  # the bot is offline for review or banned
KEPT = (*MESSAGES, JOINED)  # dispatches worth queueing


@dataclass
class Position:
    session_id: str | None = None
    seq: int = 0

    def state(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "seq": self.seq} if self.session_id else {}


class Reconnect(Exception):
    """The connection ended in a way a new connection (resume or identify) fixes."""


class _AuthFailed(Exception):
    """The gateway closed with 4004: the token is bad (a fresh one may fix it, once)."""


async def listen(api: QQApi, ctx: ListenContext, *, retry_delay: float = 1.0) -> None:
    """Connect, and reconnect in place after drops (resuming); return never, raise to restart."""
    account = ctx.account
    app_id, secret = app_credentials(account)
    saved = ctx.resume or {}
    position = Position(saved.get("session_id"), int(saved.get("seq") or 0))
    auth_failures = 0
    while True:
        gateway = await api.call(account, "GET", "/gateway/bot")
        url = gateway.get("url")
        if not isinstance(url, str):
            raise ValueError("QQ's /gateway/bot gave no url")
        try:
            async with aiohttp.ClientSession() as http, http.ws_connect(url, heartbeat=None, autoping=True) as ws:
                await _session(ws, api, ctx, position, app_id, secret)
        except Reconnect as why:
            log.info("%s: reconnecting (%s)", account.id, why)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as err:
            log.info("%s: gateway connection lost: %s", account.id, type(err).__name__)
        except _AuthFailed:
            auth_failures += 1
            if auth_failures > 1:
                raise NeedsReauth("QQ's gateway refused the app's access token") from None
            await api.token(app_id, secret, fresh=True)
            continue
        await ctx.report(AccountState.CONNECTING, "reconnecting")
        await asyncio.sleep(retry_delay)


async def _session(ws: aiohttp.ClientWebSocketResponse, api: QQApi, ctx: ListenContext, position: Position,
                   app_id: str, secret: str) -> None:
    hello = await ws.receive_json(timeout=30)
    if hello.get("op") != HELLO:
        raise Reconnect(f"expected HELLO, got op {hello.get('op')}")
    interval = float((hello.get("d") or {}).get("heartbeat_interval", 30_000)) / 1000
    token = f"QQBot {await api.token(app_id, secret)}"
    if position.session_id:
        await ws.send_json({"op": RESUME, "d": {"token": token, "session_id": position.session_id, "seq": position.seq}})
    else:
        intents = api.settings.intents
        await ws.send_json({"op": IDENTIFY, "d": {"token": token, "intents": intents, "shard": [0, 1], "properties": {}}})
    acked = [time.monotonic()]
    beat = asyncio.create_task(_heartbeat(ws, position, interval, acked))
    try:
        async for msg in ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            frame = msg.json()
            op = frame.get("op")
            if op == DISPATCH:
                await _dispatch(frame, ctx, position)
            elif op == HEARTBEAT_ACK:
                acked[0] = time.monotonic()
            elif op == HEARTBEAT:
                await ws.send_json({"op": HEARTBEAT, "d": position.seq or None})
            elif op == RECONNECT:
                raise Reconnect("QQ asked for a reconnect")
            elif op == INVALID_SESSION:
                position.session_id, position.seq = None, 0
                await ctx.emit([], resume={})
                raise Reconnect("session invalid: identifying again")
    finally:
        beat.cancel()
    code = ws.close_code
    if code == AUTH_FAILED:
        raise _AuthFailed()
    if code in BANNED:
        raise NeedsReauth(f"QQ closed the gateway with {code}: the bot is offline or banned")
    if code in SESSION_GONE:
        position.session_id, position.seq = None, 0
        await ctx.emit([], resume={})
    raise Reconnect(f"gateway closed ({code})")


async def _dispatch(frame: dict[str, Any], ctx: ListenContext, position: Position) -> None:
    kind, seq = frame.get("t"), frame.get("s")
    if isinstance(seq, int) and seq > position.seq:
        position.seq = seq
    if kind == "READY":
        position.session_id = (frame.get("d") or {}).get("session_id")
        await ctx.emit([], resume=position.state())
        await ctx.report(AccountState.CONNECTED)
    elif kind == "RESUMED":
        await ctx.emit([], resume=position.state())
        await ctx.report(AccountState.CONNECTED)
    elif kind in KEPT:
        envelope = Envelope(PLATFORM, ctx.account.id, delivery_id(frame), int(time.time() * 1000), frame)
        await ctx.emit([envelope], resume=position.state())  # queued with its position, or neither


async def _heartbeat(ws: aiohttp.ClientWebSocketResponse, position: Position, interval: float, acked: list[float]) -> None:
    """Beat every `interval`; a connection whose beats go unanswered twice is dead (a zombie)."""
    while True:
        await asyncio.sleep(interval)
        if time.monotonic() - acked[0] > 2.5 * interval:
            await ws.close()
            return
        await ws.send_json({"op": HEARTBEAT, "d": position.seq or None})
