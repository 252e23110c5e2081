"""Auth module, signing in with a provider (GitHub, Google): start, callback, desktop poll, exchange."""

from __future__ import annotations

import hmac
import html
import logging

import httpx
import orjson
from pydantic import Field
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from api.auth import authenticate, forget, hub_of, session_response, set_session_cookie, start_session
from api.endpoint import endpoint
from api.errors import ApiError, bad_request, not_found
from api.responses import json
from api.schemas import Body, public_user
from config.platforms import PLATFORMS, Platform
from config.settings import PlatformSettings
from connectors import oauth
from connectors.login import EmailUnverified, LoginProfile, LoginProvider, LoginRefused, make_login_provider
from loomi.hub import Hub
from store.users import (
    EmailTaken,
    IdentityTaken,
    add_identity,
    create_user,
    get_identity,
    get_user,
    get_user_by_email,
    identities_of,
    load_principal,
    update_user,
)

log = logging.getLogger("loomi.auth")


class ExchangeBody(Body):
    code: str = Field(min_length=1, max_length=2048)
    state: str | None = Field(default=None, max_length=256)


class PollBody(Body):
    state: str | None = Field(default=None, max_length=256)


class StartBody(Body):
    link: bool = False  # signed in already: bind this provider identity to the calling user


def login_provider(request: Request):
    """The OAuth login provider named in the path: 404 unknown, 400 not configured."""
    name = request.path_params["provider"].lower()
    platform = PLATFORMS.get(name)
    if platform is None or not platform.oauth_login:
        raise not_found(f"Unknown OAuth provider '{name}'", "unknown_provider")
    settings = hub_of(request).settings.platform(name)
    if not settings.oauth_configured:
        raise ApiError(
            400,
            f"OAuth provider '{name}' is not configured",
            "provider_not_configured",
            f"set LOOMI_{name.upper()}_CLIENT_ID and LOOMI_{name.upper()}_CLIENT_SECRET",
        )
    return platform, settings


def _not_available(name: str) -> ApiError:
    return ApiError(
        400,
        f"Signing in with '{name}' is not available in this hub yet",
        "provider_not_available",
        "its connector has not been installed",
    )


# ---- signing in with a provider (GitHub, Google) ---------------------------------------------
#
# Start -> the browser signs in at the provider -> callback (or the client's own /exchange)
# -> the hub user this provider identity (provider + its user id) is bound to, or a new user
# -> a session. An identity is bound to an existing account only when the person signed in to
# it asks to link (start with `{"link": true}`), never by email alone: anyone can register an
# email here without proving it, so matching by email would hand the victim's later sign-in to
# whoever registered first. The desktop app, which never sees the callback, polls with the
# state. The record it polls holds ids, never a token: the token is issued when it is collected.

LOGIN_USER = ""  # the user an OAuth state carries for a sign-in: nobody is signed in yet
LINK_PREFIX = "link:"  # ... and for linking: `link:<user id>` of the person who asked
RESULT_TTL_SECONDS = 120  # how long a finished sign-in waits for its poller
BIND_COOKIE = "loomi_oauth_login"  # ties a callback to the browser that started the flow
CALLBACK_PATH = "/api/auth/callback"
NO_STORE = {"Cache-Control": "no-store"}

# pending -> terminal, once: a replayed callback cannot overwrite a finished sign-in
_FINISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""

