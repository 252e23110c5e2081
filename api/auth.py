"""Who is calling: `Authorization: Bearer` (or `X-Api-Key`) when sent, else the session cookie.

An explicit token wins: a browser's cookie for one person must never override the token
another request carries. Cookie-authenticated writes must prove they are not a cross-site
form post (`check_not_cross_site`): a JSON body, or a same-origin `Origin`.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import Response

from api.errors import ApiError, unauthorized
from loomi.hub import Hub
from store.users import load_principal

log = logging.getLogger("loomi.api")
COOKIE = "loomi_session"
AUTH_VERSION = "loomi:auth:v:"  # + user id: a new value on logout, password or profile change
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MULTIPART_PATHS = frozenset({"/api/ai/v1/upload", "/api/ai/v1/files", "/api/ai/v1/audio/transcriptions", "/api/messages/import"})  # uploads


@dataclass(frozen=True)
class Principal:
    user: dict[str, Any]
    session_id: str
    token: str
    via: str = "bearer"  # bearer | cookie

    @property
    def id(self) -> str:
        return str(self.user["id"])


def hub_of(request: Request) -> Hub:
    return request.app.state.hub


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("x-api-key") or None


class PrincipalCache:
    """Principals by token, for a few seconds, so a request pays no token decode and no
    database round trip (through aiosqlite's thread, or a pool checkout) to learn who it is.

    Revocation stays immediate across processes: every hit is checked against the user's
    version in Redis (`AUTH_VERSION`, one GET), which `forget` changes on logout, password or
    profile change before the answer goes out. A version that Redis lost (a flush, a fresh
    embedded Redis) is set to a random value, so it can never match an entry cached before.
    Without Redis the cache is bypassed, never trusted.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self.entries: dict[str, tuple[float, bytes, Principal]] = {}  # token -> (deadline, version, principal)

    def get(self, token: str) -> tuple[bytes, Principal] | None:
        hit = self.entries.get(token)
        if hit is None:
            return None
        if hit[0] <= time.monotonic():
            self.entries.pop(token, None)
            return None
        return hit[1], hit[2]

    def put(self, token: str, version: bytes, principal: Principal, seconds: float) -> None:
        if seconds <= 0:
            return
        if len(self.entries) >= self.MAX_ENTRIES:
            self.entries.pop(next(iter(self.entries)))  # the oldest
        self.entries[token] = (time.monotonic() + seconds, version, principal)

    def drop_user(self, user_id: str) -> None:
        for token in [t for t, (_, _, p) in self.entries.items() if p.id == user_id]:
            self.entries.pop(token, None)


def _cache(hub: Hub) -> PrincipalCache | None:
    ttl = float(getattr(hub.settings, "auth_cache_seconds", 0) or 0)
    if ttl <= 0:
        return None
    cache = hub.extras.get("auth.principals")
    if cache is None:
        cache = hub.extras["auth.principals"] = PrincipalCache(ttl)
    return cache


async def _version(hub: Hub, user_id: str) -> bytes | None:
    """The user's auth version in Redis (made when missing); None when Redis cannot say."""
    key = AUTH_VERSION + user_id
    try:
        version = await hub.redis.get(key)
        if version is None:
            await hub.redis.set(key, secrets.token_hex(8).encode(), nx=True)
            version = await hub.redis.get(key)
    except (RedisError, OSError):
        return None
    return version


async def forget(hub: Hub, user_id: str) -> None:
    """Call after a logout, password or profile change is committed, before answering: every
    process's cached principals of this user stop being trusted at once."""
    cache = hub.extras.get("auth.principals")
    if cache is not None:
        cache.drop_user(user_id)
    try:
        await hub.redis.set(AUTH_VERSION + user_id, secrets.token_hex(8).encode())
    except (RedisError, OSError):
        log.warning("could not publish an auth change for a user: other processes trust their cache for up to %ss",
                    hub.settings.auth_cache_seconds)


async def _load_principal(hub: Hub, token: str) -> tuple[Principal, float] | None:
    """From the database: the principal and for how long (seconds) its token and session hold."""
    claims = hub.tokens.decode(token)
    if claims is None:
        return None
    async with hub.engine.connect() as conn:
        user = await load_principal(conn, claims.user_id, claims.session_id)
    if user is None or int(user["token_version"]) != claims.version:
        return None
    now = time.time()
    valid_for = min(claims.expires_at - now, int(user.get("session_expires_at") or 0) / 1000 - now)
    return Principal(user=user, session_id=claims.session_id, token=token), valid_for


async def principal_from_token(hub: Hub, token: str) -> Principal | None:
    cache = _cache(hub)
    if cache is None:
        loaded = await _load_principal(hub, token)
        return loaded[0] if loaded else None
    hit = cache.get(token)
    if hit is not None:
        version, principal = hit
        current = await _version(hub, principal.id)
        if current is not None and current == version:
            return principal
        cache.entries.pop(token, None)
    claims = hub.tokens.decode(token)
    if claims is None:
        return None
    version = await _version(hub, claims.user_id)  # read before the database: a change in between wins
    loaded = await _load_principal(hub, token)
    if loaded is None:
        return None
    principal, valid_for = loaded
    if version is not None:
        cache.put(token, version, principal, min(cache.ttl, valid_for))
    return principal


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _same_origin(request: Request, origin: str) -> bool:
    own = {f"{request.url.scheme}://{request.headers.get('host', '')}".lower()}
    public = hub_of(request).settings.public_url
    if public:
        own.add(public.rstrip("/").lower())
    return origin.rstrip("/").lower() in own


def check_not_cross_site(request: Request) -> None:
    """403 for a cookie-authenticated write a cross-site page could have sent.

    Browsers send HTML-form content types (text/plain, urlencoded, multipart) cross-site
    without asking; `application/json` needs a CORS preflight we never grant. So a write is
    accepted with a JSON body (multipart only on upload routes), or a same-origin `Origin`;
    a foreign `Origin` is refused whatever the body.
    """
    if request.method not in STATE_CHANGING:
        return
    origin = request.headers.get("origin")
    if origin is not None and origin != "null" and _same_origin(request, origin):
        return
    media = _media_type(request)
    json_body = media == "application/json" or media.endswith("+json")
    upload = media == "multipart/form-data" and request.url.path in MULTIPART_PATHS
    if origin is None and (json_body or upload):
        return
    raise ApiError(
        403,
        "Cross-site request refused",
        "cross_site_request",
        "a write authenticated by the session cookie needs Content-Type: application/json "
        "(multipart/form-data for uploads) or a same-origin Origin; or send Authorization: Bearer",
    )


async def authenticate(request: Request) -> Principal:
    """The bearer token when one is sent (never falling back to the cookie), else the cookie."""
    hub = hub_of(request)
    token, via = bearer_token(request), "bearer"
    if not token:
        token, via = request.cookies.get(COOKIE), "cookie"
    principal = await principal_from_token(hub, token) if token else None
    if principal is None:
        raise unauthorized("missing, expired or revoked token")
    if via == "cookie":
        check_not_cross_site(request)
        principal = Principal(principal.user, principal.session_id, principal.token, via)
    return principal


async def start_session(hub: Hub, user: dict[str, Any], kind: str) -> str:
    """A new login session and its token."""
    from store.users import create_session

    async with hub.engine.begin() as conn:
        session = await create_session(conn, user["id"], kind, hub.tokens.ttl_seconds * 1000)
    return hub.tokens.issue(user, session["id"])


def set_session_cookie(response: Response, hub: Hub, token: str) -> None:
    response.set_cookie(
        COOKIE,
        token,
        max_age=hub.tokens.ttl_seconds,
        httponly=True,
        samesite="lax",
        secure=hub.settings.cookie_secure,
        path="/",
    )


def session_response(request: Request, user: dict[str, Any], token: str, status: int = 200) -> Response:
    """`{user, token}` with the session cookie set: what every way of signing in answers."""
    from api.responses import json
    from api.schemas import public_user

    response = json({"user": public_user(user), "token": token}, status)
    set_session_cookie(response, hub_of(request), token)
    return response
