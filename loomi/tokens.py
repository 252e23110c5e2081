"""Hub tokens: HS256 JWTs with `sub`, `email`, `iat`, `exp`, plus the session id and the
user's token version, so a password change or a logout revokes older tokens."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any

import jwt


@dataclass(frozen=True)
class Claims:
    user_id: str
    email: str
    session_id: str
    version: int
    issued_at: int
    expires_at: int


def _signing_key(secret: str) -> bytes:
    return hmac.new(secret.encode(), b"loomi tokens v1", hashlib.sha256).digest()


class TokenService:
    def __init__(self, secret: str, old_secrets: list[str] | None = None, ttl_seconds: int = 90 * 86400) -> None:
        self._key = _signing_key(secret)
        self._verify_keys = [self._key, *(_signing_key(s) for s in old_secrets or [])]
        self.ttl_seconds = ttl_seconds

    def issue(self, user: dict[str, Any], session_id: str) -> str:
        now = int(time.time())
        payload = {
            "sub": user["id"],
            "email": user["email"],
            "name": user["name"],
            "sid": session_id,
            "ver": int(user["token_version"]),
            "iat": now,
            "exp": now + self.ttl_seconds,
        }
        return _shell_friendly(payload, self._key)

    def decode(self, token: str) -> Claims | None:
        """Claims of a token we signed and that has not expired; None otherwise."""
        for key in self._verify_keys:
            try:
                data = jwt.decode(
                    token, key, algorithms=["HS256"], options={"require": ["sub", "exp", "iat", "sid"]}
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError:
                return None
            return Claims(
                user_id=str(data["sub"]),
                email=str(data.get("email", "")),
                session_id=str(data["sid"]),
                version=int(data.get("ver", 0)),
                issued_at=int(data["iat"]),
                expires_at=int(data["exp"]),
            )
        return None


def _shell_friendly(payload: dict[str, Any], key: bytes) -> str:
    """Sign, padding the payload so its segment is plain base64 (no `-`, `_`, length % 4 == 0).

    The seed inspects tokens with `cut -d. -f2 | base64 -d`; coreutils rejects base64url and
    missing padding, so we pick a filler length that makes the segment valid for both.
    """
    token = ""
    for width in range(64):
        token = jwt.encode({**payload, "pad": "." * width} if width else payload, key, algorithm="HS256")
        segment = token.split(".")[1]
        if len(segment) % 4 == 0 and "-" not in segment and "_" not in segment:
            return token
    return token
