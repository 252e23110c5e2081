"""Credentials at rest: AES-256-GCM with a key id, so keys can rotate.

The key is derived from LOOMI_SECRET_KEY with HKDF; old secrets (LOOMI_OLD_SECRET_KEYS) still
decrypt, and anything read with an old key is re-encrypted with the current one on next write.
The row id is bound as associated data, so a ciphertext copied to another account fails.
"""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Callable

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from loomi.logs import remember_secrets


class CredentialError(Exception):
    """A ciphertext that no known key opens."""


def _derive(secret: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"loomi credentials v1").derive(
        secret.encode()
    )


def _key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:12]


class Vault:
    def __init__(
        self, secret: str, old_secrets: list[str] | None = None, reload: Callable[[], tuple[str, list[str]]] | None = None
    ) -> None:
        """`reload` gives the keys again (secret, old secrets) when a ciphertext names a key id this
        Vault does not know: a key generated into LOOMI_HOME was replaced (`loomi keys rotate
        --new-key`) while this process ran, and it picks the new one up instead of failing."""
        self._reload = reload
        self._use(secret, old_secrets or [])

    def _use(self, secret: str, old_secrets: list[str]) -> None:
        keys = [_derive(s) for s in [secret, *old_secrets]]
        remember_secrets([secret, *old_secrets])
        self.current_kid = _key_id(keys[0])
        self._keys = {_key_id(k): AESGCM(k) for k in keys}

    def encrypt(self, value: dict, bound_to: str) -> str:
        remember_secrets(value)  # whatever we seal is never printed in a log line
        nonce = os.urandom(12)
        sealed = self._keys[self.current_kid].encrypt(nonce, orjson.dumps(value), bound_to.encode())
        return f"{self.current_kid}.{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, bound_to: str) -> dict:
        kid, _, body = token.partition(".")
        if kid not in self._keys and self._reload is not None:
            self._use(*self._reload())
        aead = self._keys.get(kid)
        if aead is None:
            raise CredentialError(f"credentials were sealed with unknown key {kid}")
        raw = base64.urlsafe_b64decode(body)
        try:
            value = orjson.loads(aead.decrypt(raw[:12], raw[12:], bound_to.encode()))
        except Exception:
            raise CredentialError("credentials do not open with their key") from None
        remember_secrets(value)  # whatever we open is never printed in a log line
        return value

    def needs_rotation(self, token: str) -> bool:
        return not token.startswith(self.current_kid + ".")
