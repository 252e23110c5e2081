"""Connected accounts. Credentials go through the Vault: never stored or returned in clear."""

from __future__ import annotations

import dataclasses
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from store.model import Account, AccountSpec, AccountState
from store.crypto import Vault
from store.ids import new_id, now_ms
from store.schema import accounts
from store.text import without_nul


async def upsert_account(conn: AsyncConnection, vault: Vault, user_id: str, platform: str, spec: AccountSpec) -> dict[str, Any]:
    """Create the account, or refresh the credentials of the same (user, platform, external id)."""
    # platform-given text follows the store's NUL rule; credentials are sealed exactly as given
    spec = dataclasses.replace(
        spec, name=without_nul(spec.name), external_id=without_nul(spec.external_id), settings=without_nul(spec.settings)
    )
    existing = (
        await conn.execute(
            accounts.select().where(
                accounts.c.user_id == user_id,
                accounts.c.platform == platform,
                accounts.c.external_id == spec.external_id,
            )
        )
    ).mappings().first()
    now = now_ms()
    account_id = existing["id"] if existing else new_id("acct")
    values = {
        "name": spec.name,
        "credentials": vault.encrypt(spec.credentials, bound_to=account_id),
        "credentials_expire_at": spec.expires_at,
        "settings": {**(existing["settings"] if existing else {}), **spec.settings},
        "enabled": True,
        "state": AccountState.CONNECTING.value,
        "state_detail": None,
        "updated_at": now,
    }
    if existing:
        await conn.execute(accounts.update().where(accounts.c.id == account_id).values(**values))
    else:
        await conn.execute(
            accounts.insert().values(
                id=account_id,
                user_id=user_id,
                platform=platform,
                external_id=spec.external_id,
                resume={},
                created_at=now,
                **values,
            )
        )
    row = await get_row(conn, account_id)
    assert row is not None
    return row


async def get_row(conn: AsyncConnection, account_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(accounts.select().where(accounts.c.id == account_id))).mappings().first()
    return dict(row) if row else None


async def list_rows(conn: AsyncConnection, user_id: str | None = None, *, enabled_only: bool = False) -> list[dict[str, Any]]:
    query = accounts.select().order_by(accounts.c.created_at)
    if user_id is not None:
        query = query.where(accounts.c.user_id == user_id)
    if enabled_only:
        query = query.where(accounts.c.enabled.is_(True), accounts.c.credentials.is_not(None))
    return [dict(row) for row in (await conn.execute(query)).mappings()]


def to_account(row: dict[str, Any], vault: Vault) -> Account:
    credentials = vault.decrypt(row["credentials"], bound_to=row["id"]) if row["credentials"] else {}
    return Account(
        id=row["id"],
        user_id=row["user_id"],
        platform=row["platform"],
        external_id=row["external_id"],
        name=row["name"],
        credentials=credentials,
        settings=dict(row["settings"] or {}),
    )


async def load_account(conn: AsyncConnection, vault: Vault, account_id: str) -> Account | None:
    row = await get_row(conn, account_id)
    return to_account(row, vault) if row else None


async def set_state(conn: AsyncConnection, account_id: str, state: AccountState, detail: str | None = None) -> None:
    await conn.execute(
        accounts.update()
        .where(accounts.c.id == account_id)
        .values(state=state.value, state_detail=(detail or None) and without_nul(detail)[:500], updated_at=now_ms())
    )


async def update_settings(conn: AsyncConnection, account_id: str, settings: dict[str, Any]) -> None:
    await conn.execute(accounts.update().where(accounts.c.id == account_id).values(settings=settings, updated_at=now_ms()))


async def save_resume(conn: AsyncConnection, account_id: str, resume: dict[str, Any]) -> None:
    await conn.execute(accounts.update().where(accounts.c.id == account_id).values(resume=without_nul(resume)))


async def save_credentials(
    conn: AsyncConnection, vault: Vault, account_id: str, credentials: dict[str, Any], expires_at: int | None
) -> None:
    await conn.execute(
        accounts.update()
        .where(accounts.c.id == account_id)
        .values(
            credentials=vault.encrypt(credentials, bound_to=account_id),
            credentials_expire_at=expires_at,
            updated_at=now_ms(),
        )
    )


async def disconnect(conn: AsyncConnection, account_id: str) -> None:
    """Stop listening and forget the credentials; the messages already stored stay."""
    await conn.execute(
        accounts.update()
        .where(accounts.c.id == account_id)
        .values(
            enabled=False,
            credentials=None,
            credentials_expire_at=None,
            state=AccountState.STOPPED.value,
            state_detail="disconnected",
            updated_at=now_ms(),
        )
    )


async def load_accounts(conn: AsyncConnection, vault: Vault, account_ids: list[str]) -> dict[str, Account]:
    """Accounts by id, credentials decrypted (a disconnected one has none): what ingest hands
    to `normalize` so a connector knows which messages are its own."""
    rows = (await conn.execute(accounts.select().where(accounts.c.id.in_(account_ids)))).mappings()
    return {row["id"]: to_account(dict(row), vault) for row in rows}


async def by_external_id(conn: AsyncConnection, platform: str, external_ids: list[str]) -> list[dict[str, Any]]:
    """Enabled accounts of `platform` with these external ids (an index serves it): how an
    app-wide event (Slack Events API, Discord's gateway) finds every account it belongs to."""
    query = accounts.select().where(
        accounts.c.platform == platform,
        accounts.c.external_id.in_(external_ids),
        accounts.c.enabled.is_(True),
        accounts.c.credentials.is_not(None),
    )
    return [dict(row) for row in (await conn.execute(query)).mappings()]


async def ids_by_external_id(conn: AsyncConnection, platform: str, external_ids: list[str]) -> list[tuple[str, str]]:
    """(account id, external id) of the enabled accounts of `platform` with these external ids:
    what the Events API route needs to queue an event, read through ix_accounts_platform_external
    without fetching (or opening) anyone's credentials."""
    query = sa.select(accounts.c.id, accounts.c.external_id).where(
        accounts.c.platform == platform,
        accounts.c.external_id.in_(external_ids),
        accounts.c.enabled.is_(True),
        accounts.c.credentials.is_not(None),
    )
    return [(row[0], row[1]) for row in (await conn.execute(query)).all()]
