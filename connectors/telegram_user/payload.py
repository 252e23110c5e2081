"""The JSON form the listener and backfill emit: Telethon's `to_dict()` of the message, made
JSON-safe, with the chat and sender as Telegram sent them alongside (no extra calls)."""

from __future__ import annotations

from typing import Any

from telethon.tl import types

from connectors.telegram_user.client import json_safe


def chat_info(entity: Any) -> dict[str, Any] | None:
    if isinstance(entity, types.User):
        name = " ".join(filter(None, (entity.first_name, entity.last_name))) or entity.username
        return {"type": "user", "title": name, "username": entity.username}
    if isinstance(entity, (types.Chat, types.ChatForbidden)):
        return {"type": "group", "title": entity.title}
    if isinstance(entity, (types.Channel, types.ChannelForbidden)):
        return {"type": "megagroup" if getattr(entity, "megagroup", False) else "channel", "title": entity.title}
    return None


def sender_info(entity: Any) -> dict[str, Any] | None:
    if isinstance(entity, types.User):
        name = " ".join(filter(None, (entity.first_name, entity.last_name))) or entity.username
        return {"id": str(entity.id), "name": name, "username": entity.username}
    if isinstance(entity, types.Channel):
        return {"id": str(entity.id), "name": entity.title, "username": entity.username}
    return None


def message_payload(kind: str, message: Any) -> dict[str, Any]:
    """`kind` is "message" or "edit"; `message` a Telethon Message (its cached chat and sender)."""
    return {
        "kind": kind,
        "chat_id": str(message.chat_id),
        "chat": chat_info(message.chat),
        "sender": sender_info(message.sender),
        "message": json_safe(message.to_dict()),
    }


def delivery_id(kind: str, chat_id: str, message: Any) -> str:
    if kind == "edit":
        edited = message.edit_date.timestamp() if message.edit_date else 0
        return f"edit:{chat_id}:{message.id}:{int(edited)}"
    return f"msg:{chat_id}:{message.id}"
