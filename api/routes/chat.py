"""Chat module (/api/chat/*): the person's conversations with the assistant, and characters.

A chat is a titled list of turns; `POST /api/chat/{chatId}/send` asks the assistant through the
AI gateway with the chat's history (newest MAX_HISTORY_MESSAGES turns within
MAX_HISTORY_CHARS), the character's system prompt first, and the person's own messages as
numbered sources, exactly as `POST /api/ai/chat` grounds (ai.grounding). A turn is stored whole
or not at all: the user's message and the reply are written in one transaction after the
reply is complete, so a failed or abandoned ask (503 without a provider, an upstream error,
the caller hanging up mid-stream) leaves the chat as it was and can simply be sent again.
`stream: true` answers in server-sent events shaped like `/api/ai/chat` (OpenAI chunks, the
first carrying `sources`, then one `chat.turn` event with the stored messages, then `[DONE]`).

Characters are a name, an avatar, a system prompt and an optional model; the built-in ones
(BUILTIN) are listed with every person's own and cannot be changed. Another person's chat or
character answers 404, like one that does not exist.
"""

from __future__ import annotations

import contextlib
import re
from typing import Annotated, Any, AsyncIterator, Literal

from pydantic import AfterValidator, AliasChoices, Field, StringConstraints, model_validator
from sqlalchemy.exc import IntegrityError
from starlette.requests import Request
from starlette.routing import Route

from ai import grounding, wire
from ai.gateway import ChatStream, gateway_of, ready_gateway
from ai.search import Scope
from ai.types import AIError, ChatRequest
from api.auth import Principal, hub_of
from api.endpoint import endpoint
from api.errors import ApiError, bad_request
from api.responses import json
from api.routes.messages import iso
from api.schemas import Body
from store import chats as store
from store.ids import now_ms

MAX_TEXT = 100_000  # characters in one message
MAX_HISTORY_MESSAGES = 50
MAX_HISTORY_CHARS = 24_000
MAX_ID = 40
DEFAULT_TITLE = "New Chat"
TITLE_FROM_MESSAGE = 60

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
CharacterName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Prompt = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=20_000)]
Model = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
AVATAR_URL = re.compile(r"^(https?://\S+|data:image/(png|jpeg|gif|webp);base64,[A-Za-z0-9+/=]+)$")


def _avatar(value: str) -> str:
    """An emoji or a few letters, an http(s) URL, or a small base64 image: never a script URL."""
    if value and not AVATAR_URL.match(value) and (len(value) > 16 or ":" in value):
        raise ValueError("an emoji or up to 16 characters, an http(s) URL, or a data:image/…;base64 URL")
    return value


Avatar = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2048), AfterValidator(_avatar)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]
RefId = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID)]


def _builtin(key: str, name: str, avatar: str, description: str, prompt: str) -> dict[str, Any]:
    return {"id": f"builtin-{key}", "user_id": None, "name": name, "avatar": avatar, "description": description,
            "system_prompt": prompt, "model": None, "created_at": None, "updated_at": None}


BUILTIN: dict[str, dict[str, Any]] = {c["id"]: c for c in (
    _builtin("assistant", "Loomi", "🧶", "The default assistant: knows your chats and answers from them.",
             "You are Loomi, the user's personal assistant. You can see excerpts of the user's own chat "
             "messages when they are relevant; answer clearly, cite them as [n] when you use them, and say "
             "when you do not know."),
    _builtin("concise", "Concise", "✂️", "Short, direct answers.",
             "You are a concise assistant. Answer in as few words as the question allows; use bullet "
             "points for lists; no preamble."),
    _builtin("writer", "Writer", "✍️", "Drafts and polishes replies in the user's voice.",
             "You help the user write messages. Draft replies that match the tone of the conversation, "
             "keep them ready to send, and offer one alternative when the tone is unclear."),
)}
DEFAULT_CHARACTER = "builtin-assistant"


# ---- shapes ---------------------------------------------------------------------------------


def chat_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "userId": row["user_id"], "title": row["title"], "characterId": row["character_id"],
            "model": row["model"], "messageCount": row["message_count"], "createdAt": iso(row["created_at"]),
            "updatedAt": iso(row["updated_at"])}


