"""User module: /api/user/* and /api/remote-feedback."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field
from starlette.requests import Request
from starlette.routing import Route

from api.auth import Principal, forget, hub_of, set_session_cookie, start_session
from api.endpoint import endpoint
from api.errors import ApiError, bad_request
from api.passwords import hash_password, verify_password
from api.responses import json
from api.schemas import Body, Email, Name, Password, Url
from loomi.owner import write_token_file
from store.ids import new_id, now_ms
from store.schema import feedback
from store.users import EmailTaken, set_password, update_user

IDENTITY_FIELDS = ("timezone", "language", "bio", "title", "company")


class IdentityBody(Body):
    name: Name | None = None
    email: Email | None = None
    avatar_url: Url | None = Field(default=None, alias="avatarUrl")
    timezone: str | None = Field(default=None, max_length=64)
    language: str | None = Field(default=None, max_length=35)
    bio: str | None = Field(default=None, max_length=2000)
    title: str | None = Field(default=None, max_length=200)
    company: str | None = Field(default=None, max_length=200)
    aliases: list[Annotated[str, Field(min_length=1, max_length=100)]] | None = Field(default=None, max_length=20)
    current_password: str | None = Field(default=None, alias="currentPassword", max_length=256)  # to change email


class PasswordBody(Body):
    current_password: str | None = Field(default=None, alias="currentPassword", max_length=256)
    new_password: Password = Field(alias="newPassword")


class FeedbackBody(Body):
    content: str = Field(min_length=1, max_length=10_000)
    email: Email | None = None


def identity(user: dict[str, Any]) -> dict[str, Any]:
    extra = user.get("identity") or {}
    return {
        "id": user["id"],
        "email": user["email"],
        "name": user["name"],
        "avatarUrl": user.get("avatar_url"),
        **{key: extra.get(key) for key in IDENTITY_FIELDS},
        "aliases": extra.get("aliases") or [],  # other names the person goes by: insights' mentions
        "hasPassword": bool(user.get("password_hash")),
        "createdAt": user["created_at"],
        "updatedAt": user["updated_at"],
    }


@endpoint()
async def get_identity(request: Request, user: Principal):
    """The user's identity: profile fields the assistant uses."""
    return identity(user.user)


@endpoint(body=IdentityBody)
async def put_identity(request: Request, user: Principal, body: IdentityBody):
    """Update identity fields; only the fields given change."""
    given = body.model_dump(exclude_unset=True)
    current_password = given.pop("current_password", None)
    if given.get("email") is not None and given["email"].lower() != user.user["email"]:
        await _check_password_for_email_change(user, current_password)
    if not given:
        raise bad_request("Nothing to update", "invalid_input", "give at least one identity field")
    columns = {key: given[key] for key in ("name", "email", "avatar_url") if key in given and given[key] is not None}
    extra = {**(user.user.get("identity") or {}), **{k: given[k] for k in IDENTITY_FIELDS if k in given}}
    if "aliases" in given:
        extra["aliases"] = list(dict.fromkeys(a.strip() for a in given["aliases"] or [] if a.strip()))
    try:
        async with hub_of(request).engine.begin() as conn:
            updated = await update_user(conn, user.user["id"], identity=extra, **columns)
    except EmailTaken:
        raise bad_request("An account with this email already exists", "email_taken") from None
    await forget(hub_of(request), user.id)
    return identity(updated)


async def _check_password_for_email_change(user: Principal, current_password: str | None) -> None:
    """An email change needs the current password: a stolen session must not be able to move
    the account to an address its thief controls (and emails are not verified here)."""
    current_hash = user.user.get("password_hash")
    if current_hash is None:
        raise ApiError(
            403, "Set a password before changing your email", "password_required", "PUT /api/user/password, then try again"
        )
    if not current_password:
        raise bad_request("Current password is required to change the email", "invalid_input", "currentPassword: required")
    if not await verify_password(current_hash, current_password):
        raise ApiError(403, "Current password is wrong", "invalid_credentials")


@endpoint(body=PasswordBody)
async def put_password(request: Request, user: Principal, body: PasswordBody):
    """Change the password. Every older token stops working; a fresh one is returned."""
    hub = hub_of(request)
    current_hash = user.user.get("password_hash")
    if current_hash is not None:
        if not body.current_password:
            raise bad_request("Current password is required", "invalid_input", "currentPassword: required")
        if not await verify_password(current_hash, body.current_password):
            raise ApiError(403, "Current password is wrong", "invalid_credentials")
    new_hash = await hash_password(body.new_password)
    async with hub.engine.begin() as conn:
        version = await set_password(conn, user.user["id"], new_hash)
    await forget(hub, user.id)  # every older token stops working, in every process, now
    fresh_user = {**user.user, "password_hash": new_hash, "token_version": version}
    token = await start_session(hub, fresh_user, "password")
    if fresh_user.get("is_owner"):
        await write_token_file(hub, fresh_user)
    response = json({"success": True, "token": token})
    set_session_cookie(response, hub, token)
    return response


@endpoint()
async def entitlements(request: Request, user: Principal):
    """What this user may use: a self-hosted hub grants everything."""
    return {
        "plan": "self-hosted",
        "features": {
            "ai": True,
            "integrations": True,
            "insights": True,
            "rag": True,
            "workspace": True,
        },
        "limits": {"connectedAccounts": None, "messagesPerMonth": None, "storageBytes": None},
    }


@endpoint(body=FeedbackBody)
async def remote_feedback(request: Request, user: Principal, body: FeedbackBody):
    """Store feedback from the user."""
    row = {
        "id": new_id("fb"),
        "user_id": user.id,
        "email": body.email or user.user["email"],
        "content": body.content,
        "created_at": now_ms(),
    }
    async with hub_of(request).engine.begin() as conn:
        await conn.execute(feedback.insert().values(**row))
    return {"success": True, "id": row["id"]}


routes = [
    Route("/api/user/identity", get_identity, methods=["GET"]),
    Route("/api/user/identity", put_identity, methods=["PUT"]),
    Route("/api/user/password", put_password, methods=["PUT"]),
    Route("/api/user/entitlements", entitlements, methods=["GET"]),
    Route("/api/remote-feedback", remote_feedback, methods=["POST"]),
]