SIGNED_IN_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Signed in</title></head>
<body><p>Signed in as {email}, you can close this window.</p></body></html>
"""


def login_key(state: str) -> str:
    """What a poller reads for `state` (next to the keys of workers/keys.py)."""
    return f"loomi:oauth-login:{state}"


def _pending(name: str) -> bytes:
    return orjson.dumps({"provider": name, "status": "pending"})


async def _finish(hub: Hub, name: str, state: str, record: dict) -> None:
    await hub.redis.eval(_FINISH, 1, login_key(state), _pending(name), orjson.dumps(record), RESULT_TTL_SECONDS)


def _invalid_state(cause: str = "OAuth state is unknown, expired or already used") -> ApiError:
    return bad_request("Invalid or expired sign-in state", "invalid_state", cause)


def _provider(request: Request) -> tuple[Platform, PlatformSettings, LoginProvider]:
    platform, settings = login_provider(request)
    if platform.login is None:
        raise _not_available(platform.name)
    return platform, settings, make_login_provider(platform.name, settings)


def _callback_uri(request: Request, name: str, settings: PlatformSettings) -> str:
    if settings.redirect_uri:
        return settings.redirect_uri
    base = hub_of(request).settings.public_url or f"{request.url.scheme}://{request.url.netloc}"
    return f"{base.rstrip('/')}{CALLBACK_PATH}/{name}"


async def _consume(hub: Hub, name: str, state: str | None) -> oauth.PendingFlow:
    """The sign-in or link flow behind `state`, once (a connect-account flow is not one)."""
    if not state:
        raise _invalid_state("state is required")
    try:
        flow = await oauth.consume_state(hub.redis, state, name, None)
        if flow.user_id != LOGIN_USER and not flow.user_id.startswith(LINK_PREFIX):
            raise oauth.OAuthError("invalid_state", "OAuth state does not belong to this flow")
        return flow
    except oauth.OAuthError as err:
        error = _invalid_state(str(err))
        await _finish(hub, name, state, {"provider": name, "status": "error", "http": error.status, **error.body()})
        raise error from None


def _linking(flow: oauth.PendingFlow) -> str | None:
    """The user who asked to link this provider, or None for a plain sign-in."""
    return flow.user_id.removeprefix(LINK_PREFIX) if flow.user_id.startswith(LINK_PREFIX) else None


def _account_exists(name: str) -> ApiError:
    return ApiError(
        409,
        "An account with this email already exists",
        "account_exists",
        f"sign in to it with its password, then link {name} from there "
        f'(POST /api/remote-auth/oauth/{name} with {{"link": true}})',
    )


async def _created_by_a_provider(conn: AsyncConnection, user: dict) -> bool:
    """Accounts made by a provider sign-in before identities were recorded (migration 0004):
    no password, not the local owner, no identity yet. Nobody else can have made one."""
    return user["password_hash"] is None and not user["is_owner"] and not await identities_of(conn, user["id"])


async def _user_for(hub: Hub, name: str, profile: LoginProfile, link_to: str | None = None) -> dict:
    """The user bound to this provider identity; else (linking) the caller, (signing in) a new
    user, or 409 when the email belongs to an account this identity was never linked to."""
    pid = profile.provider_user_id
    async with hub.engine.begin() as conn:
        identity = await get_identity(conn, name, pid)
        if link_to is not None:
            if identity is not None and identity["user_id"] != link_to:
                raise ApiError(409, f"This {name} account is linked to another user", "identity_taken")
            if identity is None:
                await add_identity(conn, name, pid, link_to, profile.email)
            user = await get_user(conn, link_to)
            if user is None:
                raise ApiError(401, "The account that asked to link is gone", "invalid_token")
        elif identity is not None:
            user = await get_user(conn, identity["user_id"])
            assert user is not None  # identities are deleted with their user
        else:
            user = await get_user_by_email(conn, profile.email)
            if user is None:
                policy = hub.settings.registration_policy
                if policy != "open":  # a new account is a sign-up: invites go through /register
                    from api.routes.auth import registration_closed

                    raise registration_closed(policy)
                try:
                    user = await create_user(conn, email=profile.email, name=profile.name, password_hash=None)
                except EmailTaken:  # a concurrent first sign-in created it a moment ago
                    identity = await get_identity(conn, name, pid)
                    if identity is None:
                        raise _account_exists(name) from None
                    user = await get_user(conn, identity["user_id"])
                    assert user is not None
            elif not await _created_by_a_provider(conn, user):
                raise _account_exists(name)
            try:
                await add_identity(conn, name, pid, user["id"], profile.email)
            except IdentityTaken:
                raise _account_exists(name) from None
        if profile.avatar_url and not user.get("avatar_url"):
            user = await update_user(conn, user["id"], avatar_url=profile.avatar_url)
    await forget(hub, user["id"])  # a profile that changed: cached principals reload
    return user


async def _sign_in(
    hub: Hub, platform: Platform, settings: PlatformSettings, provider: LoginProvider, flow: oauth.PendingFlow, code: str
) -> tuple[dict, str]:
    name = platform.name
    try:
        profile = await provider.profile(await oauth.exchange_code(platform, settings, flow, code))
    except (oauth.OAuthError, LoginRefused) as err:
        raise bad_request(f"{name} refused the sign-in", err.code, str(err)) from None
    except httpx.HTTPError as err:
        raise bad_request(f"{name} could not be reached", "provider_unreachable", type(err).__name__) from None
    except EmailUnverified as err:
        raise ApiError(403, f"Your {name} account has no verified email", "email_unverified", str(err)) from None
    link_to = _linking(flow)
    user = await _user_for(hub, name, profile, link_to)
    token = await start_session(hub, user, "oauth")
    what = "linked" if link_to else "signed in with"
    log.info("%s %s: user %s (%s id %s)", what, name, user["id"], name, profile.provider_user_id)
    return user, token


@endpoint(body=StartBody, auth=False)
async def oauth_provider(request: Request, body: StartBody):
    """Start signing in with a provider: `{url, state}`; open `url` in a browser, then poll.
    Signed in, `{"link": true}` binds the provider account to yours instead."""
    platform, settings, _ = _provider(request)
    hub = hub_of(request)
    owner = LINK_PREFIX + (await authenticate(request)).id if body.link else LOGIN_USER
    url, state = await oauth.start(
        hub.redis, platform, settings, user_id=owner, redirect_uri=_callback_uri(request, platform.name, settings)
    )
    await hub.redis.set(login_key(state), _pending(platform.name), ex=oauth.STATE_TTL_SECONDS)
    response = json({"url": url, "state": state}, headers=NO_STORE)
    response.set_cookie(
        BIND_COOKIE,
        state,
        max_age=oauth.STATE_TTL_SECONDS,
        httponly=True,
        samesite="lax",
        secure=hub.settings.cookie_secure,
        path=CALLBACK_PATH,
    )
    return response


class CallbackQuery(Body):
    code: str | None = Field(default=None, max_length=2048)
    state: str | None = Field(default=None, max_length=256)
    error: str | None = Field(default=None, max_length=256)


@endpoint(query=CallbackQuery, auth=False)
async def oauth_callback(request: Request, query: CallbackQuery):
    """The provider's redirect: sign in, leave the result for the poller, say so."""
    platform, settings, provider = _provider(request)
    hub = hub_of(request)
    name = platform.name
    flow = await _consume(hub, name, query.state)
    assert query.state is not None
    started_here = hmac.compare_digest(request.cookies.get(BIND_COOKIE, "").encode(), query.state.encode())
    try:
        if _linking(flow) and not started_here:  # else a link URL sent to a victim binds their account to the sender's
            raise _invalid_state("a link must finish in the browser that started it")
        if query.error or not query.code:
            raise bad_request(f"{name} refused the sign-in", "oauth_denied", query.error or "the redirect carried no code")
        user, token = await _sign_in(hub, platform, settings, provider, flow, query.code)
    except ApiError as err:
        await _finish(hub, name, query.state, {"provider": name, "status": "error", "http": err.status, **err.body()})
        raise
    claims = hub.tokens.decode(token)
    assert claims is not None
    await _finish(
        hub, name, query.state, {"provider": name, "status": "complete", "user_id": user["id"], "session_id": claims.session_id}
    )
    if "application/json" in request.headers.get("accept", ""):
        response: Response = json({"user": public_user(user), "token": token}, headers=NO_STORE)
    else:
        response = HTMLResponse(SIGNED_IN_PAGE.format(email=html.escape(user["email"])), headers=NO_STORE)
    # Only the browser that started the flow gets the cookie: otherwise anyone could send a
    # victim a callback link for the sender's own account (login CSRF). Desktop apps poll.
    if started_here:
        set_session_cookie(response, hub, token)
        response.delete_cookie(BIND_COOKIE, path=CALLBACK_PATH)
    return response


