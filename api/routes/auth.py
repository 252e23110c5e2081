"""Auth module: /api/remote-auth/* and /api/auth/*."""

from __future__ import annotations

from pydantic import Field
from starlette.requests import Request
from starlette.routing import Route

from api import ratelimit
from api.auth import COOKIE, Principal, check_not_cross_site, forget, hub_of, principal_from_token, session_response, set_session_cookie, start_session
from api.endpoint import endpoint
from api.errors import ApiError, bad_request
from api.passwords import hash_password, verify_password
from api.responses import json
from api.schemas import Body, Email, Name, Password, Url, public_user
from store.users import (
    EmailTaken,
    create_invite,
    create_user,
    extend_session,
    get_user_by_email,
    record_invitee,
    revoke_session,
    update_user,
    use_invite,
)

INVITE_TTL_DAYS = 7



class RegisterBody(Body):
    email: Email
    password: Password
    name: Name | None = None
    invite_code: str | None = Field(default=None, alias="inviteCode", max_length=100)  # LOOMI_REGISTRATION=invite


class InviteBody(Body):
    days: int = Field(default=INVITE_TTL_DAYS, ge=1, le=365)


def registration_closed(how: str) -> ApiError:
    """Sign-up refused by LOOMI_REGISTRATION (`owner-only`, or `invite` without a code)."""
    if how == "owner-only":
        return ApiError(403, "Registration is closed on this hub", "registration_closed", "LOOMI_REGISTRATION=owner-only")
    return ApiError(
        403, "Registration on this hub needs an invite", "invite_required", "ask the hub's owner for a code (`loomi invite`)"
    )


class LoginBody(Body):
    email: Email
    password: str = Field(min_length=1, max_length=256)


class UpdateUserBody(Body):
    name: Name | None = None
    avatar_url: Url | None = Field(default=None, alias="avatarUrl")


class SetTokenBody(Body):
    token: str = Field(min_length=10, max_length=4096)


@endpoint(body=RegisterBody, auth=False)
async def register(request: Request, body: RegisterBody):
    """Register a new user with email and password."""
    hub = hub_of(request)
    policy = hub.settings.registration_policy
    if policy == "owner-only" or (policy == "invite" and not body.invite_code):
        raise registration_closed(policy)
    password_hash = await hash_password(body.password)
    try:
        async with hub.engine.begin() as conn:
            if policy == "invite" and not await use_invite(conn, body.invite_code or ""):
                raise ApiError(403, "Invite code is unknown, expired or used", "invalid_invite")
            user = await create_user(
                conn, email=body.email, name=body.name or body.email.split("@")[0], password_hash=password_hash
            )
            if policy == "invite":
                await record_invitee(conn, body.invite_code or "", user["id"])
    except EmailTaken:
        raise bad_request("An account with this email already exists", "email_taken") from None
    token = await start_session(hub, user, "password")
    return session_response(request, user, token, 201)


@endpoint(body=LoginBody, auth=False)
async def login(request: Request, body: LoginBody):
    """Log in with email and password: `{user, token}` and a session cookie."""
    hub = hub_of(request)
    client = request.client.host if request.client else "unknown"
    keys = [f"email:{body.email}", f"ip:{client}"]
    wait = await ratelimit.retry_after(hub.redis, keys, hub.settings.login_max_failures * 4)
    wait = wait or await ratelimit.retry_after(hub.redis, keys[:1], hub.settings.login_max_failures)
    if wait:
        raise ApiError(429, "Too many failed logins", "rate_limited", f"retry in {wait} s", {"Retry-After": str(wait)})
    async with hub.engine.connect() as conn:
        user = await get_user_by_email(conn, body.email)
    if not await verify_password(user["password_hash"] if user else None, body.password):
        await ratelimit.record_failure(hub.redis, keys, hub.settings.login_window_seconds)
        raise ApiError(401, "Invalid email or password", "invalid_credentials")
    assert user is not None
    await ratelimit.clear(hub.redis, keys[:1])
    token = await start_session(hub, user, "password")
    return session_response(request, user, token)


@endpoint()
async def refresh(request: Request, user: Principal):
    """Extend the calling session and return a fresh token."""
    hub = hub_of(request)
    async with hub.engine.begin() as conn:
        await extend_session(conn, user.session_id, hub.tokens.ttl_seconds * 1000)
    token = hub.tokens.issue(user.user, user.session_id)
    response = json({"success": True, "token": token})
    set_session_cookie(response, hub, token)
    return response


@endpoint()
async def get_user(request: Request, user: Principal):
    """The current user."""
    return public_user(user.user)


@endpoint(body=UpdateUserBody)
async def put_user(request: Request, user: Principal, body: UpdateUserBody):
    """Update name or avatar."""
    values = body.model_dump(exclude_none=True)
    if not values:
        raise bad_request("Nothing to update", "invalid_input", "give name or avatarUrl")
    async with hub_of(request).engine.begin() as conn:
        updated = await update_user(conn, user.user["id"], **values)
    await forget(hub_of(request), user.id)
    return public_user(updated)


@endpoint()
async def subscription(request: Request, user: Principal):
    """Subscription of a self-hosted hub: everything, no expiry."""
    return {
        "plan": "self-hosted",
        "status": "active",
        "isActive": True,
        "currentPeriodEnd": None,
        "cancelAtPeriodEnd": False,
        "userId": user.id,
    }


@endpoint(body=SetTokenBody, auth=False)
async def set_token(request: Request, body: SetTokenBody):
    """Turn a bearer token into the session cookie (the desktop web view does this)."""
    principal = await principal_from_token(hub_of(request), body.token)
    if principal is None:
        raise ApiError(401, "Token is invalid, expired or revoked", "invalid_token")
    response = json({"success": True, "user": public_user(principal.user)})
    set_session_cookie(response, hub_of(request), body.token)
    return response


@endpoint(body=InviteBody)
async def invite(request: Request, user: Principal, body: InviteBody):
    """The owner makes a single-use sign-up code (LOOMI_REGISTRATION=invite); `loomi invite` does the same."""
    if not user.user.get("is_owner"):
        raise ApiError(403, "Only the hub's owner can invite", "forbidden")
    async with hub_of(request).engine.begin() as conn:
        code = await create_invite(conn, user.id, body.days * 86_400_000)
    return json({"code": code, "expiresInDays": body.days}, 201)


@endpoint(auth=False)
async def clear_auth_cookie(request: Request):
    """Log out: revoke the cookie's session and clear the cookie."""
    hub = hub_of(request)
    token = request.cookies.get(COOKIE)
    if token:
        check_not_cross_site(request)  # a cross-site page must not sign people out
    if token and (principal := await principal_from_token(hub, token)) is not None:
        async with hub.engine.begin() as conn:
            await revoke_session(conn, principal.session_id)
        await forget(hub, principal.id)  # other processes' cached principals too
    response = json({"success": True})
    response.delete_cookie(COOKIE, path="/")
    return response


routes = [
    Route("/api/remote-auth/register", register, methods=["POST"]),
    Route("/api/remote-auth/invites", invite, methods=["POST"]),
    Route("/api/remote-auth/login", login, methods=["POST"]),
    Route("/api/remote-auth/refresh", refresh, methods=["POST"]),
    Route("/api/remote-auth/user", get_user, methods=["GET"]),
    Route("/api/remote-auth/user", put_user, methods=["PUT"]),
    Route("/api/remote-auth/subscription", subscription, methods=["GET"]),
    Route("/api/auth/set-token", set_token, methods=["POST"]),
    Route("/api/auth/clear-auth-cookie", clear_auth_cookie, methods=["POST"]),
]
