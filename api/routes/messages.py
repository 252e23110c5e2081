"""Messages module: list, send, sync, check, raw."""

from __future__ import annotations

import base64
import math
import operator
import time
from datetime import datetime, timezone
from typing import Annotated, Any

import orjson
from pydantic import AliasChoices, BeforeValidator, Field, ValidationError, model_validator
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Route

from api.auth import Principal, hub_of
from api.endpoint import describe, endpoint
from api.errors import ApiError, bad_request, not_found
from api.responses import json
from api.schemas import Body, parse_int64
from connectors.registry import has_connector
from imports.apply import import_records
from imports.detect import Options as ImportOptions
from imports.detect import parse_export
from imports.detect import summary as import_summary
from imports.openloomi import parse_messages
from imports.records import BadInput
from store import accounts as account_store
from store import messages as message_store
from workers.outbound import deliver


def _millis(value: Any) -> int | None:
    """Times as epoch milliseconds or ISO-8601 (a trailing Z is fine)."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return int(value)  # range: checked with every other integer (api.endpoint)
    if isinstance(value, str) and (number := parse_int64(value.strip())) is not None:
        return number
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("must be epoch milliseconds or an ISO-8601 time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp() * 1000)


Millis = Annotated[int | None, BeforeValidator(_millis)]


_ISO_FAST = 4_102_444_800_000  # 2100-01-01: below it both ways agree to the millisecond


def iso(ms: int | None) -> str | None:
    """Epoch milliseconds as `2025-01-31T12:00:00.123Z` (time.gmtime: a third of datetime's cost,
    three times per listed message)."""
    if ms is None:
        return None
    if 0 <= ms < _ISO_FAST:
        seconds, millis = divmod(ms, 1000)
        return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(seconds))}.{millis:03d}Z"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message_json(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "accountId": row["account_id"],
        "botId": row["account_id"],
        "platform": row["platform"],
        "chatId": row["chat_id"],
        "chatName": row["chat_name"],
        "chatType": row["chat_type"],
        "channel": row["chat_name"] or row["chat_id"],
        "nativeId": row["native_id"],
        "messageId": row["native_id"],
        "threadId": row["thread_id"],
        "replyToId": row["reply_to_id"],
        "senderId": row["sender_id"],
        "senderName": row["sender_name"],
        "person": row["sender_name"] or row["sender_id"],
        "isSelf": bool(row["is_self"]),
        "direction": row["direction"],
        "text": row["text"],
        "content": row["text"],
        "originalText": row["original_text"],
        "contentType": row["content_type"],
        "attachments": row["attachments"] or [],
        "mentions": row["mentions"] or [],
        "reactions": row["reactions"] or [],
        "sentAt": iso(row["sent_at"]),
        "timestamp": row["sent_at"],
        "editedAt": iso(row["edited_at"]),
        "deletedAt": iso(row["deleted_at"]),
        "status": row["status"],
        "error": row["error"],
        "seq": row["seq"],
    }


def platform_payload(raw: Any) -> Any:
    """The payload as the platform sent it: connectors may annotate with `_loomi` keys."""
    if isinstance(raw, dict):
        return {k: v for k, v in raw.items() if not k.startswith("_loomi")}
    return raw


def _encode_cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(":".join(str(p) for p in parts).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, arity: int) -> list[str]:
    try:
        parts = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split(":", arity - 1)
    except (ValueError, UnicodeDecodeError):
        parts = []
    if len(parts) != arity or any("\x00" in part for part in parts):
        raise bad_request("Invalid cursor", "invalid_cursor", "pass back nextCursor/cursor exactly as returned")
    return parts


class ListQuery(Body):
    platform: str | None = Field(default=None, max_length=20)
    account_id: str | None = Field(default=None, max_length=40, validation_alias=AliasChoices("accountId", "botId"))
    chat_id: str | None = Field(default=None, max_length=200, validation_alias=AliasChoices("chatId", "channel"))
    sender_id: str | None = Field(default=None, max_length=200, validation_alias=AliasChoices("senderId", "person"))
    thread_id: str | None = Field(default=None, max_length=200, validation_alias=AliasChoices("threadId"))
    since: Millis = Field(default=None, validation_alias=AliasChoices("since", "startTime"))
    until: Millis = Field(default=None, validation_alias=AliasChoices("until", "endTime"))
    q: str | None = Field(default=None, max_length=500, validation_alias=AliasChoices("q", "keywords"))
    limit: int = Field(default=50, ge=1, le=500)
    cursor: str | None = Field(default=None, max_length=200)
    include_deleted: bool = Field(default=False, validation_alias=AliasChoices("includeDeleted"))


@endpoint(query=ListQuery)
async def list_messages(request: Request, user: Principal, query: ListQuery):
    """List the caller's messages, newest first, with filters, full-text `q` and keyset paging."""
    filters = {
        column: value
        for column, value in (
            ("platform", query.platform),
            ("account_id", query.account_id),
            ("chat_id", query.chat_id),
            ("sender_id", query.sender_id),
            ("thread_id", query.thread_id),
        )
        if value is not None
    }
    before = None
    if query.cursor:
        sent_at, row_id = _decode_cursor(query.cursor, 2)
        at = parse_int64(sent_at)
        if at is None:
            raise bad_request("Invalid cursor", "invalid_cursor")
        before = (at, row_id)
    async with hub_of(request).engine.connect() as conn:
        page = await message_store.list_page(
            conn,
            user.id,
            filters=filters,
            q=query.q,
            before=before,
            limit=query.limit + 1,
            include_deleted=query.include_deleted,
            since=query.since,
            until=query.until,
            with_raw=False,
        )
    more = len(page.rows) > query.limit
    listed = listed_json(page.keys, page.rows[: query.limit])
    cursor = _encode_cursor(listed[-1]["timestamp"], listed[-1]["id"]) if more and listed else None
    return {"messages": listed, "nextCursor": cursor, "hasMore": more}


