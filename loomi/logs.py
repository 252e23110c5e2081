"""Logging set-up with secret redaction, for every logger of every library.

Credentials travel in places we do not control: httpx logs each request URL (Telegram's
`/bot<token>/getUpdates`), SDKs log headers and query strings, exceptions quote payloads.
The filter formats each record's message completely (arguments of any type, the traceback,
the stack) and masks it before any handler writes it. Two layers: patterns for the shapes
credentials take (bot tokens in paths, Slack tokens, Bearer headers, secret query params and
JSON fields, JWTs, API keys), and the exact values the vault has sealed or opened, so a
credential with no recognisable shape is masked too.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any, Iterable

MASK = "[redacted]"
_NAMES = r"client_secret|access_token|refresh_token|id_token|auth_?token|bot_?token|app_?token|api_?key|webhook_secret|signing_secret|password|passwd|secret|token|ticket"
_ANY = rf"(?:{_NAMES})"
_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # query strings: ?code=…&state=… (words too common to mask outside a query string)
    (re.compile(rf"(?i)([?&;](?:{_NAMES}|code|state|key|sig|signature)=)[^&\s\"'<>]*"), rf"\1{MASK}"),
    # form bodies and key=value lines: client_secret=…, token=…
    (re.compile(rf"(?i)((?<![\w-]){_ANY}=)[^&\s\"'<>,]*"), rf"\1{MASK}"),
    # JSON and Python reprs: "password": "…", 'bot_token': '…'
    (re.compile(rf"(?i)([\"']{_ANY}[\"']\s*:\s*[\"'])[^\"']*"), rf"\1{MASK}"),
    # Authorization headers: Bearer …, Basic …, Bot … (Discord)
    (re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?(?:bearer|basic|bot)?\s*)[^\s\"',]+"), rf"\1{MASK}"),
    (re.compile(r"(?i)\b((?:bearer|basic)\s+)[\w.~+/=-]{8,}"), rf"\1{MASK}"),
    # Telegram bot tokens: /bot<id>:<secret>/ in URL paths, and bare <id>:<secret>
    (re.compile(r"(?<=/bot)[^/\s?#\"']{10,}"), MASK),
    (re.compile(r"(?<!\d)\d{3,15}:[\w-]{20,}"), MASK),
    # Slack tokens, OpenAI-style keys, JWTs (hub tokens are JWTs)
    (re.compile(r"\bxox[a-z]-[\w-]+|\bxapp-[\w-]+|\bsk-[\w-]{16,}"), MASK),
    (re.compile(r"\beyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*"), MASK),
]
# Something every shape above needs, in one search: a line without any (most lines: an access
# log line, "ingest paused") skips the patterns. tests/test_logs.py checks it is a superset.
_TRIGGER = re.compile(rf"(?i)=|authorization|bearer|basic|/bot|\d:[\w-]{{20}}|xox[a-z]-|xapp-|sk-|eyj|[\"']{_ANY}[\"']")


class _Known:
    """Exact credential values seen by the vault; bounded, most recently seen kept.

    Looked up by their first PREFIX characters at each position of a line: one dict probe per
    character, whatever the number of values (a regex alternation of thousands of values costs
    milliseconds per line).
    """

    LIMIT = 4096
    PREFIX = 8  # also the shortest value remembered

    def __init__(self) -> None:
        self._values: dict[str, None] = {}
        self._lock = threading.Lock()
        self.by_prefix: dict[str, tuple[str, ...]] = {}

    def add(self, values: Iterable[str]) -> None:
        values = [v for v in values if len(v) >= self.PREFIX]
        if not values:
            return
        with self._lock:
            fresh = False
            for value in values:
                fresh = fresh or value not in self._values
                self._values.pop(value, None)
                self._values[value] = None  # most recent last
            while len(self._values) > self.LIMIT:
                self._values.pop(next(iter(self._values)))
            if fresh:
                index: dict[str, list[str]] = {}
                for value in self._values:
                    index.setdefault(value[: self.PREFIX], []).append(value)
                # longest first, so a value that extends another is masked whole
                self.by_prefix = {k: tuple(sorted(v, key=len, reverse=True)) for k, v in index.items()}

    def mask(self, text: str) -> str:
        index, size = self.by_prefix, self.PREFIX
        if not index or len(text) < size:
            return text
        if len(index) <= 64 and not any(prefix in text for prefix in index):
            return text  # few values: a C-speed substring test each beats a probe per character
        out: list[str] = []
        start = i = 0
        end = len(text) - size
        while i <= end:
            candidates = index.get(text[i : i + size])
            if candidates:
                found = next((v for v in candidates if text.startswith(v, i)), None)
                if found:
                    out += (text[start:i], MASK)
                    i = start = i + len(found)
                    continue
            i += 1
        return "".join(out) + text[start:] if out else text

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
            self.by_prefix = {}


_known = _Known()
_PUBLIC_KEY = re.compile(r"(?i)(^|_)(ids?|names?|urls?|scopes?|type|kind|mode|expires(_at|_in)?|at)$|Id$")


def remember_secrets(credentials: Any) -> None:
    """Mask these credential values in every later log line (the vault calls this).

    String leaves of 8+ characters count, except under keys that name public facts (ids,
    names, URLs, scopes): masking a team id would only make the logs useless.
    """
    found: list[str] = []

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, str(k))
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and not _PUBLIC_KEY.search(key):
            found.append(value)

    walk(credentials)
    _known.add(found)


def redact(text: str) -> str:
    """Shapes first (they need the text's structure: a remembered value that happens to be a
    key such as "password" must not hide the field the value sits in), then known values."""
    if _TRIGGER.search(text):
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
    return _known.mask(text)


class RedactSecrets(logging.Filter):
    """Format the record completely, then mask: nothing unmasked reaches a handler."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string must not hide the line
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._formatter.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


# Libraries that log one INFO line per HTTP request (with its URL) or per cron run.
CHATTY = ("httpx", "httpcore", "alembic", "arq.worker")


def handler(stream: Any = None) -> logging.Handler:
    """The hub's log handler: one line per record, secrets masked."""
    out = logging.StreamHandler(stream)
    out.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    out.addFilter(RedactSecrets())
    return out


def configure(level: str = "info") -> None:
    root = logging.getLogger()
    root.handlers[:] = [handler()]
    root.setLevel(level.upper())
    debug = level.lower() == "debug"
    for quiet in CHATTY:  # per-request and per-migration chatter, unless asked for
        logging.getLogger(quiet).setLevel(logging.NOTSET if debug else logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
