"""The one interface every platform implements, and the types that cross it.

Shape (after mautrix bridgev2 and matterbridge): a small required core (`listen`, `normalize`,
`send`) plus optional abilities as separate runtime-checkable protocols (`Backfiller`,
`OAuthSetup`, `CredentialSetup`, `LoginFlow`, `WebhookReceiver`, `WebhookVerifier`,
`AppListener`, `Disconnecter`) that the core checks for. Nothing here does I/O. The data types
live in `store/model.py` (the store writes them too) and are re-exported here, so a connector
imports everything it needs from this one module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from config.settings import PlatformSettings
from store.model import (
    Account,
    AccountSpec,
    AccountState,
    Attachment,
    Change,
    ChangeKind,
    ChatInfo,
    ChatType,
    Envelope,
    Message,
    Reaction,
)

__all__ = [
    "Account", "AccountSpec", "AccountState", "AppListenContext", "AppListener", "Attachment",
    "Backfiller", "Change", "ChangeKind", "ChatInfo", "ChatType", "Connector", "CredentialSetup",
    "Disconnecter", "Envelope", "ListenContext", "LocalListener", "LoginFlow", "LoginStep", "Message", "NeedsReauth",
    "NotConfigured", "OAuthSetup", "PlatformUnavailable", "Outbound", "Page", "RateLimited", "Reaction", "Sent",
    "SetupContext", "WebhookEvent", "WebhookReceiver", "WebhookRejected", "WebhookReply",
    "WebhookRequest", "WebhookVerifier",
]


@dataclass
class Outbound:
    chat_id: str
    text: str
    reply_to_id: str | None = None
    thread_id: str | None = None
    # The raw payload of the newest message the other side sent in this chat, as stored (None
    # if there is none). Platforms that let a bot speak only inside a conversation someone
    # started read their token from it: QQ's passive-reply msg_id, WeChat's context_token,
    # DingTalk's session webhook. Filled by the one send path (workers/outbound.py).
    last_inbound: dict[str, Any] | None = None


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


class PlatformUnavailable(Exception):
    """The platform could not be reached (DNS, connection refused, timeout): the API answers 502
    `platform_unreachable`; a listener raising it is retried with backoff like any failure."""


class NotConfigured(Exception):
    """An app-level setting the platform needs is missing: the API answers 503
    `platform_not_configured` naming the variable."""

    def __init__(self, variable: str, detail: str = "") -> None:
        super().__init__(detail or f"set {variable}")
        self.variable = variable


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

    def normalize(self, envelope: Envelope, account: Account) -> list[Change]:
        """Pure: no I/O. `account` (its external id, settings) tells which messages are its own.
        Raise ValueError on a payload it cannot read (it goes to the DLQ)."""

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


@dataclass(frozen=True)
class SetupContext:
    """Who is connecting, and how the platform reaches the hub (no trailing slash): a connector
    that needs a webhook keeps `public_url` in the account's settings and builds
    `{public_url}/api/{platform}/webhook/{account.id}` itself."""

    user_id: str
    public_url: str


@runtime_checkable
class CredentialSetup(Protocol):
    async def connect(self, fields: dict[str, Any], setup: SetupContext) -> AccountSpec:
        """Check pasted credentials (a bot token…) against the platform. Raise NeedsReauth with
        the platform's complaint if it refuses them, ValueError for missing or malformed fields,
        NotConfigured when an app-level setting is missing."""


@dataclass
class LoginStep:
    """Where a multi-step sign-in stands. The route shows it and keeps `state` (sealed) for
    the next call; the account is created only at `done`."""

    kind: str  # "fields" | "qr" | "wait" | "done" | "failed"
    message: str = ""
    fields: list[str] = field(default_factory=list)  # kind=fields: what the person submits next
    qr_url: str | None = None  # kind=qr: what to show (or encode as a QR code)
    spec: AccountSpec | None = None  # kind=done
    state: dict[str, Any] = field(default_factory=dict)

    KINDS: ClassVar[tuple[str, ...]] = ("fields", "qr", "wait", "done", "failed")


@runtime_checkable
class LoginFlow(Protocol):
    """Sign-in that takes several steps: a QR code to scan, a phone code, a 2FA password."""

    async def login_start(self, fields: dict[str, Any], setup: SetupContext) -> LoginStep: ...

    async def login_next(self, state: dict[str, Any], fields: dict[str, Any], setup: SetupContext) -> LoginStep:
        """The client polls (`fields` empty) or submits what the last step asked for."""


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
    text: str | None = None  # a plain-text answer (echoed challenges, WeChat's "success")
    content_type: str = "text/plain"


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


@runtime_checkable
class WebhookVerifier(Protocol):
    def verify_webhook(self, request: WebhookRequest) -> WebhookReply:
        """Answer the platform's GET check on a per-account webhook (Meta's `hub.challenge`,
        WeChat's `echostr`); raise WebhookRejected when it does not come from the platform."""


class AppListenContext(Protocol):
    """What an app-wide listener gets: events are routed to accounts by external id."""

    platform: str
    resume: dict[str, Any]

    async def emit(self, events: list[WebhookEvent], resume: dict[str, Any] | None = None) -> None:
        """Queue each event for every enabled account of this platform whose external id it
        names (unknown ids are dropped), atomically with `resume`; only then ack the platform."""

    async def report(self, state: AccountState, detail: str | None = None) -> None: ...

    async def reconnected(self) -> None: ...


@runtime_checkable
class LocalListener(Protocol):
    """An account only some machines can listen to (a Mac's iMessage database): a worker takes
    it only where `listens_here` says so, so on a hub with several machines the Mac's worker
    gets it instead of another worker retrying forever."""

    def listens_here(self, settings: dict[str, Any]) -> bool: ...


@runtime_checkable
class AppListener(Protocol):
    """One connection for the whole app, not one per account (Discord's bot gateway sees every
    guild the bot is in). The supervisor runs one per platform across all workers while an
    enabled account of it exists, and runs no per-account `listen` for such a connector."""

    def app_configured(self) -> bool: ...

    async def listen_app(self, ctx: AppListenContext) -> None: ...