_LISTED = (
    "id", "account_id", "platform", "chat_id", "chat_name", "chat_type", "native_id", "thread_id", "reply_to_id",
    "sender_id", "sender_name", "is_self", "direction", "text", "original_text", "content_type", "attachments",
    "mentions", "reactions", "sent_at", "edited_at", "deleted_at", "status", "error", "seq",
)


def listed_json(keys: tuple[str, ...], rows: list[Any]) -> list[dict[str, Any]]:
    """`message_json` of each row as the driver returned it (store.messages.Page): the stored
    JSON of attachments, mentions and reactions goes into the answer as it is (no decoding and
    encoding again), and no dict per row in between. tests/api/test_messages_read_* hold the
    two to the same output."""
    get = operator.itemgetter(*(keys.index(name) for name in _LISTED))
    out = []
    for row in rows:
        (id_, account, platform, chat, chat_name, chat_type, native, thread, reply, sender, sender_name, is_self,
         direction, text, original, content_type, attachments, mentions, reactions, sent_at, edited_at, deleted_at,
         status, error, seq) = get(row)
        out.append({
            "id": id_,
            "accountId": account,
            "botId": account,
            "platform": platform,
            "chatId": chat,
            "chatName": chat_name,
            "chatType": chat_type,
            "channel": chat_name or chat,
            "nativeId": native,
            "messageId": native,
            "threadId": thread,
            "replyToId": reply,
            "senderId": sender,
            "senderName": sender_name,
            "person": sender_name or sender,
            "isSelf": bool(is_self),
            "direction": direction,
            "text": text,
            "content": text,
            "originalText": original,
            "contentType": content_type,
            "attachments": orjson.Fragment(attachments) if attachments else [],
            "mentions": orjson.Fragment(mentions) if mentions else [],
            "reactions": orjson.Fragment(reactions) if reactions else [],
            "sentAt": iso(sent_at),
            "timestamp": sent_at,
            "editedAt": iso(edited_at),
            "deletedAt": iso(deleted_at),
            "status": status,
            "error": error,
            "seq": seq,
        })
    return out


class SendBody(Body):
    account_id: str | None = Field(default=None, max_length=40, validation_alias=AliasChoices("accountId", "botId"))
    chat_id: str | None = Field(default=None, max_length=200, validation_alias=AliasChoices("chatId"))
    text: str | None = Field(default=None, max_length=40_000, validation_alias=AliasChoices("text", "message"))
    reply_to_id: str | None = Field(default=None, max_length=200, validation_alias=AliasChoices("replyToId"))
    thread_id: str | None = Field(default=None, max_length=200, validation_alias=AliasChoices("threadId"))
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=200, validation_alias=AliasChoices("idempotencyKey"))
    recipients: list[str] | None = Field(default=None, min_length=1, max_length=50)

    @model_validator(mode="after")
    def _complete(self) -> "SendBody":
        if not self.account_id:
            raise ValueError("accountId (or botId) is required")
        if not self.text or not self.text.strip():
            raise ValueError("text (or message) is required")
        if not self.chat_id and not self.recipients:
            raise ValueError("chatId (or recipients) is required")
        return self


