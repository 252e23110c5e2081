"""The bot gateway: one connection for the whole app, its events routed by guild id.

Why discord.py's own gateway client and not a loop of ours: `DiscordWebSocket` already speaks
the protocol the way Discord expects - HELLO, the heartbeat thread with its zombie check,
IDENTIFY with intents and the pause before a re-IDENTIFY, RESUME with `seq` and `session_id`
against `resume_gateway_url`, op 7, op 9, the close codes that may or may not be resumed,
zlib-stream decompression, the gateway send rate limit. What `Client.connect` adds on top
does not fit a hub: it always starts with a fresh IDENTIFY (a restarted worker must RESUME
from the saved session instead), it advances the sequence number before anything is stored,
and it turns every event into cached models we would throw away. So this module keeps the
socket and replaces the loop around it:

- `_Socket.received_message` hands each dispatch we keep to `ctx.emit` *before* discord.py
  records its sequence number (a burst already buffered goes in one emit). Discord has no
  per-event ack; the sequence number is the ack (heartbeats and RESUME carry it), so an event
  is never acknowledged before it is queued, and the resume state `{session_id, seq,
  resume_url}` is saved atomically with it.
- The loop opens the socket with `from_client(session=, sequence=, resume=)` from the saved
  state, so a restart or another worker taking the lease RESUMEs and Discord replays what was
  missed; the stream's delivery-id check drops what was already queued.
- discord.py's parsers are switched off (`parsers = {}`): no guild/message caches, no model
  building; `normalize` reads the raw JSON.

Delivery ids: `MESSAGE_CREATE:<id>`, `MESSAGE_DELETE:<id>`, `MESSAGE_UPDATE:<id>:<edited_timestamp>`
(stable across replays and sessions), every other event `<t>:<session_id>:<s>` (stable across
a RESUME replay, which keeps the session and its sequence numbers).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import discord
import yarl
from discord.backoff import ExponentialBackoff
from discord.gateway import DiscordWebSocket, ReconnectWebSocket

from connectors.base import AccountState, AppListenContext, NeedsReauth, WebhookEvent
from connectors.discord.client import MAX_RATELIMIT_WAIT, LoomiHTTP, bot_token, call
from connectors.discord.inbound import EVENTS
from connectors.discord.settings import DiscordSettings

INTENTS = discord.Intents.none()
INTENTS.guilds = True  # GUILD_CREATE, CHANNEL_* and THREAD_*
INTENTS.guild_messages = True  # MESSAGE_CREATE / UPDATE / DELETE in guilds
INTENTS.guild_reactions = True  # MESSAGE_REACTION_ADD / REMOVE
INTENTS.message_content = True  # privileged: without it `content` is empty

CONNECT_TIMEOUT = 60.0
CLOSE_TIMEOUT = 2.0  # s to say goodbye on the socket when stopping
MAX_BATCH = 500  # dispatches per emit
REIDENTIFY_DELAY = 5.0  # s before a new IDENTIFY (discord.py's own pause; Discord asks 1-5 s)
GUILD_KEYS = ("id", "name", "channels", "threads")  # what GUILD_CREATE keeps; members etc. dropped

# Close codes after which reconnecting cannot help (discord.py raises ConnectionClosed for them)
FATAL_CLOSE = {
    4010: "invalid shard", 4011: "sharding required", 4012: "invalid API version",
    4013: "invalid intents",
    4014: "disallowed intents: enable the Message Content intent for the bot in the Developer Portal",
}


class _Client(discord.Client):
    """A discord.Client used for its login and its gateway plumbing only."""

    def __init__(self, settings: DiscordSettings, reidentify_delay: float) -> None:
        super().__init__(intents=INTENTS, max_messages=None, chunk_guilds_at_startup=False,
                         member_cache_flags=discord.MemberCacheFlags.none(),
                         max_ratelimit_timeout=MAX_RATELIMIT_WAIT)
        self.http = self._connection.http = LoomiHTTP(settings.base_url)
        self._connection.parsers = {}  # raw JSON only: no caches, no models
        self.reidentify_delay = reidentify_delay

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        if not initial:
            await asyncio.sleep(self.reidentify_delay)


class _Socket(DiscordWebSocket):
    """discord.py's gateway socket; dispatches go to `sink` before their `s` counts. Dispatches
    that are already waiting behind each other are emitted together (one durable write for a
    burst, e.g. a RESUME replay), up to MAX_BATCH."""

    sink: _Gateway  # set on the per-listener subclass (`gateway` is taken: the URL)
    _pending: list[tuple[dict[str, Any], str]]

    async def received_message(self, msg: Any, /) -> None:
        if type(msg) is bytes:  # decompress here: the zlib stream must be read exactly once
            msg = self._decompressor.decompress(msg)
            if msg is None:
                return
        frame = discord.utils._from_json(msg)
        kind = frame.get("t") if frame.get("op") == self.DISPATCH else None
        pending = self.__dict__.setdefault("_pending", [])
        if kind in EVENTS:
            pending.append((frame, msg))
            if len(pending) < MAX_BATCH and _frames_waiting(self):
                return  # the next frame is already here: emit them together
        await self._flush()
        if kind not in EVENTS:
            await super().received_message(msg)  # discord.py's bookkeeping: HELLO, acks, op 7/9…
            if kind in ("READY", "RESUMED"):
                await self.sink.session_started(self, kind)

    async def _flush(self) -> None:
        """Emit the pending dispatches, then let discord.py count them (its `sequence` is what
        heartbeats and RESUME send: Discord's only ack). If the socket dies first, they were
        never counted, and RESUME replays them."""
        batch, self._pending = self.__dict__.get("_pending", []), []
        if not batch:
            return
        await self.sink.dispatched(self, [frame for frame, _ in batch])
        for _, msg in batch:
            await super().received_message(msg)


def _frames_waiting(ws: DiscordWebSocket) -> bool:
    """Whether aiohttp already holds another frame of this socket. There is no public call for
    it; without the private buffer the answer is False and every dispatch is emitted alone."""
    buffer = getattr(getattr(ws.socket, "_reader", None), "_buffer", None)
    return bool(buffer)


class _Gateway:
    def __init__(self, ctx: AppListenContext) -> None:
        self.ctx = ctx
        self.had_session = bool((ctx.resume or {}).get("session_id"))
        self.sessions = 0  # READY or RESUMED seen: the connection works

    async def dispatched(self, ws: DiscordWebSocket, frames: list[dict[str, Any]]) -> None:
        events = [e for e in (to_event(f, ws.session_id) for f in frames) if e is not None]
        if events:
            await self.ctx.emit(events, resume=resume_state(ws, frames[-1].get("s")))

    async def session_started(self, ws: DiscordWebSocket, kind: str) -> None:
        await self.ctx.emit([], resume=resume_state(ws, ws.sequence))
        await self.ctx.report(AccountState.CONNECTED)
        if kind == "READY" and self.had_session:
            await self.ctx.reconnected()  # a new session: the gateway replays nothing, backfill does
        self.had_session = True
        self.sessions += 1


def resume_state(ws: DiscordWebSocket, seq: Any) -> dict[str, Any]:
    return {"session_id": ws.session_id, "seq": seq, "resume_url": str(ws.gateway)}


def to_event(frame: dict[str, Any], session_id: str | None) -> WebhookEvent | None:
    """The event to queue for one dispatch, or None when no guild owns it (DMs)."""
    kind, data, seq = frame.get("t"), frame.get("d"), frame.get("s")
    if not isinstance(data, dict):
        return None
    guild = data.get("id") if kind == "GUILD_CREATE" else data.get("guild_id")
    if not guild:
        return None
    if kind == "GUILD_CREATE":  # members, presences, roles… can be megabytes: keep what we read
        data = {k: data[k] for k in GUILD_KEYS if k in data}
    if kind in ("MESSAGE_CREATE", "MESSAGE_DELETE") and data.get("id"):
        delivery = f"{kind}:{data['id']}"
    elif kind == "MESSAGE_UPDATE" and data.get("id") and data.get("edited_timestamp"):
        delivery = f"{kind}:{data['id']}:{data['edited_timestamp']}"
    else:
        delivery = f"{kind}:{session_id}:{seq}"
    return WebhookEvent(delivery, {"t": kind, "s": seq, "d": data}, external_id=str(guild))


async def listen_app(settings: DiscordSettings, ctx: AppListenContext, *, reidentify_delay: float = REIDENTIFY_DELAY) -> None:
    token = bot_token(settings)
    await ctx.report(AccountState.CONNECTING)
    client = _Client(settings, reidentify_delay)
    sink = _Gateway(ctx)
    socket_class = type("_BoundSocket", (_Socket,), {"sink": sink})
    ws: DiscordWebSocket | None = None
    try:
        await call(client.login(token))  # GET /users/@me: a dead token fails here
        _shards, url, _limits = await call(client.http.get_bot_gateway())
        gateway = yarl.URL(url)
        saved = ctx.resume or {}
        resumable = bool(saved.get("session_id") and saved.get("seq") is not None and saved.get("resume_url"))
        params: dict[str, Any] = {
            "initial": True, "resume": resumable, "session": saved.get("session_id"), "sequence": saved.get("seq"),
            "gateway": yarl.URL(saved["resume_url"]) if resumable else gateway,
        }
        backoff: ExponentialBackoff[float] = ExponentialBackoff()
        while True:
            sessions = sink.sessions
            try:
                ws = await asyncio.wait_for(socket_class.from_client(client, **params), CONNECT_TIMEOUT)
                params["initial"] = False
                while True:
                    await ws.poll_event()
            except ReconnectWebSocket as exc:  # op 7, op 9, a dropped or timed-out socket
                await ctx.report(AccountState.CONNECTING, "resuming" if exc.resume else "session invalidated")
                params.update(_next(ws, gateway, resume=exc.resume))
            except discord.ConnectionClosed as exc:
                if exc.code == 4004:
                    raise NeedsReauth("Discord closed the gateway: 4004 authentication failed") from None
                if exc.code in FATAL_CLOSE:
                    raise RuntimeError(f"Discord closed the gateway: {exc.code} {FATAL_CLOSE[exc.code]}") from None
                await ctx.report(AccountState.CONNECTING, f"closed with {exc.code}; resuming")
                params.update(_next(ws, gateway, resume=True))
            except (OSError, aiohttp.ClientError, asyncio.TimeoutError, discord.GatewayNotFound) as exc:
                await ctx.report(AccountState.CONNECTING, f"{type(exc).__name__}; reconnecting")
                params.update(_next(ws, gateway, resume=True))
                sessions = -1  # always wait before retrying a connection that failed
            if sink.sessions == sessions or sessions < 0:  # no READY/RESUMED since the last try: do not spin
                await asyncio.sleep(backoff.delay())
    finally:
        if ws is not None and ws.open:
            try:  # not 1000: the session stays resumable for whoever comes next
                await asyncio.wait_for(ws.close(4000), CLOSE_TIMEOUT)
            except (asyncio.TimeoutError, OSError, aiohttp.ClientError):
                pass
        await client.close()


def _next(ws: DiscordWebSocket | None, gateway: yarl.URL, *, resume: bool) -> dict[str, Any]:
    """How to reconnect after `ws` ended: RESUME its session, or a fresh IDENTIFY."""
    if ws is None:
        return {}  # never connected in this run: try the same way again
    if resume and ws.session_id and ws.sequence is not None:
        return {"resume": True, "session": ws.session_id, "sequence": ws.sequence, "gateway": ws.gateway}
    return {"resume": False, "session": None, "sequence": None, "gateway": gateway}
