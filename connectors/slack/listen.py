"""The Socket Mode listener: slack_sdk's aiohttp SocketModeClient, driven by the supervisor.

slack_sdk owns the websocket and its reconnects (ping/pong, `disconnect` messages, dropped
sockets); this module turns what arrives into Envelopes and keeps three promises:
- every `events_api` envelope is emitted (durably queued by the supervisor) BEFORE it is
  acked, so a crash in between only costs a redelivery, which the event_id dedup absorbs;
- a Socket Mode `hello` after the first one is a reconnect: `ctx.reconnected()` lets the
  supervisor run gap recovery through the Backfiller;
- an app token Slack rejects ends the listener with NeedsReauth instead of slack_sdk's
  endless retry, and cancelling the listener closes the client and every task it started;
- the state says what slack_sdk is doing while it reconnects by itself: `connecting` while it
  asks for a new socket URL, `backoff` naming the error while Slack refuses or rate-limits.

slack_sdk runs each incoming frame's listeners in a task of its own; ours only puts the frame
on a queue (no await in between, so order is kept) and this coroutine does the rest in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Awaitable, Callable

from slack_sdk.errors import SlackApiError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from connectors.slack.settings import SlackSettings
from connectors.base import AccountState, Envelope, ListenContext, NeedsReauth
from connectors.slack.client import AUTH_ERRORS, app_token, bot_token, call, error_code, retry_after, web_client
from connectors.slack.inbound import without_secrets

log = logging.getLogger(__name__)
sdk_log = logging.getLogger(__name__ + ".sdk")  # slack_sdk's own (chatty) reconnect logs

PING_INTERVAL = 5.0  # s; slack_sdk's default: ping period, and its reconnect/retry pause
CLOSE_TIMEOUT = 2.0  # s to say goodbye on the websocket when stopping
MAX_BATCH = 500  # envelopes per emit

Report = Callable[[AccountState, "str | None"], Awaitable[None]]


class _SocketClient(SocketModeClient):
    """SocketModeClient plus: frames go to `inbox`; a rejected app token stops slack_sdk's
    retry loops and reaches the listener as NeedsReauth; reconnect trouble is reported as it
    happens (from slack_sdk's own task, in order); `aclose()` ends every task."""

    def __init__(self, token: str, *, web: AsyncWebClient, inbox: asyncio.Queue[Any], ping_interval: float, report: Report) -> None:
        super().__init__(token, web_client=web, ping_interval=ping_interval, logger=sdk_log)
        self.inbox = inbox
        self.report = report
        self.hellos = 0  # Socket Mode `hello`s the listener has seen: after one, a new URL is a reconnect
        self._running: set[asyncio.Task[Any]] = set()
        self.message_listeners.append(self._to_inbox)

    async def _to_inbox(self, _client: Any, message: dict[str, Any], _raw: str | None) -> None:
        self.inbox.put_nowait(message)

    async def _say(self, state: AccountState, detail: str) -> None:
        try:
            await self.report(state, detail)
        except Exception as err:  # noqa: BLE001 - the state is news, not a reason to stop reconnecting
            log.warning("slack: could not report %s (%s)", state.value, type(err).__name__)

    async def issue_new_wss_url(self) -> str:
        """slack_sdk's own, plus the state: backoff naming Slack's answer while it refuses."""
        if self.hellos:
            await self._say(AccountState.CONNECTING, "reconnecting")
        while True:
            try:
                response = await self.web_client.apps_connections_open(app_token=self.app_token)
                return str(response["url"])
            except SlackApiError as err:
                code = error_code(err)
                if code in AUTH_ERRORS:
                    self.closed = True  # ends connect()'s retry loop and the session monitor
                    self.inbox.put_nowait(NeedsReauth(f"Slack rejected the app token: {code}"))
                    raise
                wait = retry_after(err)
                why = f"Slack refused a new socket URL: {code or 'error'} (HTTP {getattr(err.response, 'status_code', '?')})"
                if wait is None:
                    await self._say(AccountState.BACKOFF, f"{why}; retrying")
                    raise  # slack_sdk tries again after its ping interval
                await self._say(AccountState.BACKOFF, f"{why}; retrying in {wait:g} s")
                await asyncio.sleep(wait)  # as slack_sdk does for `ratelimited`
            except Exception as err:
                await self._say(AccountState.BACKOFF, f"could not reach Slack for a new socket URL: {type(err).__name__}; retrying")
                raise

    async def run_message_listeners(self, message: dict[str, Any], raw_message: str) -> None:
        # slack_sdk starts one of these per frame and keeps no reference; a `disconnect`
        # frame's one reconnects, so track them for aclose().
        task = asyncio.current_task()
        if task is not None:
            self._running.add(task)
        try:
            await super().run_message_listeners(message, raw_message)
        finally:
            if task is not None:
                self._running.discard(task)

    async def aclose(self) -> None:
        """Stop for good: no reconnect may outlive the listener (it would take events that
        nobody acks from the worker that holds the lease now)."""
        self.closed = True
        self.auto_reconnect_enabled = False
        tasks = [t for t in (self.message_processor, self.current_session_monitor, self.message_receiver,
                             *self._running) if t is not None and not t.done()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        session = self.current_session
        if session is not None and not session.closed:
            try:
                await asyncio.wait_for(session.close(), CLOSE_TIMEOUT)
            except Exception:  # a dead peer: the session close below drops it anyway
                pass
        await self.aiohttp_client_session.close()


async def listen_socket_mode(
    settings: SlackSettings, ctx: ListenContext, *, ping_interval: float = PING_INTERVAL
) -> None:
    account = ctx.account
    web = web_client(settings, bot_token(settings, account))
    token = app_token(settings, account)
    await ctx.report(AccountState.CONNECTING)
    await call(web.auth_test)  # the bot token is what history and send use: fail now if it is dead
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    client = _SocketClient(token, web=web, inbox=inbox, ping_interval=ping_interval, report=ctx.report)
    try:
        await client.connect()  # retries by itself until connected, closed or cancelled
        while True:
            items = [await inbox.get()]
            while not inbox.empty() and len(items) < MAX_BATCH:
                items.append(inbox.get_nowait())
            envelopes: list[Envelope] = []
            acks: list[str] = []
            fatal: BaseException | None = None
            for item in items:
                if isinstance(item, BaseException):
                    fatal = item
                    break
                kind = item.get("type")
                if kind == "hello":
                    client.hellos += 1
                    await ctx.report(AccountState.CONNECTED)
                    if client.hellos > 1:
                        await ctx.reconnected()
                elif kind == "events_api":
                    envelopes.append(_envelope(account.id, item))
                    acks.append(str(item.get("envelope_id")))
                elif item.get("envelope_id"):
                    acks.append(str(item["envelope_id"]))  # slash command, interactivity: not messages
            if envelopes:
                await ctx.emit(envelopes)  # durable first…
            for envelope_id in acks:
                await _ack(client, envelope_id)  # …then ack
            if fatal is not None:
                raise fatal
    finally:
        await client.aclose()


def _envelope(account_id: str, frame: dict[str, Any]) -> Envelope:
    payload = frame.get("payload")
    if not isinstance(payload, dict):
        payload = {"unreadable_frame": frame}  # still queued: normalize raises, so it lands in the DLQ
    return Envelope(
        platform="slack",
        account_id=account_id,
        delivery_id=str(payload.get("event_id") or frame.get("envelope_id")),
        received_at=int(time.time() * 1000),
        payload=without_secrets(payload),
        source="listen",
    )


async def _ack(client: _SocketClient, envelope_id: str) -> None:
    try:
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=envelope_id))
    except Exception as err:  # the socket went away: Slack redelivers, event_id dedup absorbs it
        log.info("slack: ack of %s not sent (%s); Slack will redeliver", envelope_id, err)