async def _send_one(request: Request, user: Principal, body: SendBody, chat_id: str, key: str | None) -> dict[str, Any]:
    hub = hub_of(request)
    async with hub.engine.begin() as conn:
        if key and (existing := await message_store.find_by_idempotency(conn, user.id, key)):
            return existing
        account = await account_store.get_row(conn, body.account_id or "")
        if account is None or account["user_id"] != user.id:
            raise not_found("No such account", "account_not_found")
        if not account["enabled"] or not account["credentials"]:
            raise ApiError(400, "Account is disconnected", "account_disconnected", "reconnect it first")
        if not has_connector(account["platform"]):
            raise ApiError(400, f"Sending on {account['platform']} is not available", "platform_not_available")
        try:
            row = await message_store.insert_outbound(
                conn,
                user_id=user.id,
                account_id=account["id"],
                platform=account["platform"],
                chat_id=chat_id,
                text=body.text or "",
                reply_to_id=body.reply_to_id,
                thread_id=body.thread_id,
                idempotency_key=key,
            )
        except IntegrityError:
            row = None
    if row is None:  # a concurrent request with the same key won the race
        async with hub.engine.connect() as conn:
            found = await message_store.find_by_idempotency(conn, user.id, key or "")
        assert found is not None
        return found
    return await deliver(hub, row["id"])


@endpoint(body=SendBody)
async def send_message(request: Request, user: Principal, body: SendBody):
    """Send a message through the account's connector; returns the stored outbound message."""
    if body.recipients:  # openloomi's {botId, recipients[], message}
        rows = [
            await _send_one(request, user, body, chat, f"{body.idempotency_key}:{chat}" if body.idempotency_key else None)
            for chat in body.recipients
        ]
        return {"success": all(r["status"] != "failed" for r in rows), "messages": [message_json(r) for r in rows]}
    row = await _send_one(request, user, body, body.chat_id or "", body.idempotency_key)
    return json(message_json(row), 201 if row["status"] != "failed" else 502)



class SyncQuery(Body):
    cursor: str | None = Field(default=None, max_length=200)
    limit: int = Field(default=500, ge=1, le=2000)


@endpoint(query=SyncQuery, query_in_body=True)
async def sync_messages(request: Request, user: Principal, query: SyncQuery):
    """Every change since `cursor` (GET query or POST body): `{messages, cursor, hasMore}`."""
    seq = 0
    if query.cursor:
        (raw,) = _decode_cursor(query.cursor, 1)
        parsed = parse_int64(raw)
        if parsed is None or parsed < 0:
            raise bad_request("Invalid cursor", "invalid_cursor")
        seq = parsed
    async with hub_of(request).engine.connect() as conn:
        rows = await message_store.changes_since(conn, user.id, seq, query.limit + 1)
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    last = rows[-1]["seq"] if rows else seq
    return {"messages": [message_json(r) for r in rows], "cursor": _encode_cursor(last), "hasMore": more}



class CheckQuery(Body):
    id: str | None = Field(default=None, max_length=40)


@endpoint(query=CheckQuery)
async def check(request: Request, user: Principal, query: CheckQuery):
    """An outbound message's status (`?id=`), or the caller's message statistics."""
    hub = hub_of(request)
    async with hub.engine.connect() as conn:
        if query.id:
            row = await message_store.get_message(conn, user.id, query.id)
            if row is None:
                raise not_found("No such message", "message_not_found")
            return {
                "id": row["id"],
                "status": row["status"] or "received",
                "error": row["error"],
                "nativeId": row["native_id"],
                "sentAt": iso(row["sent_at"]),
            }
        stats = await message_store.stats(conn, user.id)
    stats["oldestMessage"], stats["newestMessage"] = iso(stats["oldestMessage"]), iso(stats["newestMessage"])
    return {"success": True, "storage": hub.engine.dialect.name, "stats": stats, **stats}


class RawQuery(Body):
    id: str | None = Field(default=None, max_length=40)
    account_id: str | None = Field(default=None, max_length=40, validation_alias=AliasChoices("accountId", "botId"))
    platform: str | None = Field(default=None, max_length=20)
    limit: int = Field(default=50, ge=1, le=500)


