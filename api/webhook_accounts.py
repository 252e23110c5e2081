"""The accounts the webhook routes need, kept in memory: an ack must not wait for the database.

A delivery is acknowledged after its signature is checked and it is queued in Redis; reading
the account row and opening its credentials on every delivery took a database round trip (on
SQLite a hop to aiosqlite's thread and back, several per request) plus an AES-GCM open, which
capped one API process near 75 acks/s (bench/webhooks.py). So, per process:

- per account id, the opened `Account` (or the fact that no usable account has that id, so a
  stream of deliveries to a bogus id cannot make every request a query);
- per (platform, external id), the enabled accounts an app-wide event (Slack's Events API) is
  routed to, read through the (platform, external_id) index.

Entries live at most `TTL_SECONDS`, and all of them are dropped when `keys.ACCOUNTS_VERSION`
moves: connecting, disconnecting, a token refresh and a listener finding its credentials
rejected all bump it, from any process. The version is read at most every `CHECK_SECONDS`
(one GET for all the requests arriving meanwhile), so a change made by another process is seen
within that bound; the integration routes of this process drop the cache at once (`forget`).
A load that overlaps a drop is not kept, so a row read before a change never outlives it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable, TypeVar

from connectors.base import Account
from loomi.hub import Hub
from store import accounts as account_store
from workers import keys

T = TypeVar("T")
EXTRA = "webhook_accounts"


class WebhookAccounts:
    TTL_SECONDS = 30.0
    CHECK_SECONDS = 0.5
    MAX_ENTRIES = 50_000  # past this the cache starts over: bounded memory whatever ids arrive

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        self._accounts: dict[str, tuple[float, Account | None]] = {}
        self._routes: dict[tuple[str, str], tuple[float, list[str]]] = {}
        self._loading: dict[Any, asyncio.Future[Any]] = {}
        self._generation = 0  # bumped by every drop: a load that spans one is not kept
        self._version: bytes | None = None
        self._checked_at = -float("inf")

    def forget(self) -> None:
        """Drop everything: an account changed (this process's routes call it right away)."""
        self._accounts.clear()
        self._routes.clear()
        self._loading.clear()
        self._generation += 1

    async def _check_version(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < self.CHECK_SECONDS:
            return
        self._checked_at = now  # requests arriving while the GET is out use what we have
        try:
            version = await self.hub.redis.get(keys.ACCOUNTS_VERSION)
        except BaseException:
            self._checked_at = -float("inf")
            raise
        if version != self._version:
            self._version = version
            self.forget()

    async def _once(self, key: Any, load: Callable[[], Awaitable[T]]) -> T:
        """One load per key at a time: a burst of deliveries for a cold account is one query."""
        pending = self._loading.get(key)
        if pending is None:
            pending = asyncio.ensure_future(load())
            self._loading[key] = pending

            def done(future: asyncio.Future[Any]) -> None:
                if self._loading.get(key) is future:
                    del self._loading[key]
                if not future.cancelled():
                    future.exception()  # retrieved: every waiter may have gone

            pending.add_done_callback(done)
        return await asyncio.shield(pending)

    def _room(self, table: dict[Any, Any]) -> None:
        if len(table) >= self.MAX_ENTRIES:
            table.clear()

    async def account(self, account_id: str) -> Account | None:
        """The enabled account with credentials that has this id, opened; None if there is none."""
        await self._check_version()
        hit = self._accounts.get(account_id)
        if hit is not None and time.monotonic() - hit[0] < self.TTL_SECONDS:
            return hit[1]

        async def load() -> Account | None:
            generation = self._generation
            async with self.hub.engine.connect() as conn:
                row = await account_store.get_row(conn, account_id)
            usable = row is not None and bool(row["enabled"]) and bool(row["credentials"])
            account = account_store.to_account(row, self.hub.vault) if usable else None  # type: ignore[arg-type]
            if generation == self._generation:
                self._room(self._accounts)
                self._accounts[account_id] = (time.monotonic(), account)
            return account

        return await self._once(("account", account_id), load)

    async def routes(self, platform: str, external_ids: list[str]) -> dict[str, list[str]]:
        """external id -> the enabled accounts of `platform` with it (unknown ids: [])."""
        await self._check_version()
        now = time.monotonic()
        found: dict[str, list[str]] = {}
        missing: list[str] = []
        for external_id in external_ids:
            hit = self._routes.get((platform, external_id))
            if hit is not None and now - hit[0] < self.TTL_SECONDS:
                found[external_id] = hit[1]
            else:
                missing.append(external_id)
        if missing:

            async def load() -> dict[str, list[str]]:
                generation = self._generation
                async with self.hub.engine.connect() as conn:
                    rows = await account_store.ids_by_external_id(conn, platform, missing)
                loaded: dict[str, list[str]] = {external_id: [] for external_id in missing}
                for account_id, external_id in rows:
                    loaded[external_id].append(account_id)
                if generation == self._generation:
                    self._room(self._routes)
                    stamp = time.monotonic()
                    self._routes.update({(platform, e): (stamp, ids) for e, ids in loaded.items()})
                return loaded

            found.update(await self._once(("routes", platform, tuple(missing)), load))
        return found


def webhook_accounts(hub: Hub) -> WebhookAccounts:
    """This process's cache (one per Hub)."""
    cache = hub.extras.get(EXTRA)
    if cache is None:
        cache = hub.extras[EXTRA] = WebhookAccounts(hub)
    return cache
