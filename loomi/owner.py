"""The local owner: the user a single-person hub runs as, and its token file.

`$LOOMI_HOME/token` holds the JWT base64-encoded (mode 0600) so the seed's
`TOKEN=$(cat ~/.openloomi/token | base64 -d)` works as written.
"""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path
from typing import Any

from loomi.hub import Hub
from loomi.tokens import Claims
from store.users import create_session, create_user, get_owner, load_principal

REFRESH_WHEN_DAYS_LEFT = 7


def token_path(hub: Hub) -> Path:
    return hub.settings.home / "token"


async def ensure_owner(hub: Hub) -> dict[str, Any]:
    async with hub.engine.begin() as conn:
        owner = await get_owner(conn)
        if owner is None:
            owner = await create_user(
                conn, email=hub.settings.owner_email, name=hub.settings.owner_name, password_hash=None, is_owner=True
            )
    return owner


def _write_private(path: Path, data: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


async def write_token_file(hub: Hub, owner: dict[str, Any]) -> str:
    async with hub.engine.begin() as conn:
        session = await create_session(conn, owner["id"], "local", hub.tokens.ttl_seconds * 1000)
    token = hub.tokens.issue(owner, session["id"])
    _write_private(token_path(hub), base64.b64encode(token.encode()).decode())
    return token


async def ensure_token_file(hub: Hub) -> str:
    """Keep a valid token file; issue a new token when missing, revoked or near expiry."""
    owner = await ensure_owner(hub)
    path = token_path(hub)
    if path.exists():
        try:
            token = base64.b64decode(path.read_text().strip()).decode()
        except ValueError:
            token = ""
        claims = hub.tokens.decode(token) if token else None
        fresh = claims and claims.expires_at - time.time() > REFRESH_WHEN_DAYS_LEFT * 86400
        if fresh and await _still_valid(hub, claims):
            os.chmod(path, 0o600)
            return token
    return await write_token_file(hub, owner)


async def _still_valid(hub: Hub, claims: Claims) -> bool:
    """The token's session is not revoked and the password has not changed since (api/auth.py
    makes the same check on every request)."""
    async with hub.engine.connect() as conn:
        user = await load_principal(conn, claims.user_id, claims.session_id)
    return user is not None and int(user["token_version"]) == claims.version