@endpoint(query=RawQuery)
async def raw(request: Request, user: Principal, query: RawQuery):
    """The platform payload exactly as received (`?id=`), or the latest ones for an account."""
    async with hub_of(request).engine.connect() as conn:
        if query.id:
            row = await message_store.get_message(conn, user.id, query.id)
            if row is None:
                raise not_found("No such message", "message_not_found")
            return {"id": row["id"], "platform": row["platform"], "accountId": row["account_id"], "raw": platform_payload(row["raw"])}
        filters = {k: v for k, v in (("account_id", query.account_id), ("platform", query.platform)) if v}
        rows = await message_store.list_messages(
            conn, user.id, filters=filters, q=None, before=None, limit=query.limit, include_deleted=True
        )
    return {
        "success": True,
        "messages": [
            {"id": r["id"], "messageId": r["native_id"], "platform": r["platform"], "botId": r["account_id"], "raw": platform_payload(r["raw"])}
            for r in rows
        ],
    }


MAX_IMPORT_BYTES = 64 << 20


def _import_failed(err: BadInput) -> ApiError:
    where = f"Line {err.line}" if err.line else "Input"
    return bad_request(f"{where} is invalid; nothing was imported", "invalid_import", str(err))


async def _import_body(request: Request, named: dict[str, str] | None = None) -> bytes:
    """The JSONL: the raw body, or the `file` part of a multipart form (its file name and the
    form's other text fields go into `named` when given)."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        async with request.form(max_part_size=MAX_IMPORT_BYTES) as form:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise bad_request("A multipart import needs a `file` part", "invalid_import")
            body = await upload.read()
            if named is not None:
                named.update({k: v for k, v in form.items() if isinstance(v, str)})
                named["filename"] = upload.filename or ""
    else:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_IMPORT_BYTES:
                break
        body = bytes(body)
    if len(body) > MAX_IMPORT_BYTES:
        raise ApiError(400, "Import too large", "body_too_large", f"limit is {MAX_IMPORT_BYTES} bytes per request")
    return body


class ImportQuery(Body):
    """What an export does not say (imports/detect.py); multipart form fields of the same names win."""

    format: str | None = Field(default=None, pattern="^(slack|telegram|whatsapp|jsonl|openloomi)$")
    me: str | None = Field(default=None, min_length=1, max_length=200)
    guess_me: bool = Field(default=False, validation_alias=AliasChoices("guessMe", "guess_me"))
    tz: str | None = Field(default=None, max_length=64)
    chat: str | None = Field(default=None, min_length=1, max_length=200)
    filename: str | None = Field(default=None, max_length=300)


@endpoint(query=ImportQuery)
async def import_messages(request: Request, user: Principal, query: ImportQuery):
    """Import history as the body or a multipart `file`: a Slack export zip, Telegram Desktop's
    result.json, a WhatsApp chat .txt (or its zip), or hub JSONL (one message per line)."""
    named: dict[str, str] = {}
    body = await _import_body(request, named)
    try:
        form = ImportQuery.model_validate(named).model_dump(exclude_unset=True)
    except ValidationError as err:
        raise bad_request("Invalid input", "invalid_input", describe(err)) from None
    fields = {**query.model_dump(), **form}
    try:
        parsed = await run_in_threadpool(parse_export, body, ImportOptions(**fields))  # CPU-bound: off the event loop
    except BadInput as err:
        raise _import_failed(err) from None
    if not parsed.records:
        raise bad_request("Nothing to import", "invalid_import", f"the {parsed.format} input has no messages")
    result = await import_records(hub_of(request).engine, user.id, parsed.records)
    return import_summary(parsed, result.json())


@endpoint()
async def raw_import(request: Request, user: Principal):
    """openloomi's bulk import: `{messages:[{messageId, platform, botId, channel, person, timestamp, content}]}`."""
    body = await _import_body(request)  # bulk bodies outgrow read_json's 1 MB limit
    try:
        data = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError:
        raise bad_request("Request body is not valid JSON", "invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request("Request body must be a JSON object", "invalid_input")
    try:
        records = parse_messages(data.get("messages"))
    except BadInput as err:
        raise _import_failed(err) from None
    hub = hub_of(request)
    result = await import_records(hub.engine, user.id, records)
    return {
        "success": True,
        "message": f"Stored {result.imported} of {result.total} messages",
        "storage": hub.engine.dialect.name,
        "stored": result.imported,
        "count": result.total,
        **result.json(),
    }


routes = [
    Route("/api/messages", list_messages, methods=["GET"]),
    Route("/api/messages", send_message, methods=["POST"]),
    Route("/api/messages/sync", sync_messages, methods=["GET", "POST"]),
    Route("/api/messages/check", check, methods=["GET"]),
    Route("/api/messages/raw", raw, methods=["GET"]),
    Route("/api/messages/raw", raw_import, methods=["POST"]),
    Route("/api/messages/import", import_messages, methods=["POST"]),
]
