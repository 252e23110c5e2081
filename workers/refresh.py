"""Refresh OAuth access tokens before they expire; one refresher per account at a time."""

from __future__ import annotations

import logging
import time

import sqlalchemy as sa

from config.platforms import PLATFORMS
from connectors import oauth
from connectors.base import AccountState, OAuthSetup
from loomi.hub import Hub
from store import accounts as account_store
from store.schema import accounts
from workers import keys
from workers.supervisor import accounts_changed, write_status

log = logging.getLogger("loomi.refresh")

REFRESH_AHEAD_MS = 5 * 60 * 1000


async def refresh_due(hub: Hub, worker: str = "refresh") -> int:
    """Refresh every enabled account whose token expires within five minutes."""
    horizon = int(time.time() * 1000) + REFRESH_AHEAD_MS
    async with hub.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(accounts.c.id).where(
                    accounts.c.enabled.is_(True),
                    accounts.c.credentials_expire_at.is_not(None),
                    accounts.c.credentials_expire_at < horizon,
                    accounts.c.state != AccountState.NEEDS_REAUTH.value,
                )
            )
        ).all()
    refreshed = 0
    for (account_id,) in rows:
        if not await hub.redis.set(keys.refresh_lock(account_id), worker, nx=True, ex=60):
            continue  # somebody else is refreshing it
        try:
            refreshed += await refresh_account(hub, account_id, worker)
        finally:
            await hub.redis.delete(keys.refresh_lock(account_id))
    return refreshed


async def refresh_account(hub: Hub, account_id: str, worker: str) -> int:
    async with hub.engine.connect() as conn:
        account = await account_store.load_account(conn, hub.vault, account_id)
    if account is None:
        return 0
    platform = PLATFORMS[account.platform]
    settings = hub.settings.platform(account.platform)
    connector = hub.connector(account.platform)
    token = account.credentials.get("refresh_token")
    if not token or not isinstance(connector, OAuthSetup):
        await write_status(hub, account_id, AccountState.NEEDS_REAUTH, "token expired and cannot be refreshed", worker)
        return 0
    try:
        response = await oauth.refresh(platform, settings, token)
        spec = await connector.account_from_token({**response, "refresh_token": response.get("refresh_token", token)})
    except oauth.OAuthError as err:
        log.warning("refresh of %s failed: %s", account_id, err.code)
        await write_status(hub, account_id, AccountState.NEEDS_REAUTH, f"token refresh failed: {err.code}", worker)
        return 0
    async with hub.engine.begin() as conn:
        await account_store.save_credentials(conn, hub.vault, account_id, {**account.credentials, **spec.credentials}, spec.expires_at)
    await accounts_changed(hub)  # the listener restarts with the new token
    return 1
