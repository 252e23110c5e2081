"""The data that crosses the connector seam and lands in the store: the normalized message
model of DESIGN.md, raw envelopes, accounts and the changes ingest applies.

Plain dataclasses, no I/O and no imports from the rest of the hub, so every layer can use
them: connectors produce them, `store/` writes them, `workers/` moves them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class AccountState(str, enum.Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"
    NEEDS_REAUTH = "needs_reauth"
    STOPPED = "stopped"


class ChatType(str, enum.Enum):
    DM = "dm"
    GROUP = "group"
    CHANNEL = "channel"
    THREAD = "thread"


class ChangeKind(str, enum.Enum):
    UPSERT = "upsert"  # a message as seen: inserted once, later sightings change nothing
    EDIT = "edit"  # the message's new text: applied only if newer than what is stored
    DELETE = "delete"  # a tombstone: the row stays, `deleted_at` set, never resurrected
    REACTION = "reaction"  # an emoji added to or removed from a message (`reaction`)
    CHAT = "chat"  # the chat's name, type or members as the platform now says (`chat`)
    STATUS = "status"  # how far one of OUR sent messages got (`status`: sent|delivered|read|failed)


@dataclass(frozen=True)
class Envelope:
    """One raw platform delivery, exactly as received. Listeners and webhooks make these."""

    platform: str
    account_id: str
    delivery_id: str  # the platform's id for this delivery: Slack event_id, Telegram update_id
    received_at: int  # ms
    payload: dict[str, Any]
    source: str = "listen"  # listen | webhook | backfill


@dataclass
class Attachment:
    name: str | None = None
    url: str | None = None
    content_type: str | None = None
    size: int | None = None


@dataclass
class Message:
    """A normalized message, whatever the platform (DESIGN.md, 'The normalized message')."""

    chat_id: str
    native_id: str
    sent_at: int  # ms
    chat_type: ChatType = ChatType.CHANNEL
    chat_name: str | None = None
    thread_id: str | None = None
    reply_to_id: str | None = None
    sender_id: str | None = None
    sender_name: str | None = None
    is_self: bool = False
    text: str = ""
    content_type: str = "text"
    attachments: list[Attachment] = field(default_factory=list)
    mentions: list[str] = field(default_factory=list)
    edited_at: int | None = None


@dataclass
class Reaction:
    emoji: str  # "" with added=False: the sender took back whatever they had (one-per-person platforms)
    sender_id: str | None = None
    added: bool = True  # False: the sender took it back


@dataclass
class ChatInfo:
    """What the platform says a chat now is; None fields are left as they were."""

    name: str | None = None
    type: ChatType | None = None
    members: list[str] | None = None


@dataclass
class Change:
    kind: ChangeKind
    chat_id: str
    native_id: str  # REACTION: the reacted message; CHAT: ""
    message: Message | None = None  # UPSERT and EDIT carry the message as it now is
    at: int | None = None  # EDIT: edited_at; DELETE: deleted_at; REACTION: when (ms)
    reaction: Reaction | None = None  # REACTION
    chat: ChatInfo | None = None  # CHAT
    status: str | None = None  # STATUS: never moves back (read > delivered > sent)


@dataclass
class Account:
    """A connected account as a connector sees it: credentials already decrypted."""

    id: str
    user_id: str
    platform: str
    external_id: str
    name: str
    credentials: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)


@dataclass
class AccountSpec:
    """What a setup step learned: enough to create or update the account row."""

    external_id: str
    name: str
    credentials: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)
    expires_at: int | None = None  # ms, when the access token needs refreshing
