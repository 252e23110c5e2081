"""Which export a file is, by its content, and its records.

A zip holding `channels.json` is a Slack export; a zip holding a WhatsApp chat `.txt` is a
WhatsApp export (iOS shares one with its media); a JSON object with `chats.list` or a chat's
`messages` is a Telegram Desktop export (`{messages:[{messageId…}]}` is openloomi's bulk
shape); text whose first lines carry WhatsApp's timestamp headers is a WhatsApp chat; anything
else is the hub's JSONL. The caller may name the format instead (`format`).
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from typing import Any

import orjson

from imports import jsonl, openloomi, slack_export, telegram_export, whatsapp_export
from imports.records import BadInput, ImportRecord

FORMATS = ("slack", "telegram", "whatsapp", "jsonl", "openloomi")


@dataclass(frozen=True)
class Options:
    """What an export does not say and the person does (query parameters or CLI flags)."""

    me: str | None = None  # the person's name or id as the export writes it
    guess_me: bool = False  # take the most frequent sender as the person
    tz: str | None = None  # the zone of WhatsApp's (and old Telegram exports') local times
    chat: str | None = None  # a WhatsApp chat's name
    filename: str | None = None  # the uploaded file's name (Slack team, WhatsApp chat)
    format: str | None = None  # skip detection


@dataclass
class Parsed:
    format: str
    records: list[ImportRecord]
    ignored: dict[str, int] = field(default_factory=dict)  # entries not imported, by reason


def _zip(data: bytes) -> zipfile.ZipFile | None:
    if not data.startswith(b"PK\x03\x04"):
        return None
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as err:
        raise BadInput(0, f"a damaged zip ({err})") from None


def _whatsapp_txt(archive: zipfile.ZipFile) -> str | None:
    """The chat text inside a WhatsApp zip (iOS names it `_chat.txt`)."""
    texts = [i for i in archive.infolist() if i.filename.lower().endswith(".txt") and not i.is_dir()]
    texts.sort(key=lambda i: (i.filename.rsplit("/", 1)[-1] != "_chat.txt", i.filename))
    for info in texts[:5]:
        if info.file_size > whatsapp_export.MAX_LINES * 200:
            raise BadInput(0, f"{info.filename}: too large")
        text = _utf8(slack_export.read_member(archive, info.filename))
        if whatsapp_export.looks_like(text):
            return text
    return None


def _utf8(data: bytes) -> str:
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadInput(data[: err.start].count(b"\n") + 1, "not UTF-8 text") from None


def _json_object(data: bytes, *, strict: bool = False) -> Any:
    """The whole input as one JSON value, or None when it is not (JSONL has several);
    `strict` raises BadInput with the line of the first error instead."""
    stripped = data.lstrip(b"\xef\xbb\xbf \t\r\n")
    skipped_lines = data[: len(data) - len(stripped)].count(b"\n")
    if not stripped.startswith(b"{") and not strict:
        return None
    try:
        return orjson.loads(stripped)
    except orjson.JSONDecodeError as err:
        if strict:
            raise BadInput(err.lineno + skipped_lines, f"not valid JSON ({err.msg}, column {err.colno})") from None
        return None


def pretty_json(data: bytes) -> bool:
    """A JSON document written over many lines (Telegram's result.json starts with a lone "{")."""
    first = data.lstrip(b"\xef\xbb\xbf \t\r\n").split(b"\n", 1)[0].strip()
    return first == b"{"


def detect(data: bytes) -> str:
    """The format of `data`: one of FORMATS."""
    archive = _zip(data)
    if archive is not None:
        if slack_export.root_of(archive) is not None:
            return "slack"
        if _whatsapp_txt(archive) is not None:
            return "whatsapp"
        raise BadInput(0, "a zip that is neither a Slack export (no channels.json) nor a WhatsApp export (no chat .txt)")
    value = _json_object(data)
    if isinstance(value, dict) and "platform" not in value:
        if telegram_export.looks_like(value):
            return "telegram"
        if isinstance(value.get("messages"), list):
            return "openloomi"
    if value is None and pretty_json(data):
        return "telegram"  # a broken JSON document: parse_export names the line
    head = data[:8192].decode("utf-8", errors="ignore")
    if whatsapp_export.looks_like(head):
        return "whatsapp"
    return "jsonl"


def parse_export(data: bytes, options: Options = Options()) -> Parsed:
    """Detect (unless told) and parse; BadInput names the bad line or entry."""
    kind = options.format or detect(data)
    if kind not in FORMATS:
        raise BadInput(0, f"format: one of {', '.join(FORMATS)}")
    if kind == "jsonl":
        return Parsed(kind, jsonl.parse_bytes(data))
    if kind == "openloomi":
        value = _json_object(data)
        return Parsed(kind, openloomi.parse_messages(value.get("messages") if isinstance(value, dict) else None))
    if kind == "slack":
        archive = _zip(data)
        if archive is None:
            raise BadInput(0, "a Slack export is a zip")
        records, ignored = slack_export.parse(archive, me=options.me, filename=options.filename)
        return Parsed(kind, records, ignored)
    if kind == "telegram":
        value = _json_object(data, strict=True)
        records, ignored = telegram_export.parse(value, me=options.me, guess_me=options.guess_me, tz=options.tz)
        return Parsed(kind, records, ignored)
    archive = _zip(data)
    text = (_whatsapp_txt(archive) or "") if archive is not None else _utf8(data)
    chat = options.chat or whatsapp_export.chat_from_filename(options.filename)
    records, ignored = whatsapp_export.parse(text, me=options.me, guess_me=options.guess_me, chat=chat, tz=options.tz)
    return Parsed(kind, records, ignored)


def summary(parsed: Parsed, result_json: dict[str, Any]) -> dict[str, Any]:
    """The import's answer: the store's counts plus what the parser left out, with reasons."""
    already = result_json["skipped"]
    reasons = {"already stored (or repeated in the file)": already} if already else {}
    reasons.update(parsed.ignored)
    return {
        **result_json,
        "format": parsed.format,
        "skipped": already + sum(parsed.ignored.values()),
        "reasons": reasons,
    }
