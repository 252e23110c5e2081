"""The one interface every platform implements, and the types that cross it.

Shape (after mautrix bridgev2 and matterbridge): a small required core (`listen`, `normalize`,
`send`) plus optional abilities as separate runtime-checkable protocols (`Backfiller`,
`OAuthSetup`, `CredentialSetup`) that the core checks for. Nothing here does I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from config.settings import PlatformSettings


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
class Change:
    kind: ChangeKind
    chat_id: str
    native_id: str
    message: Message | None = None  # UPSERT and EDIT carry the message as it now is
    at: int | None = None  # EDIT: edited_at; DELETE: deleted_at (ms)


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


@dataclass
class Outbound:
    chat_id: str
    text: str
    reply_to_id: str | None = None
    thread_id: str | None = None


@dataclass
class Sent:
    native_id: str
    chat_id: str
    sent_at: int
    raw: dict[str, Any]
    thread_id: str | None = None


@dataclass
class Page:
    envelopes: list[Envelope]
    cursor: str | None  # None: no more history


class NeedsReauth(Exception):
    """The platform rejected the credentials: stop retrying until the person reconnects."""


class RateLimited(Exception):
    def __init__(self, retry_after: float, detail: str = "") -> None:
        super().__init__(detail or f"rate limited, retry after {retry_after} s")
        self.retry_after = retry_after


class ListenContext(Protocol):
    """What a running listener gets from its supervisor."""

    account: Account
    resume: dict[str, Any]  # what the listener last saved with `emit`

    async def emit(self, envelopes: list[Envelope], resume: dict[str, Any] | None = None) -> None:
        """Append durably to the inbound stream (and atomically save `resume`); only then ack
        the platform. Raises LeaseLost when another worker took this account over."""

    async def report(self, state: AccountState, detail: str | None = None) -> None: ...

    async def reconnected(self) -> None:
        """Tell the supervisor the connection came back after a drop: it schedules gap recovery."""


@runtime_checkable
class Connector(Protocol):
    platform: ClassVar[str]

    def __init__(self, settings: PlatformSettings) -> None: ...

    async def listen(self, ctx: ListenContext) -> None:
        """Own the connection until cancelled. Return or raise to be restarted with backoff;
        raise NeedsReauth when credentials are rejected."""

    def normalize(self, envelope: Envelope) -> list[Change]:
        """Pure: no I/O. Raise ValueError on a payload it cannot read (it goes to the DLQ)."""

    async def send(self, account: Account, outbound: Outbound) -> Sent:
        """Post a message; raise RateLimited with the platform's retry-after."""


@runtime_checkable
class Backfiller(Protocol):
    async def list_chats(self, account: Account) -> list[str]: ...

    async def backfill(self, account: Account, chat_id: str, cursor: str | None, oldest: str | None) -> Page:
        """One page of history, newest first or oldest first as the platform gives it.
        `oldest` (gap recovery) is epoch milliseconds as a decimal string, exclusive."""


@runtime_checkable
class OAuthSetup(Protocol):
    def authorize_params(self) -> dict[str, str]:
        """Extra query parameters for the authorize URL (e.g. Slack's `user_scope`)."""

    async def account_from_token(self, token: dict[str, Any]) -> AccountSpec:
        """Turn the token endpoint's JSON into an account."""


@runtime_checkable
class Disconnecter(Protocol):
    async def disconnect(self, account: Account) -> None:
        """Undo what connecting set up on the platform (a registered webhook…); best effort."""


@runtime_checkable
class CredentialSetup(Protocol):
    async def connect(self, fields: dict[str, Any]) -> AccountSpec:
        """Check pasted credentials (a bot token…) against the platform; raise NeedsReauth if bad."""


@dataclass
class WebhookRequest:
    headers: dict[str, str]  # lower-case names
    body: bytes
    query: dict[str, str]
    account: Account | None = None  # set on per-account routes (/api/{platform}/webhook/{accountId})


@dataclass
class WebhookEvent:
    delivery_id: str
    payload: dict[str, Any]
    external_id: str | None = None  # routes the event to every account with this external id


@dataclass
class WebhookReply:
    status: int = 200
    body: dict[str, Any] | None = None
    events: list[WebhookEvent] = field(default_factory=list)


class WebhookRejected(Exception):
    """Forged, stale or malformed: answered with `status`, nothing stored."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@runtime_checkable
class WebhookReceiver(Protocol):
    def handle_webhook(self, request: WebhookRequest) -> WebhookReply:
        """Verify and parse, nothing more (no I/O): the route queues the events, then answers."""