def message_json(row: dict[str, Any]) -> dict[str, Any]:
    """openloomi's UI message (`parts`) with the plain `content` beside it; a message an app
    saved keeps the app's id."""
    return {"id": row.get("client_id") or row["id"], "chatId": row["chat_id"], "seq": row["seq"], "role": row["role"], "content": row["content"],
            "parts": [{"type": "text", "text": row["content"]}], "metadata": row["meta"] or {},
            "createdAt": iso(row["created_at"])}


def character_json(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "name": row["name"], "description": row["description"], "avatar": row["avatar"],
            "systemPrompt": row["system_prompt"], "model": row["model"], "builtIn": row["user_id"] is None,
            "createdAt": iso(row["created_at"]), "updatedAt": iso(row["updated_at"])}


def chat_not_found() -> ApiError:
    return ApiError(404, "Chat not found", "chat_not_found")


def character_not_found() -> ApiError:
    return ApiError(404, "Character not found", "character_not_found")


# ---- bodies ---------------------------------------------------------------------------------


class TextPart(Body):
    type: Literal["text"]
    text: str = Field(max_length=MAX_TEXT)


class MessageIn(Body):
    """openloomi's `message: {role, parts}` (or `content`)."""

    role: Literal["user"] = "user"
    content: str | None = Field(default=None, max_length=MAX_TEXT)
    parts: list[TextPart] | None = Field(default=None, max_length=100)


class TextBody(Body):
    """The text of a message: `content`, text `parts`, or a `message` holding either."""

    content: str | None = Field(default=None, max_length=MAX_TEXT)
    parts: list[TextPart] | None = Field(default=None, max_length=100)
    message: MessageIn | None = None

    def text(self) -> str:
        source: TextBody | MessageIn = self.message if self.message is not None else self
        if source.content is not None:
            text = source.content
        else:
            text = "\n".join(p.text for p in source.parts or [])
        if not text.strip():
            raise bad_request("Invalid input", "invalid_input", "content: give the message text (content or text parts)")
        if len(text) > MAX_TEXT:
            raise bad_request("Invalid input", "invalid_input", f"content: at most {MAX_TEXT} characters")
        return text


class AppendBody(TextBody):
    role: Literal["user", "assistant", "system"] = "user"


class SendBody(TextBody):
    stream: bool = False
    model: Model | None = None
    grounded: bool = True
    platform: str | None = Field(default=None, max_length=20)
    account_id: str | None = Field(default=None, alias="accountId", max_length=40)
    source_chat_id: str | None = Field(default=None, validation_alias=AliasChoices("sourceChatId", "scopeChatId"), max_length=200)
    since: int | str | None = None
    sources_limit: int = Field(default=8, alias="sourcesLimit", ge=1, le=30)
    temperature: float | None = Field(default=None, ge=0, le=2)
    max_tokens: int | None = Field(default=None, validation_alias=AliasChoices("maxTokens", "max_tokens"), ge=1, le=200_000)


class ChatCreate(Body):
    title: Title | None = None
    character_id: RefId | None = Field(default=None, alias="characterId")
    model: Model | None = None


class ChatUpdate(ChatCreate):
    @model_validator(mode="after")
    def _something(self) -> "ChatUpdate":
        if not self.model_fields_set & {"title", "character_id", "model"}:
            raise ValueError("give title, characterId or model")
        return self


class SavedMessage(Body):
    """One message as openloomi's app saves it: its own id, a role, `parts` (only text parts
    are kept; tool and file parts are the app's business) or `content`."""

    id: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.:-]+$")]
    role: Literal["user", "assistant", "system"]
    content: str | None = Field(default=None, max_length=MAX_TEXT)
    parts: list[dict[str, Any]] | None = Field(default=None, max_length=200)

    def text(self) -> str:
        if self.content is not None:
            return self.content
        texts = [p.get("text") for p in self.parts or [] if p.get("type") == "text"]
        text = "\n".join(t for t in texts if isinstance(t, str))
        if len(text) > MAX_TEXT:
            raise bad_request("Invalid input", "invalid_input", f"messages: a message is over {MAX_TEXT} characters")
        return text


class SaveBody(Body):
    chat_id: Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID, pattern=r"^[A-Za-z0-9_-]+$")] = Field(alias="chatId")
    messages: list[SavedMessage] = Field(max_length=500)
    title: Title | None = None


class ChatsQuery(Body):
    limit: int = Field(default=20, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=1_000_000)


class MessagesQuery(Body):
    limit: int = Field(default=50, ge=1, le=200)
    before: RefId | None = None


