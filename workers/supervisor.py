"""Listener supervision: exactly one live listener per enabled account, across every worker,
each worker holding about its fair share.

Each worker scans the enabled accounts and takes a Redis lease (SET NX PX) for accounts
nobody holds; the lease value carries a fencing token from INCR, and `workers.stream.append`
refuses writes whose token is not the current lease, so a stalled worker that lost its lease
cannot queue anything. Leases are extended every `heartbeat` seconds; a killed worker's
leases expire after `lease_ms` and the next scan elsewhere takes the account over.
A failing listener restarts with exponential backoff and full jitter.

Fair share: workers register in a sorted set with the same heartbeat. A worker takes accounts
only while it holds fewer than its share (accounts / live workers, rounded up), and when it
holds more than the share plus a slack (a worker joined, or it started alone) it stops and
releases the surplus; the listener's resume state is saved with every emit, so the worker
that takes an account over goes on from exactly there, losing and repeating nothing. Scans
read the accounts table only when `keys.ACCOUNTS_VERSION` moved (connect, disconnect,
credentials refreshed, needs_reauth) or every `rescan_seconds`; in between, one MGET of the
lease keys finds the accounts nobody holds.

A platform whose connector is an `AppListener` (one connection for the whole app, like
Discord's bot gateway) runs no listener per account: one app listener per platform runs under
the lease `app:<platform>` while an enabled account of it exists, and its events are routed
to accounts by external id.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Coroutine

from connectors.base import Account, AccountState, AppListener, Envelope, LocalListener, NeedsReauth, WebhookEvent
from connectors.registry import has_connector
from loomi.hub import Hub
from store import accounts as account_store
from workers import keys, metrics
from workers.stream import LeaseLost, append, load_resume

log = logging.getLogger("loomi.supervisor")

_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_TAKE_ORPHANED = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


RAMP_SECONDS = 0.5  # listener starts come in groups of `max_starts` this far apart (1,000 in 20 s)


def backoff_delay(attempt: int, base: float = 1.0, cap: float = 60.0) -> float:
    """Exponential backoff with full jitter (attempt 1 -> up to 1 s, then 2, 4… up to `cap`)."""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))


async def write_status(hub: Hub, account_id: str, state: AccountState, detail: str | None, worker: str) -> None:
    """The database first, then Redis (what the API reads first): a reader never pairs the new
    state with the old detail. Each is written even when the other is down (the outage is what
    the state is about); the database's failure is raised after."""
    mapping = {"state": state.value, "detail": detail or "", "worker": worker, "since": int(time.time() * 1000)}
    db_error: Exception | None = None
    try:
        async with hub.engine.begin() as conn:
            await account_store.set_state(conn, account_id, state, detail)
    except Exception as err:  # noqa: BLE001 - raised below, once Redis has the state
        db_error = err
    await hub.redis.hset(keys.status(account_id), mapping=mapping)
    if db_error is not None:
        raise db_error
    if state is AccountState.NEEDS_REAUTH:
        await accounts_changed(hub)  # no worker may start it again until the person reconnects


async def accounts_changed(hub: Hub) -> None:
    """Tell every worker's supervisor to read the accounts again on its next scan."""
    await hub.redis.incr(keys.ACCOUNTS_VERSION)


@dataclass
class ListenerContext:
    """What `Connector.listen` gets: fenced emit, state reports, reconnect notice."""

    hub: Hub
    account: Account
    resume: dict[str, Any]
    token: str
    worker: str
    on_reconnect: Callable[[str], Awaitable[None]]
    connected_at: float | None = None
    _state: AccountState | None = field(default=None, repr=False)

    async def emit(self, envelopes: list[Envelope], resume: dict[str, Any] | None = None) -> None:
        await append(
            self.hub.redis,
            envelopes,
            lease=(self.account.id, self.token),
            resume=(self.account.id, resume) if resume is not None else None,
        )
        if resume is not None:
            self.resume = resume
        if envelopes:
            await self.hub.redis.hset(keys.status(self.account.id), "last_event_at", int(time.time() * 1000))

    async def report(self, state: AccountState, detail: str | None = None) -> None:
        if state is AccountState.CONNECTED and self.connected_at is None:
            self.connected_at = time.monotonic()
        if state is not self._state:
            self._state = state
            await write_status(self.hub, self.account.id, state, detail, self.worker)

    async def reconnected(self) -> None:
        await self.on_reconnect(self.account.id)


async def _after(delay: float, run: Coroutine[Any, Any, None]) -> None:
    """Start a listener `delay` seconds from now (its lease is already held and renewed)."""
    if delay:
        try:
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            run.close()  # never started: no "coroutine was never awaited" warning
            raise
    await run


