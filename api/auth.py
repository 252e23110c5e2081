"""Who is calling: `Authorization: Bearer` (or `X-Api-Key`) when sent, else the session cookie.

An explicit token wins: a browser's cookie for one person must never override the token
another request carries. Cookie-authenticated writes must prove they are not a cross-site
form post (`check_not_cross_site`): a JSON body, or a same-origin `Origin`.
"""

from __future__ import annotations

import asyncio
import contextlib
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
AUTH_CHANNEL = "loomi:auth:changed"  # "<user id>|<nonce>": drop that user's cached principals
AUTH_ACK = "loomi:auth:ack:"  # + nonce: one push per process that has dropped them
ACK_SECONDS = 2.0  # a process that does not acknowledge by then is hung; its entries expire anyway
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# upload routes, where a cookie-authenticated multipart body is fine: the app's larger body limits
# (api.app.body_limits, as app.state.upload_paths); this set when an app does not say
MULTIPART_PATHS = frozenset({"/api/ai/v1/upload", "/api/ai/v1/files", "/api/ai/v1/audio/transcriptions", "/api/messages/import"})


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
    """Principals by token, for a few seconds, so a request pays no token decode, no database
    round trip (through aiosqlite's thread, or a pool checkout) and no Redis round trip to
    learn who it is.

    Revocation stays immediate across processes: `forget` (logout, password or profile
    change, after the database commit) publishes the user on AUTH_CHANNEL and returns only
    once every subscribed process has dropped that user's entries and acknowledged it. Entries
    are trusted only while this process's subscription is live (until then, and whenever the
    Redis connection drops, every request asks the database), and a principal loaded while an
    invalidation arrived is not cached, so a load that raced a revocation cannot outlive it.
    """

    MAX_ENTRIES = 10_000

    def __init__(self, hub: Hub, ttl_seconds: float) -> None:
        self.hub = hub
        self.ttl = ttl_seconds
        self.entries: dict[str, tuple[float, Principal]] = {}  # token -> (deadline, principal)
        self.generation = 0  # bumped by every invalidation received
        self.live = False  # subscribed: invalidations reach us
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._listen(), name="auth-invalidations")

    def get(self, token: str) -> Principal | None:
        if not self.live:
            return None
        hit = self.entries.get(token)
        if hit is None:
            return None
        if hit[0] <= time.monotonic():
            self.entries.pop(token, None)
            return None
        return hit[1]

    def put(self, token: str, principal: Principal, seconds: float, generation: int) -> None:
        if seconds <= 0 or not self.live or generation != self.generation:
            return
        if len(self.entries) >= self.MAX_ENTRIES:
            self.entries.pop(next(iter(self.entries)))  # the oldest
        self.entries[token] = (time.monotonic() + seconds, principal)

    def drop_user(self, user_id: str) -> None:
        self.generation += 1
        for token in [t for t, (_, p) in self.entries.items() if p.id == user_id]:
            self.entries.pop(token, None)

    async def _listen(self) -> None:
        while True:
            pubsub = self.hub.redis.pubsub()
            try:
                await pubsub.subscribe(AUTH_CHANNEL)
                async for message in pubsub.listen():
                    if message["type"] == "subscribe":
                        self.live = True
                    elif message["type"] == "message":
                        user_id, _, nonce = bytes(message["data"]).decode().partition("|")
                        self.drop_user(user_id)
                        async with self.hub.redis.pipeline(transaction=False) as pipe:
                            pipe.rpush(AUTH_ACK + nonce, b"1")
                            pipe.expire(AUTH_ACK + nonce, 30)
                            await pipe.execute()
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - Redis went away: trust nothing until re-subscribed
                log.warning("auth invalidations: %s; the principal cache is off until Redis is back", type(err).__name__)
            finally:
                self.live = False
                self.entries.clear()
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(1.0)

    async def aclose(self) -> None:
        self.live = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None


def _cache(hub: Hub) -> PrincipalCache | None:
    ttl = float(getattr(hub.settings, "auth_cache_seconds", 0) or 0)
    if ttl <= 0:
        return None
    cache = hub.extras.get("auth.principals")
    if cache is None:
        cache = hub.extras["auth.principals"] = PrincipalCache(hub, ttl)
    cache.start()
    return cache


async def forget(hub: Hub, user_id: str) -> None:
    """Call after a logout, password or profile change is committed, before answering: returns
    once every process has dropped this user's cached principals (or ACK_SECONDS passed)."""
    cache = hub.extras.get("auth.principals")
    if cache is not None:
        cache.drop_user(user_id)
    nonce = secrets.token_hex(8)
    try:
        receivers = int(await hub.redis.publish(AUTH_CHANNEL, f"{user_id}|{nonce}".encode()))
        deadline = time.monotonic() + ACK_SECONDS
        acked = 0
        while acked < receivers:
            left = deadline - time.monotonic()
            if left <= 0 or await hub.redis.blpop([AUTH_ACK + nonce], timeout=left) is None:
                log.warning("auth change: %d of %d processes acknowledged in %ss", acked, receivers, ACK_SECONDS)
                break
            acked += 1
        await hub.redis.delete(AUTH_ACK + nonce)
    except (RedisError, OSError):
        log.warning("could not publish an auth change: other processes trust their cache for up to %ss",
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
    if cache is not None:
        hit = cache.get(token)
        if hit is not None:
            return hit
    generation = cache.generation if cache is not None else 0
    loaded = await _load_principal(hub, token)
    if loaded is None:
        return None
    principal, valid_for = loaded
    if cache is not None:
        cache.put(token, principal, min(cache.ttl, valid_for), generation)
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
    uploads = getattr(request.app.state, "upload_paths", MULTIPART_PATHS)
    upload = media == "multipart/form-data" and request.url.path.rstrip("/") in uploads
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
