"""Our ids: a NewType per kind, time-ordered so inserts append to the index.

Random UUID keys cost 2-4x on batched SQLite writes (notes/limits.md); a millisecond time
prefix plus randomness keeps ids unique across machines and cheap to index.
"""

from __future__ import annotations

import os
import time
from typing import NewType

UserId = NewType("UserId", str)
SessionId = NewType("SessionId", str)
AccountId = NewType("AccountId", str)
MessageId = NewType("MessageId", str)

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def _b32(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        value, digit = divmod(value, 32)
        out.append(_ALPHABET[digit])
    return "".join(reversed(out))


def new_id(prefix: str) -> str:
    """`prefix_` + 10 chars of milliseconds + 16 random chars (80 bits)."""
    millis = time.time_ns() // 1_000_000
    return f"{prefix}_{_b32(millis, 10)}{_b32(int.from_bytes(os.urandom(10), 'big'), 16)}"


def now_ms() -> int:
    return time.time_ns() // 1_000_000