class CharacterBody(Body):
    name: CharacterName
    system_prompt: Prompt = Field(validation_alias=AliasChoices("systemPrompt", "system_prompt", "prompt"))
    avatar: Avatar | None = None
    description: Description | None = None
    model: Model | None = None


class CharacterUpdate(Body):
    name: CharacterName | None = None
    system_prompt: Prompt | None = Field(default=None, validation_alias=AliasChoices("systemPrompt", "system_prompt", "prompt"))
    avatar: Avatar | None = None
    description: Description | None = None
    model: Model | None = None

    @model_validator(mode="after")
    def _something(self) -> "CharacterUpdate":
        if not self.model_fields_set:
            raise ValueError("give name, systemPrompt, avatar, description or model")
        if "name" in self.model_fields_set and self.name is None or "system_prompt" in self.model_fields_set and self.system_prompt is None:
            raise ValueError("name and systemPrompt cannot be null")
        return self


# ---- lookups --------------------------------------------------------------------------------


async def _chat(request: Request, user: Principal) -> dict[str, Any]:
    chat_id = request.path_params["chatId"]
    row = None
    if len(chat_id) <= MAX_ID:
        async with hub_of(request).engine.connect() as conn:
            row = await store.get_chat(conn, user.id, chat_id)
    if row is None:
        raise chat_not_found()
    return row


async def _character(request: Request, user: Principal, character_id: str | None) -> dict[str, Any]:
    """A built-in or the person's own character (the default one for None)."""
    character_id = character_id or DEFAULT_CHARACTER
    if character_id in BUILTIN:
        return BUILTIN[character_id]
    row = None
    if len(character_id) <= MAX_ID:
        async with hub_of(request).engine.connect() as conn:
            row = await store.get_character(conn, user.id, character_id)
    if row is None:
        raise character_not_found()
    return row


# ---- chats ----------------------------------------------------------------------------------


@endpoint(query=ChatsQuery)
async def list_chats(request: Request, user: Principal, query: ChatsQuery):
    """The person's chats, most recently active first: `{chats, total, hasMore}`."""
    async with hub_of(request).engine.connect() as conn:
        rows, total = await store.list_chats(conn, user.id, limit=query.limit, offset=query.offset)
    return {"chats": [chat_json(r) for r in rows], "total": total, "limit": query.limit, "offset": query.offset,
            "hasMore": query.offset + len(rows) < total}


@endpoint(body=ChatCreate)
async def create_chat(request: Request, user: Principal, body: ChatCreate):
    """A new, empty chat `{title?, characterId?, model?}`: `{chat}` (201)."""
    if body.character_id is not None:
        await _character(request, user, body.character_id)
    async with hub_of(request).engine.begin() as conn:
        try:
            row = await store.create_chat(conn, user.id, title=body.title or DEFAULT_TITLE, character_id=body.character_id,
                                          model=body.model, now_ms=now_ms())
        except store.TooMany:
            raise bad_request("Too many chats", "too_many_chats", f"at most {store.MAX_CHATS}") from None
    return json({"chat": chat_json(row)}, 201)


@endpoint()
async def get_chat(request: Request, user: Principal):
    """One chat: `{chat}`."""
    return {"chat": chat_json(await _chat(request, user))}


@endpoint(body=ChatUpdate)
async def update_chat(request: Request, user: Principal, body: ChatUpdate):
    """Rename a chat or change its character or model (null clears them): `{chat}`."""
    chat = await _chat(request, user)
    changes: dict[str, Any] = {}
    if "title" in body.model_fields_set:
        if body.title is None:
            raise bad_request("Invalid input", "invalid_input", "title: cannot be null")
        changes["title"] = body.title
    if "character_id" in body.model_fields_set:
        if body.character_id is not None:
            await _character(request, user, body.character_id)
        changes["character_id"] = body.character_id
    if "model" in body.model_fields_set:
        changes["model"] = body.model
    async with hub_of(request).engine.begin() as conn:
        row = await store.update_chat(conn, user.id, chat["id"], changes, now_ms())
    if row is None:
        raise chat_not_found()
    return {"chat": chat_json(row)}


@endpoint()
async def delete_chat(request: Request, user: Principal):
    """Delete a chat and its messages: `{id, success}`."""
    chat = await _chat(request, user)
    async with hub_of(request).engine.begin() as conn:
        if not await store.delete_chat(conn, user.id, chat["id"]):
            raise chat_not_found()
    return {"id": chat["id"], "success": True}


# ---- messages -------------------------------------------------------------------------------