@endpoint(body=PollBody, auth=False)
async def poll_provider(request: Request, body: PollBody):
    """Poll a sign-in: `{status: pending}`, then `{status: complete, token, user}` once."""
    platform, _, _ = _provider(request)
    hub = hub_of(request)
    if not body.state:
        raise _invalid_state("state is required")
    raw = await hub.redis.get(login_key(body.state))
    record = orjson.loads(raw) if raw else None
    if record is None or record.get("provider") != platform.name:
        raise _invalid_state("unknown, expired or already collected")
    if record["status"] == "pending":
        return json({"status": "pending"}, headers=NO_STORE)
    if await hub.redis.getdel(login_key(body.state)) is None:  # another poll collected it
        raise _invalid_state("already collected")
    if record["status"] == "error":
        raise ApiError(int(record["http"]), record["error"], record.get("code"), record.get("cause"))
    async with hub.engine.connect() as conn:
        user = await load_principal(conn, record["user_id"], record["session_id"])
    if user is None:
        raise ApiError(401, "The sign-in session has ended", "invalid_token")
    token = hub.tokens.issue(user, record["session_id"])
    response = json({"status": "complete", "token": token, "user": public_user(user)}, headers=NO_STORE)
    set_session_cookie(response, hub, token)
    return response


@endpoint(body=ExchangeBody, auth=False)
async def oauth_exchange(request: Request, body: ExchangeBody):
    """Exchange a code the client caught itself for `{user, token}`."""
    platform, settings, provider = _provider(request)
    hub = hub_of(request)
    flow = await _consume(hub, platform.name, body.state)
    assert body.state is not None
    try:
        if (link_to := _linking(flow)) and (await authenticate(request)).id != link_to:
            raise _invalid_state("a link must be finished by the user who started it")
        user, token = await _sign_in(hub, platform, settings, provider, flow, body.code)
    finally:
        await hub.redis.delete(login_key(body.state))  # this client has it: nothing to poll
    response = session_response(request, user, token)
    response.headers.update(NO_STORE)
    return response


routes = [
    Route("/api/remote-auth/oauth/{provider}", oauth_provider, methods=["POST"]),
    Route("/api/remote-auth/oauth/{provider}/exchange", oauth_exchange, methods=["POST"]),
    Route("/api/auth/poll-{provider}", poll_provider, methods=["POST"]),
    Route("/api/auth/callback/{provider}", oauth_callback, methods=["GET"]),
]
