"""Shared request pieces and the user's public shape."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,255}$")


def _email(value: str) -> str:
    value = value.strip()
    if not _EMAIL.match(value):
        raise ValueError("not an email address")
    return value.lower()


Email = Annotated[str, Field(max_length=320), AfterValidator(_email)]
Password = Annotated[str, Field(min_length=8, max_length=256)]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Url = Annotated[str, Field(max_length=2000, pattern=r"^https?://")]

_INT64 = re.compile(r"-?[0-9]{1,19}")


def parse_int64(text: str) -> int | None:
    """A decimal integer that fits in 64 bits, ASCII digits only (`str.isdigit` accepts '²',
    which `int` then refuses); None otherwise. For numbers inside cursors and path segments."""
    if not _INT64.fullmatch(text):
        return None
    value = int(text)
    return value if -(1 << 63) <= value < (1 << 63) else None


class Body(BaseModel):
    """Request bodies accept camelCase (openloomi's clients) and snake_case, ignore extras."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", str_strip_whitespace=False)


def public_user(user: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": user["id"],
        "email": user["email"],
        "name": user["name"],
        "avatarUrl": user.get("avatar_url"),
        "type": "owner" if user.get("is_owner") else "user",
    }