@endpoint(query=MessagesQuery)
async def list_messages(request: Request, user: Principal, query: MessagesQuery):
    """A page of a chat's messages, oldest first: the newest `limit`, or those before message
    `before`; `nextBefore` asks for the page older than this one: `{messages, hasMore, nextBefore}`."""
    chat = await _chat(request, user)
    async with hub_of(request).engine.connect() as conn:
        before = None
        if query.before is not None:
            before = await store.message_seq(conn, user.id, chat["id"], query.before)
            if before is None:
                raise bad_request("Invalid input", "invalid_cursor", "before: not a message of this chat")
        rows, more = await store.list_messages(conn, user.id, chat["id"], limit=query.limit, before=before)
    return {"messages": [message_json(r) for r in rows], "hasMore": more, "nextBefore": rows[0]["id"] if more and rows else None}


def title_from(text: str) -> str:
    line = " ".join(text.split())
    return line[:TITLE_FROM_MESSAGE].rstrip() + ("…" if len(line) > TITLE_FROM_MESSAGE else "")


def _auto_title(chat: dict[str, Any], text: str) -> dict[str, Any]:
    """The first message names an untitled chat."""
    if chat["message_count"] or chat["title"] != DEFAULT_TITLE or not text.strip():
        return {}
    return {"title": title_from(text)}


