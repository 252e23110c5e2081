"""Users and login sessions."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from store.ids import SessionId, UserId, new_id, now_ms
from store.schema import invites, sessions, user_identities, users


class EmailTaken(Exception):
    pass


class IdentityTaken(Exception):
    """This provider identity already belongs to another user."""


async def create_user(
    conn: AsyncConnection,
    *,
    email: str,
    name: str,
    password_hash: str | None,
    is_owner: bool = False,
) -> dict[str, Any]:
    now = now_ms()
    row = {
        "id": new_id("user"),
        "email": email.lower(),
        "name": name,
        "password_hash": password_hash,
        "identity": {},
        "is_owner": is_owner,
        "token_version": 0,
        "seq": 0,
        "created_at": now,
        "updated_at": now,
    }
    try:
        async with conn.begin_nested():
            await conn.execute(users.insert().values(**row))
    except IntegrityError:
        raise EmailTaken(email) from None
    return row


async def get_user(conn: AsyncConnection, user_id: str) -> dict[str, Any] | None:
    row = (await conn.execute(users.select().where(users.c.id == user_id))).mappings().first()
    return dict(row) if row else None


async def get_user_by_email(conn: AsyncConnection, email: str) -> dict[str, Any] | None:
    row = (await conn.execute(users.select().where(users.c.email == email.lower()))).mappings().first()
    return dict(row) if row else None


async def get_owner(conn: AsyncConnection) -> dict[str, Any] | None:
    row = (await conn.execute(users.select().where(users.c.is_owner.is_(True)))).mappings().first()
    return dict(row) if row else None


async def update_user(conn: AsyncConnection, user_id: UserId, **values: Any) -> dict[str, Any]:
    if "email" in values:
        values["email"] = values["email"].lower()
    try:
        async with conn.begin_nested():
            await conn.execute(
                users.update().where(users.c.id == user_id).values(**values, updated_at=now_ms())
            )
    except IntegrityError:
        raise EmailTaken(values.get("email", "")) from None
    user = await get_user(conn, user_id)
    assert user is not None
    return user


async def set_password(conn: AsyncConnection, user_id: UserId, password_hash: str) -> int:
    """Store a new hash and bump token_version: every older token stops working."""
    await conn.execute(
        users.update()
        .where(users.c.id == user_id)
        .values(password_hash=password_hash, token_version=users.c.token_version + 1, updated_at=now_ms())
    )
    user = await get_user(conn, user_id)
    assert user is not None
    return int(user["token_version"])


async def create_session(conn: AsyncConnection, user_id: UserId, kind: str, ttl_ms: int) -> dict[str, Any]:
    now = now_ms()
    row = {"id": new_id("sess"), "user_id": user_id, "kind": kind, "created_at": now, "expires_at": now + ttl_ms}
    await conn.execute(sessions.insert().values(**row))
    return row


async def extend_session(conn: AsyncConnection, session_id: SessionId, ttl_ms: int) -> None:
    await conn.execute(sessions.update().where(sessions.c.id == session_id).values(expires_at=now_ms() + ttl_ms))


async def revoke_session(conn: AsyncConnection, session_id: SessionId) -> None:
    await conn.execute(
        sessions.update()
        .where(sessions.c.id == session_id, sessions.c.revoked_at.is_(None))
        .values(revoked_at=now_ms())
    )


async def load_principal(conn: AsyncConnection, user_id: str, session_id: str) -> dict[str, Any] | None:
    """The user behind a token, if its session is live: one indexed join per request."""
    query = (
        sa.select(users, sessions.c.expires_at.label("session_expires_at"))
        .join(sessions, sessions.c.user_id == users.c.id)
        .where(
            users.c.id == user_id,
            sessions.c.id == session_id,
            sessions.c.revoked_at.is_(None),
            sessions.c.expires_at > now_ms(),
        )
    )
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def get_identity(conn: AsyncConnection, provider: str, provider_user_id: str) -> dict[str, Any] | None:
    query = user_identities.select().where(
        user_identities.c.provider == provider, user_identities.c.provider_user_id == provider_user_id
    )
    row = (await conn.execute(query)).mappings().first()
    return dict(row) if row else None


async def identities_of(conn: AsyncConnection, user_id: UserId) -> list[dict[str, Any]]:
    query = user_identities.select().where(user_identities.c.user_id == user_id).order_by(user_identities.c.created_at)
    return [dict(row) for row in (await conn.execute(query)).mappings().all()]


async def add_identity(conn: AsyncConnection, provider: str, provider_user_id: str, user_id: UserId, email: str) -> None:
    """Bind a provider identity to `user_id`; IdentityTaken when another user holds it."""
    row = {
        "provider": provider,
        "provider_user_id": provider_user_id,
        "user_id": user_id,
        "email": email.lower(),
        "created_at": now_ms(),
    }
    try:
        async with conn.begin_nested():
            await conn.execute(user_identities.insert().values(**row))
    except IntegrityError:
        existing = await get_identity(conn, provider, provider_user_id)
        if existing is None or existing["user_id"] != user_id:
            raise IdentityTaken(f"{provider}:{provider_user_id}") from None


def _invite_hash(code: str) -> str:
    return hashlib.sha256(code.strip().encode()).hexdigest()


async def create_invite(conn: AsyncConnection, created_by: UserId | None, ttl_ms: int) -> str:
    """A single-use sign-up code; only its hash is stored."""
    code = secrets.token_urlsafe(16)
    now = now_ms()
    await conn.execute(
        invites.insert().values(code_hash=_invite_hash(code), created_by=created_by, created_at=now, expires_at=now + ttl_ms)
    )
    return code


async def use_invite(conn: AsyncConnection, code: str) -> bool:
    """Spend `code`: False when unknown, expired or already used (one atomic UPDATE). Call it
    before creating the user, in the same transaction, so a refused sign-up leaves nothing."""
    result = await conn.execute(
        invites.update()
        .where(invites.c.code_hash == _invite_hash(code), invites.c.used_at.is_(None), invites.c.expires_at > now_ms())
        .values(used_at=now_ms())
    )
    return result.rowcount == 1


async def record_invitee(conn: AsyncConnection, code: str, user_id: UserId) -> None:
    await conn.execute(invites.update().where(invites.c.code_hash == _invite_hash(code)).values(used_by=user_id))
