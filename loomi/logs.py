"""Logging set-up with secret redaction.

Tokens travel in query strings (OAuth `code`/`state`, `?authToken=`) and could reach the
access log or an exception message; the filter masks them before any handler sees the record.
"""

from __future__ import annotations

import logging
import re

_SECRET_PARAM = re.compile(
    r"(?i)([?&](?:code|state|token|auth_?token|access_token|refresh_token|secret|password|key|api_key|ticket)=)[^&\s\"']*"
)
_SECRET_VALUE = re.compile(
    r"(eyJ[\w-]{6,}\.[\w-]{6,}\.[\w-]{6,}|xox[abposr]-[\w-]+|xapp-[\w-]+|\b\d{6,12}:[\w-]{30,}\b|sk-[\w-]{16,})"
)


def redact(text: str) -> str:
    return _SECRET_VALUE.sub("[redacted]", _SECRET_PARAM.sub(r"\1[redacted]", text))


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)  # type: ignore[assignment]
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def configure(level: str = "info") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for quiet in ("alembic", "arq.worker"):  # per-migration and per-cron-run chatter
        logging.getLogger(quiet).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