def app_key(platform: str) -> str:
    """The lease / resume / status name of a platform's app-wide listener."""
    return f"app:{platform}"


@dataclass
class AppListenerContext:
    """What `AppListener.listen_app` gets: events routed to accounts by external id."""

    hub: Hub
    platform: str
    resume: dict[str, Any]
    token: str
    worker: str
    on_reconnect: Callable[[str], Awaitable[None]]
    connected_at: float | None = None
    _state: AccountState | None = field(default=None, repr=False)
    _routes: dict[str, list[str]] = field(default_factory=dict, repr=False)
    _routes_version: bytes | None = field(default=None, repr=False)

    async def emit(self, events: list[WebhookEvent], resume: dict[str, Any] | None = None) -> None:
        routes = await self._accounts_for({e.external_id for e in events if e.external_id})
        now = int(time.time() * 1000)
        envelopes = [
            Envelope(self.platform, account_id, event.delivery_id, now, event.payload)
            for event in events
            for account_id in routes.get(event.external_id or "", ())
        ]
        key = app_key(self.platform)
        await append(self.hub.redis, envelopes, lease=(key, self.token), resume=(key, resume) if resume is not None else None)
        if resume is not None:
            self.resume = resume
        if envelopes:
            stamp = int(time.time() * 1000)
            async with self.hub.redis.pipeline(transaction=False) as pipe:
                for account_id in {e.account_id for e in envelopes}:
                    pipe.hset(keys.status(account_id), "last_event_at", stamp)
                await pipe.execute()

    async def _accounts_for(self, external_ids: set[str]) -> dict[str, list[str]]:
        """external id -> its accounts, cached until an account changes anywhere
        (`keys.ACCOUNTS_VERSION`): one Redis GET per emit instead of a database query."""
        if not external_ids:
            return {}
        version = await self.hub.redis.get(keys.ACCOUNTS_VERSION)
        if version != self._routes_version:
            self._routes, self._routes_version = {}, version
        missing = sorted(external_ids - self._routes.keys())
        if missing:
            async with self.hub.engine.connect() as conn:
                rows = await account_store.by_external_id(conn, self.platform, missing)
            found: dict[str, list[str]] = {external_id: [] for external_id in missing}
            for row in rows:
                found[row["external_id"]].append(row["id"])
            self._routes.update(found)
        return {e: self._routes[e] for e in external_ids}

    async def report(self, state: AccountState, detail: str | None = None) -> None:
        """The app connection's state is every one of its accounts' state."""
        if state is AccountState.CONNECTED and self.connected_at is None:
            self.connected_at = time.monotonic()
        if state is self._state:
            return
        self._state = state
        async with self.hub.engine.connect() as conn:
            rows = [r for r in await account_store.list_rows(conn, enabled_only=True) if r["platform"] == self.platform]
        for row in rows:
            await write_status(self.hub, row["id"], state, detail, self.worker)

    async def reconnected(self) -> None:
        async with self.hub.engine.connect() as conn:
            rows = [r for r in await account_store.list_rows(conn, enabled_only=True) if r["platform"] == self.platform]
        for row in rows:
            await self.on_reconnect(row["id"])


@dataclass
class Running:
    task: asyncio.Task[None]
    token: str
    version: str  # credentials + settings it started with: a reconnect restarts the listener


def _version(row: dict[str, Any]) -> str:
    # the ciphertext has a fresh nonce on every write, so any credentials update changes it
    return f"{row['credentials']}|{sorted((row['settings'] or {}).items())!r}"


