"""The one rule for text the store writes: NUL characters are removed.

PostgreSQL cannot hold U+0000 in `text` or in JSON (COPY fails, so one message would block its
whole batch); SQLite can. Removing it before any write keeps both databases storing the same
text. NUL carries no meaning in chat text, so nothing a person wrote is lost.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, TypeVar

import orjson

T = TypeVar("T")
NUL = "\x00"


def without_nul(value: T) -> T:
    """`value` with NUL removed from every string in it: dict keys and values, list items,
    dataclass fields. Returns the same object when there is nothing to remove (the common case,
    found by one orjson pass: ~10x cheaper than walking the object in Python)."""
    try:
        if b"\\u0000" not in orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS):
            return value
    except (TypeError, orjson.JSONEncodeError):
        pass  # something orjson does not serialize: walk it
    return _clean(value)[0]  # type: ignore[no-any-return]


def _clean(value: Any) -> tuple[Any, bool]:
    """(cleaned value, changed?)."""
    if isinstance(value, str):
        if NUL in value and not isinstance(value, enum.Enum):
            return value.replace(NUL, ""), True
        return value, False
    if isinstance(value, dict):
        changed = False
        out = {}
        for key, item in value.items():
            new_key, key_changed = _clean(key)
            new_item, item_changed = _clean(item)
            out[new_key] = new_item
            changed = changed or key_changed or item_changed
        return (out, True) if changed else (value, False)
    if isinstance(value, (list, tuple)):
        items = [_clean(item) for item in value]
        if not any(changed for _, changed in items):
            return value, False
        return type(value)(item for item, _ in items), True
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        updates = {}
        for field in dataclasses.fields(value):
            new, changed = _clean(getattr(value, field.name))
            if changed:
                updates[field.name] = new
        return (dataclasses.replace(value, **updates), True) if updates else (value, False)
    return value, False