async def _store_turns(request: Request, user: Principal, chat: dict[str, Any], turns: list[tuple[str, str, dict[str, Any]]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    now = now_ms()
    async with hub_of(request).engine.begin() as conn:
        rows = await store.append_messages(conn, user.id, chat["id"], turns, now)
        if rows is None:  # deleted meanwhile
            raise chat_not_found()
        title = _auto_title(chat, turns[0][1]) if turns[0][0] == "user" else {}
        updated = await store.update_chat(conn, user.id, chat["id"], title, now) if title else await store.get_chat(conn, user.id, chat["id"])
    assert updated is not None
    return updated, rows


@endpoint(body=AppendBody)
async def append_message(request: Request, user: Principal, body: AppendBody):
    """Append a message without asking the assistant (`role` user by default; clients that ran
    the assistant elsewhere save its turns too): `{chat, message}` (201)."""
    chat = await _chat(request, user)
    updated, rows = await _store_turns(request, user, chat, [(body.role, body.text(), {})])
    return json({"chat": chat_json(updated), "message": message_json(rows[0])}, 201)


@endpoint(body=SaveBody)
async def save_messages(request: Request, user: Principal, body: SaveBody):
    """openloomi's `save-messages {chatId, messages}`: the app ran the assistant itself and
    keeps the transcript here. The chat is made (with that id) on first save; messages are
    keyed by their own ids, so saving the same transcript again, or a longer one while a reply
    streams, appends only what is new and updates what changed: `{success, chat, saved, updated}`."""
    latest: dict[str, tuple[str, str, str]] = {}
    for message in body.messages:  # the last copy of an id wins, in its first position
        latest[message.id] = (message.id, message.role, message.text())
    items = list(latest.values())
    first_user = next((text for _, role, text in items if role == "user" and text.strip()), "")
    now = now_ms()
    async with hub_of(request).engine.begin() as conn:
        chat = await store.get_chat(conn, user.id, body.chat_id)
        if chat is None:
            try:
                async with conn.begin_nested():
                    chat = await store.create_chat(conn, user.id, title=body.title or (title_from(first_user) if first_user else DEFAULT_TITLE),
                                                   character_id=None, model=None, now_ms=now, chat_id=body.chat_id)
            except IntegrityError:  # someone else's chat id, or our own made a moment ago
                chat = await store.get_chat(conn, user.id, body.chat_id)
                if chat is None:
                    raise chat_not_found() from None
            except store.TooMany:
                raise bad_request("Too many chats", "too_many_chats", f"at most {store.MAX_CHATS}") from None
        elif body.title or _auto_title(chat, first_user):
            await store.update_chat(conn, user.id, chat["id"], {"title": body.title} if body.title else _auto_title(chat, first_user), now)
        result = await store.save_messages(conn, user.id, chat["id"], items, now) if items else (0, 0)
        if result is None:
            raise chat_not_found()
        row = await store.get_chat(conn, user.id, chat["id"])
    assert row is not None
    return {"success": True, "chat": chat_json(row), "saved": result[0], "updated": result[1]}


def history(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The turns the model sees: the newest that fit MAX_HISTORY_CHARS, oldest first."""
    kept: list[dict[str, Any]] = []
    used = 0
    for row in reversed(rows):
        if not row["content"].strip():
            continue  # a saved tool-only turn: nothing for the model to read
        used += len(row["content"])
        if kept and used > MAX_HISTORY_CHARS:
            break
        kept.append({"role": row["role"], "content": row["content"]})
    return list(reversed(kept))


async def _conversation(request: Request, user: Principal, chat: dict[str, Any], body: SendBody, text: str) -> tuple[ChatRequest, list[dict[str, Any]]]:
    """The request for the model (system prompt, sources, history, the new turn) and the sources."""
    hub = hub_of(request)
    try:
        character = await _character(request, user, chat["character_id"])
    except ApiError:  # deleted a moment after the chat named it: the default speaks
        character = BUILTIN[DEFAULT_CHARACTER]
    model = body.model or chat["model"] or character["model"] or ""
    (await ready_gateway(hub)).targets("chat", model or None)  # 503/400/404 before any work
    try:
        since = grounding.parse_since(body.since)
    except ValueError:
        raise bad_request("Invalid input", "invalid_input", "since: not a timestamp or ISO 8601 date") from None
    async with hub.engine.connect() as conn:
        rows, _ = await store.list_messages(conn, user.id, chat["id"], limit=MAX_HISTORY_MESSAGES)
    messages = [{"role": "system", "content": character["system_prompt"]}, *history(rows), {"role": "user", "content": text}]
    sources: list[dict[str, Any]] = []
    if body.grounded:
        scope = Scope(body.source_chat_id, body.platform, body.account_id, since)
        sources = await grounding.ground(hub.engine, user.id, messages, scope, body.sources_limit)
        messages = grounding.with_context(messages, sources)
    params: dict[str, Any] = {}
    if body.temperature is not None:
        params["temperature"] = body.temperature
    if body.max_tokens is not None:
        params["max_tokens"] = body.max_tokens
    return ChatRequest(model, messages, body.stream, False, params), sources


def _reply_meta(model: str, usage: Any, sources: list[dict[str, Any]], finish: Any) -> dict[str, Any]:
    return {"model": model, "usage": usage.openai() if usage is not None else None,
            "sources": [{k: s[k] for k in ("n", "id", "platform", "chatId", "chatName", "senderName", "sentAt")} for s in sources],
            "finishReason": finish}


@wire.api_errors
@endpoint(body=SendBody)
async def send_message(request: Request, user: Principal, body: SendBody):
    """Send a user message and get the assistant's reply (grounded in the person's messages,
    streamed with `stream: true`): `{chat, message, reply, sources}`."""
    chat = await _chat(request, user)
    text = body.text()
    chat_request, sources = await _conversation(request, user, chat, body, text)
    gateway = gateway_of(hub_of(request))
    if chat_request.stream:
        stream = await wire.unless_disconnected(request, gateway.open_chat_stream(user.id, chat_request, "assistant chat"))
        return wire.event_stream(_stream(request, user, chat, text, stream, sources))
    result = await wire.unless_disconnected(request, gateway.chat(user.id, chat_request, "assistant chat"))
    choice = result.choices[0] if result.choices else {}
    reply = str((choice.get("message") or {}).get("content") or "")
    meta = _reply_meta(result.model, result.usage, sources, choice.get("finish_reason"))
    updated, rows = await _store_turns(request, user, chat, [("user", text, {}), ("assistant", reply, meta)])
    return {"chat": chat_json(updated), "message": message_json(rows[0]), "reply": message_json(rows[1]), "sources": sources}


async def _stream(request: Request, user: Principal, chat: dict[str, Any], text: str, stream: ChatStream,
                  sources: list[dict[str, Any]]) -> AsyncIterator[bytes]:
    """OpenAI chunks (the first carries `sources` and `chatId`), then the stored turn, then [DONE]."""
    extra: dict[str, Any] | None = {"sources": sources, "chatId": chat["id"]}
    texts: list[str] = []
    finish: Any = None
    model = ""
    try:
        async with contextlib.aclosing(stream.__aiter__()) as chunks:
            async for chunk in chunks:
                model = chunk.model or model
                if not chunk.choices:
                    continue
                texts.append(chunk.text())
                finish = chunk.choices[0].get("finish_reason") or finish
                data = chunk.openai()
                if extra:
                    data.update(extra)
                    extra = None
                yield wire.sse(data)
    except AIError as err:
        yield wire.sse_error(err)  # nothing stored: the turn can be sent again
        return
    if extra:
        yield wire.sse({"object": "chat.completion.chunk", "choices": [], **extra})
    meta = _reply_meta(model or stream.target.model, stream.usage, sources, finish)
    updated, rows = await _store_turns(request, user, chat, [("user", text, {}), ("assistant", "".join(texts), meta)])
    yield wire.sse({"object": "chat.turn", "chat": chat_json(updated), "message": message_json(rows[0]), "reply": message_json(rows[1])})
    yield wire.DONE


# ---- characters -----------------------------------------------------------------------------


@endpoint()
async def list_characters(request: Request, user: Principal):
    """The built-in characters, then the person's own: `{characters, defaultCharacterId}`."""
    async with hub_of(request).engine.connect() as conn:
        rows = await store.list_characters(conn, user.id)
    return {"characters": [character_json(c) for c in [*BUILTIN.values(), *rows]], "defaultCharacterId": DEFAULT_CHARACTER}


@endpoint(body=CharacterBody)
async def create_character(request: Request, user: Principal, body: CharacterBody):
    """A character `{name, systemPrompt, avatar?, description?, model?}`: `{character}` (201)."""
    fields = {"name": body.name, "system_prompt": body.system_prompt, "avatar": body.avatar or None,
              "description": body.description or None, "model": body.model}
    async with hub_of(request).engine.begin() as conn:
        try:
            row = await store.create_character(conn, user.id, fields, now_ms())
        except store.TooMany:
            raise bad_request("Too many characters", "too_many_characters", f"at most {store.MAX_CHARACTERS}") from None
    return json({"character": character_json(row)}, 201)


@endpoint()
async def get_character(request: Request, user: Principal):
    """One character, built-in or the person's own: `{character}`."""
    return {"character": character_json(await _character(request, user, request.path_params["characterId"]))}


def _read_only(character_id: str) -> None:
    if character_id in BUILTIN:
        raise ApiError(403, "Built-in characters cannot be changed", "character_read_only", "create your own character instead")


@endpoint(body=CharacterUpdate)
async def update_character(request: Request, user: Principal, body: CharacterUpdate):
    """Change a character's name, system prompt, avatar, description or model: `{character}`."""
    character_id = request.path_params["characterId"]
    _read_only(character_id)
    names = {"name": "name", "system_prompt": "system_prompt", "avatar": "avatar", "description": "description", "model": "model"}
    changes = {column: getattr(body, field) or None for field, column in names.items() if field in body.model_fields_set}
    row = None
    if len(character_id) <= MAX_ID:
        async with hub_of(request).engine.begin() as conn:
            row = await store.update_character(conn, user.id, character_id, changes, now_ms())
    if row is None:
        raise character_not_found()
    return {"character": character_json(row)}


@endpoint()
async def delete_character(request: Request, user: Principal):
    """Delete a character; chats that used it go back to the default: `{id, success}`."""
    character_id = request.path_params["characterId"]
    _read_only(character_id)
    deleted = False
    if len(character_id) <= MAX_ID:
        async with hub_of(request).engine.begin() as conn:
            deleted = await store.delete_character(conn, user.id, character_id)
    if not deleted:
        raise character_not_found()
    return {"id": character_id, "success": True}


routes = [
    Route("/api/chat/characters", list_characters, methods=["GET"]),
    Route("/api/chat/characters", create_character, methods=["POST"]),
    Route("/api/chat/characters/{characterId}", get_character, methods=["GET"]),
    Route("/api/chat/characters/{characterId}", update_character, methods=["PUT", "PATCH"]),
    Route("/api/chat/characters/{characterId}", delete_character, methods=["DELETE"]),
    Route("/api/chat/save-messages", save_messages, methods=["POST"]),
    Route("/api/chat", list_chats, methods=["GET"]),
    Route("/api/chat", create_chat, methods=["POST"]),
    Route("/api/chat/{chatId}", get_chat, methods=["GET"]),
    Route("/api/chat/{chatId}", update_chat, methods=["PUT", "PATCH"]),
    Route("/api/chat/{chatId}", delete_chat, methods=["DELETE"]),
    Route("/api/chat/{chatId}/messages", list_messages, methods=["GET"]),
    Route("/api/chat/{chatId}/messages", append_message, methods=["POST"]),
    Route("/api/chat/{chatId}/send", send_message, methods=["POST"]),
]