class Supervisor:
    def __init__(
        self,
        hub: Hub,
        worker: str,
        *,
        scan_interval: float = 2.0,
        lease_ms: int = 10_000,
        heartbeat: float = 1.0,
        on_reconnect: Callable[[str], Awaitable[None]] | None = None,
        rescan_seconds: float = 30.0,
        slack: float = 0.1,
        max_starts: int = 25,
    ) -> None:
        self.hub, self.worker = hub, worker
        self.scan_interval, self.lease_ms, self.heartbeat = scan_interval, lease_ms, heartbeat
        self.on_reconnect = on_reconnect or (lambda account_id: asyncio.sleep(0))
        self.rescan_seconds, self.slack = rescan_seconds, slack
        self.max_starts = max_starts  # listeners started per scan: a ramp, so connecting hundreds
        # at once (TLS contexts, handshakes) never starves the heartbeat that keeps the leases
        # a worker silent for five heartbeats is gone: its leases are taken over (fenced) without
        # waiting for each to lapse, so a killed worker's listeners move within the lease time
        self.registration_ms = min(lease_ms, max(int(5 * heartbeat * 1000), 1000))
        self.running: dict[str, Running] = {}
        self._wanted: dict[str, str] = {}
        self._where: dict[str, tuple[str, dict[str, Any]]] = {}  # account -> (platform, settings)
        self._read_version: bytes | None = None
        self._read_at = -math.inf

    async def run(self, stop: asyncio.Event) -> None:
        beat = asyncio.create_task(self._heartbeat_loop(stop))
        try:
            while not stop.is_set():
                try:
                    await self.scan()
                except asyncio.CancelledError:
                    raise
                except Exception:  # noqa: BLE001 - a failed scan is retried next round
                    log.exception("supervisor scan failed")
                try:
                    await asyncio.wait_for(stop.wait(), self.scan_interval)
                except asyncio.TimeoutError:
                    pass
        finally:
            beat.cancel()
            await self.stop_all()

    async def scan(self) -> None:
        await self._register()
        wanted = await self._wanted_listeners()
        for account_id, running in list(self.running.items()):
            if account_id not in wanted or running.task.done():
                await self._stop(account_id, release=True)
            elif wanted[account_id] != running.version:
                log.info("%s: credentials or settings changed; restarting its listener", account_id)
                await self._stop(account_id, release=True)
        share = math.ceil(len(wanted) / max(await self.live_workers(), 1))
        if len(self.running) > share + max(1, math.ceil(share * self.slack)):
            surplus = sorted(self.running)[share:]  # a stable choice: no two workers fight over the same ones
            log.info("holding %d listeners, fair share %d: handing %d over", len(self.running), share, len(surplus))
            for account_id in surplus:
                await self._stop(account_id, release=True, why="handed over to another worker")
            return
        takeable = await self._takeable([a for a in wanted if a not in self.running and self._listens_here(a)])
        free = list(takeable)
        random.shuffle(free)  # workers scanning at once try different accounts first
        chosen = free[: max(share - len(self.running), 0)]
        # every lease of the share at once, in two round trips (a dead worker's listeners are
        # claimed within one scan), then the listeners ramped, `max_starts` per RAMP_SECONDS:
        # starting one costs CPU (TLS, handshakes), and a start storm must not starve the heartbeat
        acquired = await self._acquire([(a, takeable[a]) for a in chosen])
        orphans = [takeable[a] for a in acquired if takeable[a] is not None]
        if orphans:
            gone = sorted({o.decode().rsplit(":", 1)[0] for o in orphans if o is not None})
            log.info("took over %d listener(s) of %s: stopped heartbeating", len(orphans), ", ".join(gone))
        for n, (account_id, token) in enumerate(acquired.items()):
            delay = (n // self.max_starts) * RAMP_SECONDS
            run = self._supervise_app(account_id.removeprefix("app:"), token) if account_id.startswith("app:") else self._supervise(account_id, token)
            task = asyncio.create_task(_after(delay, run), name=f"listener:{account_id}")
            self.running[account_id] = Running(task, token, wanted[account_id])

    async def _wanted_listeners(self) -> dict[str, str]:
        """Listener name -> the version it must run with; the accounts table is read again only
        when an account changed somewhere or `rescan_seconds` passed."""
        version = await self.hub.redis.get(keys.ACCOUNTS_VERSION)
        if version == self._read_version and time.monotonic() - self._read_at < self.rescan_seconds:
            return self._wanted
        async with self.hub.engine.connect() as conn:
            rows = await account_store.list_rows(conn, enabled_only=True)
        wanted: dict[str, str] = {}
        for row in rows:
            if not has_connector(row["platform"]) or row["state"] == AccountState.NEEDS_REAUTH.value:
                continue
            connector = self.hub.connector(row["platform"])
            if isinstance(connector, AppListener):
                if connector.app_configured():
                    wanted[app_key(row["platform"])] = "app"
            else:
                wanted[row["id"]] = _version(row)
                self._where[row["id"]] = (row["platform"], dict(row["settings"] or {}))
        self._wanted, self._read_version, self._read_at = wanted, version, time.monotonic()
        return wanted

    def _listens_here(self, name: str) -> bool:
        """False for an account only other machines can listen to (connectors.base.LocalListener)."""
        if name not in self._where:
            return True
        platform, settings = self._where[name]
        connector = self.hub.connector(platform)
        return not isinstance(connector, LocalListener) or connector.listens_here(settings)

    async def _takeable(self, names: list[str]) -> dict[str, bytes | None]:
        """Which of these listeners this worker may take: unheld (None), or held by a worker
        whose registration lapsed (the lease value it holds, replaced only if still that)."""
        if not names:
            return {}
        held = await self.hub.redis.mget([keys.lease(name) for name in names])
        live = {m.decode() for m in await self.hub.redis.zrangebyscore(keys.WORKERS, await self._now_ms(), "+inf")}
        return {
            name: lease
            for name, lease in zip(names, held)
            if lease is None or lease.decode().rsplit(":", 1)[0] not in live  # lease value: `<worker>:<fence>`
        }

    async def _now_ms(self) -> int:
        """Redis's clock, not ours: machines' clocks differ, and registrations are compared."""
        seconds, micros = await self.hub.redis.time()
        return int(seconds) * 1000 + int(micros) // 1000

    async def _register(self) -> None:
        """Say this worker is alive for `registration_ms`; forget lapsed workers."""
        now = await self._now_ms()
        async with self.hub.redis.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.WORKERS, {self.worker: now + self.registration_ms})
            pipe.zremrangebyscore(keys.WORKERS, "-inf", now)
            await pipe.execute()

    async def live_workers(self) -> int:
        return int(await self.hub.redis.zcount(keys.WORKERS, await self._now_ms(), "+inf"))

    async def _acquire(self, wanted: list[tuple[str, bytes | None]]) -> dict[str, str]:
        """Leases with new fencing tokens: listener -> token, for those we got. An orphaned lease
        (held by a worker that stopped heartbeating) is replaced only if it still holds the value
        we saw, so two workers taking over at once cannot both win; the old holder, if it was
        only paused, fails its next append and renewal and stops (workers/stream.py)."""
        if not wanted:
            return {}
        async with self.hub.redis.pipeline(transaction=False) as pipe:
            for account_id, _ in wanted:
                pipe.incr(keys.fence(account_id))
            fences = await pipe.execute()
        tokens = [f"{self.worker}:{fence}" for fence in fences]
        take = self.hub.redis.register_script(_TAKE_ORPHANED)
        async with self.hub.redis.pipeline(transaction=False) as pipe:
            for (account_id, orphaned), token in zip(wanted, tokens):
                if orphaned is None:
                    pipe.set(keys.lease(account_id), token, nx=True, px=self.lease_ms)
                else:
                    await take(keys=[keys.lease(account_id)], args=[orphaned, token, self.lease_ms], client=pipe)
            results = await pipe.execute()
        return {account_id: token for (account_id, _), token, ok in zip(wanted, tokens, results) if ok}

    async def _heartbeat_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            slept = time.monotonic()
            await asyncio.sleep(self.heartbeat)
            late = time.monotonic() - slept - self.heartbeat
            if late > self.heartbeat:  # the event loop was blocked: other workers may think us gone
                log.warning("heartbeat %.1f s late (event loop busy); registration lasts %.1f s", late, self.registration_ms / 1000)
            try:
                await self._register()
            except Exception:  # noqa: BLE001 - Redis away: the registration lapses, shares grow elsewhere
                log.warning("could not renew this worker's registration")
            held = list(self.running.items())
            try:
                extended = await self._extend(held)
            except Exception:  # noqa: BLE001 - Redis away: leases may lapse; the fence protects us
                log.warning("heartbeat failed for %d leases", len(held))
                continue
            for (account_id, running), ok in zip(held, extended):
                if not ok and self.running.get(account_id) is running:
                    log.warning("lease on %s lost; stopping its listener", account_id)
                    await self._stop(account_id, release=False)

    async def _extend(self, held: list[tuple[str, Running]]) -> list[Any]:
        """Extend every lease this worker holds in one round trip (a pipeline of the fenced
        script), so a worker with a thousand listeners renews them well inside the lease time."""
        if not held:
            return []
        script = self.hub.redis.register_script(_EXTEND)
        async with self.hub.redis.pipeline(transaction=False) as pipe:
            for account_id, running in held:
                await script(keys=[keys.lease(account_id)], args=[running.token, self.lease_ms], client=pipe)
            return await pipe.execute()

    async def _stop(self, account_id: str, *, release: bool, why: str | None = None) -> None:
        """Stop a listener; `why`: say so in its state, while the lease is still ours (so no
        next holder's report can come first and be overwritten)."""
        running = self.running.pop(account_id, None)
        if running is None:
            return
        running.task.cancel()
        try:
            await running.task
        except (asyncio.CancelledError, Exception):  # noqa: BLE001
            pass
        if why is not None:
            await self._say_released(account_id, why)
        if release:
            await self.hub.redis.eval(_RELEASE, 1, keys.lease(account_id), running.token)

    async def _say_released(self, account_id: str, why: str) -> None:
        """A listener we let go is no longer connected through us: say so until its next
        holder reports (an app listener's accounts hear from that holder)."""
        if account_id.startswith("app:"):
            return
        try:
            await write_status(self.hub, account_id, AccountState.CONNECTING, why, "")
        except Exception:  # noqa: BLE001 - Redis or the database away: the next holder corrects it
            log.warning("could not record that %s was released", account_id)

    async def stop_all(self) -> None:
        for account_id in list(self.running):
            await self._stop(account_id, release=True, why=f"worker {self.worker} stopped; waiting for another worker")
        try:
            await self.hub.redis.zrem(keys.WORKERS, self.worker)  # our share goes to the others now
        except Exception:  # noqa: BLE001 - Redis away: the registration lapses by itself
            log.warning("could not deregister this worker")

    async def _supervise(self, account_id: str, token: str) -> None:
        """Run one account's listener until cancelled, restarting it with backoff."""
        attempt = 0
        while True:
            async with self.hub.engine.connect() as conn:
                row = await account_store.get_row(conn, account_id)
            if row is None or not row["enabled"]:
                return
            account = account_store.to_account(row, self.hub.vault)
            resume = await load_resume(self.hub.redis, account_id) or dict(row["resume"] or {})
            ctx = ListenerContext(self.hub, account, resume, token, self.worker, self.on_reconnect)
            await ctx.report(AccountState.CONNECTING)
            try:
                await self.hub.connector(account.platform).listen(ctx)
                error = "listener returned"
            except asyncio.CancelledError:
                await self._persist_resume(ctx)
                raise
            except LeaseLost:
                log.info("%s: lease lost, another worker has it", account_id)
                return
            except NeedsReauth as err:
                await self._persist_resume(ctx)
                await ctx.report(AccountState.NEEDS_REAUTH, str(err) or "credentials rejected")
                return
            except Exception as err:  # noqa: BLE001 - any failure restarts with backoff
                error = f"{type(err).__name__}: {err}"
                log.warning("%s: listener failed: %s", account_id, error)
                await metrics.count(self.hub.redis, "listener_failure", account.platform)
            await self._persist_resume(ctx)
            if ctx.connected_at is not None and time.monotonic() - ctx.connected_at > 60:
                attempt = 0  # it ran fine for a while: start the backoff over
            attempt += 1
            delay = backoff_delay(attempt)
            await ctx.report(AccountState.BACKOFF, f"{error}; retrying in {delay:.1f} s")
            await asyncio.sleep(delay)

    async def _supervise_app(self, platform: str, token: str) -> None:
        """Run a platform's app-wide listener until cancelled, restarting it with backoff.
        Its resume state lives in Redis only (there is no account row to copy it to)."""
        key = app_key(platform)
        attempt = 0
        while True:
            ctx = AppListenerContext(self.hub, platform, await load_resume(self.hub.redis, key) or {}, token, self.worker, self.on_reconnect)
            await ctx.report(AccountState.CONNECTING)
            connector = self.hub.connector(platform)
            assert isinstance(connector, AppListener)
            try:
                await connector.listen_app(ctx)
                error = "listener returned"
            except asyncio.CancelledError:
                raise
            except LeaseLost:
                log.info("%s: lease lost, another worker has it", key)
                return
            except NeedsReauth as err:
                await ctx.report(AccountState.NEEDS_REAUTH, str(err) or "app credentials rejected")
                return
            except Exception as err:  # noqa: BLE001 - any failure restarts with backoff
                error = f"{type(err).__name__}: {err}"
                log.warning("%s: app listener failed: %s", key, error)
                await metrics.count(self.hub.redis, "listener_failure", platform)
            if ctx.connected_at is not None and time.monotonic() - ctx.connected_at > 60:
                attempt = 0
            attempt += 1
            delay = backoff_delay(attempt)
            await ctx.report(AccountState.BACKOFF, f"{error}; retrying in {delay:.1f} s")
            await asyncio.sleep(delay)

    async def _persist_resume(self, ctx: ListenerContext) -> None:
        """Copy the resume state into the database too, so losing Redis does not lose our place."""
        try:
            async with self.hub.engine.begin() as conn:
                await account_store.save_resume(conn, ctx.account.id, ctx.resume)
        except Exception:  # noqa: BLE001
            log.warning("could not persist resume state of %s", ctx.account.id)
