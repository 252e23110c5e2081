"""Helpers for insights tests: conversations go in through the real import route."""

from __future__ import annotations

from typing import Any

import httpx
import orjson

T0 = 1_772_442_000_000  # 2026-03-02T09:00:00Z, a Monday


def msg(n: int, text: str, *, me: bool = False, chat: str = "D-bob", chat_type: str = "dm", minutes: int | None = None,
        platform: str = "slack", sender: tuple[str, str] = ("U-bob", "Bob Lee"), reply_to: int | None = None) -> dict[str, Any]:
    account = {"id": "U-me", "name": "sam.doe"}
    line = {
        "platform": platform, "account": account, "chat": {"id": chat, "name": chat, "type": chat_type},
        "id": f"{chat}-{n}", "sender": account if me else {"id": sender[0], "name": sender[1]},
        "ts": T0 + (n if minutes is None else minutes) * 60_000, "text": text,
    }
    if reply_to is not None:
        line["replyTo"] = f"{chat}-{reply_to}"
    return line


async def load(client: httpx.AsyncClient, user: dict[str, Any], lines: list[dict[str, Any]]) -> dict[str, str]:
    """Import; returns native id -> hub message id."""
    body = b"\n".join(orjson.dumps(line) for line in lines)
    r = await client.post("/api/messages/import", content=body, headers=user["headers"])
    assert r.status_code == 200, r.text
    listed = (await client.get("/api/messages", params={"limit": 500}, headers=user["headers"])).json()["messages"]
    return {m["nativeId"]: m["id"] for m in listed}
