"""openloomi's bulk shape, `POST /api/messages/raw {messages:[{messageId, platform, botId,
channel?, person?, timestamp, content, attachments?, metadata?}]}`, as import records.

The bot id names the account; the channel (else the person) names the chat; the person is
the sender. openloomi keeps threads and direction in `metadata` (Slack `threadTs`); a message
is the person's own when `metadata.isSelf` is true or `metadata.direction` is "outbound".
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from connectors.base import Attachment, ChatType
from imports.jsonl import Id, _Attachment, _problem
from imports.records import PLATFORM, BadInput, ImportRecord, to_millis

MAX_MESSAGES = 50_000


class RawMessage(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    message_id: Id = Field(alias="messageId")
    platform: str = Field(pattern=PLATFORM.pattern)
    bot_id: Id = Field(alias="botId")
    channel: str | None = Field(default=None, max_length=200)
    person: str | None = Field(default=None, max_length=200)
    timestamp: Annotated[int, BeforeValidator(to_millis)]
    content: str = Field(default="", max_length=100_000)
    attachments: list[_Attachment] = Field(default_factory=list, max_length=100)
    metadata: dict[str, Any] = Field(default_factory=dict)


def _record(index: int, m: RawMessage, raw: dict[str, Any]) -> ImportRecord:
    meta = m.metadata
    chat_id = m.channel or m.person or "default"
    thread = meta.get("threadTs") or meta.get("threadId")
    chat_type = meta.get("chatType")
    return ImportRecord(
        line=index,
        platform=m.platform,
        account_id=m.bot_id,
        account_name=str(meta.get("botName") or m.bot_id)[:200],
        chat_id=chat_id,
        chat_name=str(meta.get("channelName") or m.channel or m.person or chat_id)[:500],
        chat_type=ChatType(chat_type) if chat_type in {t.value for t in ChatType} else (ChatType.DM if not m.channel else ChatType.CHANNEL),
        native_id=m.message_id,
        sender_id=m.person,
        sender_name=str(meta.get("personName") or m.person)[:500] if m.person else None,
        sent_at=m.timestamp,
        text=m.content,
        is_self=bool(meta.get("isSelf")) or meta.get("direction") == "outbound",
        reply_to=str(meta["replyTo"])[:200] if meta.get("replyTo") else None,
        thread_id=str(thread)[:200] if thread else None,
        attachments=tuple(Attachment(a.name, a.url, a.content_type, a.size) for a in m.attachments),
        raw=raw,
    )


def parse_messages(messages: Any) -> list[ImportRecord]:
    """`messages` as given in the body; BadInput names the 1-based index of the bad one."""
    if not isinstance(messages, list) or not messages:
        raise BadInput(0, "messages: a non-empty list is required")
    if len(messages) > MAX_MESSAGES:
        raise BadInput(0, f"messages: at most {MAX_MESSAGES} per request")
    records = []
    for index, item in enumerate(messages, start=1):
        if not isinstance(item, dict):
            raise BadInput(index, "must be a JSON object")
        try:
            records.append(_record(index, RawMessage.model_validate(item), item))
        except ValidationError as err:
            raise BadInput(index, _problem(err)) from None
    return records
