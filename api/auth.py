"""Who is calling: the session cookie first, then `Authorization: Bearer`, as openloomi does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from api.errors import unauthorized
from loomi.hub import Hub
from store.users import load_principal

COOKIE = "loomi_session"


@dataclass(frozen=True)
class Principal:
    user: dict[str, Any]
    session_id: str
    token: str

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


async def principal_from_token(hub: Hub, token: str) -> Principal | None:
    claims = hub.tokens.decode(token)
    if claims is None:
        return None
    async with hub.engine.connect() as conn:
        user = await load_principal(conn, claims.user_id, claims.session_id)
    if user is None or int(user["token_version"]) != claims.version:
        return None
    return Principal(user=user, session_id=claims.session_id, token=token)


async def authenticate(request: Request) -> Principal:
    hub = hub_of(request)
    for token in (request.cookies.get(COOKIE), bearer_token(request)):
        if token:
            principal = await principal_from_token(hub, token)
            if principal is not None:
                return principal
    raise unauthorized("missing, expired or revoked token")


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
