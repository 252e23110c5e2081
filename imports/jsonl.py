"""The hub's own JSONL: one message per line.

`{"platform", "account": {"id", "name"}, "chat": {"id", "name", "type": "dm|group|channel|thread"},
"id", "sender": {"id", "name"}, "ts" (ISO-8601 or epoch ms), "text", "replyTo"?, "threadId"?,
"attachments"?}`. A message whose sender id is the account id is the person's own.
Blank lines are ignored; every other line must be a valid message, or the import is refused.
"""

from __future__ import annotations

from typing import Annotated, Any, Iterable, Iterator

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from connectors.base import Attachment, ChatType
from imports.records import PLATFORM, BadInput, ImportRecord, to_millis

MAX_LINES = 500_000


def _text_id(value: Any) -> Any:
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


Id = Annotated[str, BeforeValidator(_text_id), Field(min_length=1, max_length=200)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class _Account(_Model):
    id: Id
    name: str | None = Field(default=None, max_length=200)


class _Chat(_Model):
    id: Id
    name: str | None = Field(default=None, max_length=500)
    type: ChatType = ChatType.CHANNEL


class _Sender(_Model):
    id: Id | None = None
    name: str | None = Field(default=None, max_length=500)


class _Attachment(_Model):
    name: str | None = Field(default=None, max_length=500)
    url: str | None = Field(default=None, max_length=2000)
    content_type: str | None = Field(default=None, max_length=200, alias="contentType")
    size: int | None = Field(default=None, ge=0)


class Line(_Model):
    platform: str = Field(pattern=PLATFORM.pattern)
    account: _Account
    chat: _Chat
    id: Id
    sender: _Sender = Field(default_factory=_Sender)
    ts: Annotated[int, BeforeValidator(to_millis)]
    text: str = Field(default="", max_length=100_000)
    reply_to: Id | None = Field(default=None, alias="replyTo")
    thread_id: Id | None = Field(default=None, alias="threadId")
    attachments: list[_Attachment] = Field(default_factory=list, max_length=100)


def _problem(err: ValidationError) -> str:
    parts = []
    for item in err.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in item["loc"]) or "line"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def record_of(line_no: int, line: Line, raw: dict[str, Any]) -> ImportRecord:
    return ImportRecord(
        line=line_no,
        platform=line.platform,
        account_id=line.account.id,
        account_name=line.account.name or line.account.id,
        chat_id=line.chat.id,
        chat_name=line.chat.name,
        chat_type=line.chat.type,
        native_id=line.id,
        sender_id=line.sender.id,
        sender_name=line.sender.name,
        sent_at=line.ts,
        text=line.text,
        is_self=line.sender.id is not None and line.sender.id == line.account.id,
        reply_to=line.reply_to,
        thread_id=line.thread_id,
        attachments=tuple(Attachment(a.name, a.url, a.content_type, a.size) for a in line.attachments),
        raw=raw,
    )


def parse_lines(lines: Iterable[bytes | str]) -> Iterator[ImportRecord]:
    """Records in file order; raises BadInput naming the first bad line (1-based)."""
    for number, raw_line in enumerate(lines, start=1):
        if number > MAX_LINES:
            raise BadInput(number, f"too many lines (at most {MAX_LINES} per import)")
        if not raw_line.strip():
            continue
        try:
            data = orjson.loads(raw_line)
        except orjson.JSONDecodeError as err:
            raise BadInput(number, f"not valid JSON ({err.args[0].split(':')[0]})") from None
        if not isinstance(data, dict):
            raise BadInput(number, "must be a JSON object")
        try:
            line = Line.model_validate(data)
        except ValidationError as err:
            raise BadInput(number, _problem(err)) from None
        yield record_of(number, line, data)


def parse_bytes(body: bytes) -> list[ImportRecord]:
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadInput(body[: err.start].count(b"\n") + 1, "not UTF-8 text") from None
    return list(parse_lines(body.split(b"\n")))
