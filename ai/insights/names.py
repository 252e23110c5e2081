"""The person's names, and which messages mention them.

Names are the user's name, the display name of each of their accounts, and the aliases they set
(`PUT /api/user/identity {aliases}`). Latin names match as whole words, with or without `@`, in
any case ("Alex" is not in "Alexandra"); CJK names match as substrings (no word breaks).
"""

from __future__ import annotations

import re
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from store.schema import accounts, users

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uac00-\ud7af]")


class Names:
    def __init__(self, names: Iterable[str]) -> None:
        cleaned = sorted({n.strip() for n in names if n and n.strip()}, key=len, reverse=True)
        self.names = [n for n in cleaned if len(n) >= (2 if _CJK.search(n) else 2)]
        latin = [re.escape(n) for n in self.names if not _CJK.search(n)]
        cjk = [re.escape(n) for n in self.names if _CJK.search(n)]
        parts = []
        if latin:
            parts.append(r"(?<![\w@.])@?(?:" + "|".join(latin) + r")(?![\w@])(?!\.\w)")
        if cjk:
            parts.append("(?:" + "|".join(cjk) + ")")
        self.pattern = re.compile("|".join(parts), re.I) if parts else None

    def mentioned(self, text: str) -> bool:
        return bool(self.pattern and self.pattern.search(text))


def aliases_of(user: dict[str, Any]) -> list[str]:
    aliases = (user.get("identity") or {}).get("aliases") or []
    return [a for a in aliases if isinstance(a, str)]


async def names_for(conn: AsyncConnection, user_id: str) -> Names:
    user = (await conn.execute(users.select().where(users.c.id == user_id))).mappings().first()
    account_names = (await conn.execute(sa.select(accounts.c.name).where(accounts.c.user_id == user_id))).scalars().all()
    names: list[str] = list(account_names)
    if user is not None:
        names += [user["name"], *aliases_of(dict(user))]
    return Names(names)
