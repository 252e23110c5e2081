"""The record every parser produces, and the error that names the bad line."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from connectors.base import Attachment, ChatType, Reaction

PLATFORM = re.compile(r"^[a-z][a-z0-9_-]{0,19}$")
CHAT_TYPES = {t.value for t in ChatType}


class BadInput(ValueError):
    """Input a parser cannot read: `line` is 1-based (0 when the whole input is wrong)."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"line {line}: {problem}" if line else problem)
        self.line, self.problem = line, problem


@dataclass(frozen=True)
class ImportRecord:
    """One message from any source, already normalized; `line` says where it came from."""

    line: int
    platform: str
    account_id: str  # the platform's id for the account (team id, bot id, phone…)
    account_name: str
    chat_id: str
    chat_name: str | None
    chat_type: ChatType
    native_id: str
    sender_id: str | None
    sender_name: str | None
    sent_at: int  # ms
    text: str
    is_self: bool
    reply_to: str | None = None
    thread_id: str | None = None
    attachments: tuple[Attachment, ...] = field(default=())
    raw: dict[str, Any] | None = None
    edited_at: int | None = None  # ms: the export says the message was edited (then)
    content_type: str = "text"  # as the live connectors set it: text, file, image, system…
    reactions: tuple[Reaction, ...] = field(default=())  # applied as REACTION changes after the upsert


@dataclass
class ImportResult:
    imported: int = 0  # new messages stored
    skipped: int = 0  # already stored (a re-import) or repeated in the input
    failed: int = 0  # always 0 on success: one bad line rejects the whole import
    total: int = 0
    accounts_created: list[str] = field(default_factory=list)
    chats: int = 0
    reactions: int = 0  # reactions newly recorded on imported messages

    def json(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "skipped": self.skipped,
            "failed": self.failed,
            "total": self.total,
            "accountsCreated": self.accounts_created,
            "chats": self.chats,
            "reactions": self.reactions,
        }


def to_millis(value: Any) -> int:
    """Epoch milliseconds (seconds accepted when the number is too small to be ms) or ISO-8601."""
    if isinstance(value, bool) or value is None or value == "":
        raise ValueError("must be epoch milliseconds or an ISO-8601 time")
    if isinstance(value, (int, float)) or (isinstance(value, str) and re.fullmatch(r"-?\d+(\.\d+)?", value.strip())):
        number = float(value)
        return int(number if abs(number) >= 10**11 else number * 1000)
    try:
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("must be epoch milliseconds or an ISO-8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() * 1000)
