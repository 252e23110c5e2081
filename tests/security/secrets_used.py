"""Which values of a run are secret: what the hub seals per account and the app settings a
test configures. Shared by the database/error-body scan and the log scan (tests/test_logs.py)."""

from __future__ import annotations

import re
from typing import Any

MIN_LEN = 8  # shorter values (ids, numbers) would match by chance
# credential fields that are secret (the rest are ids, names, paths and URLs the API shows anyway)
SECRET_FIELD = re.compile(r"token|secret|session|password|passwd|key|cookie|auth|credential|ticket", re.I)
SECRET_SETTING = re.compile(r"SECRET|TOKEN|PASSWORD|_KEY$|APP_KEY|API_KEY")


def values(data: Any, secret: bool = False) -> list[str]:
    """The secret values in a credentials dict: leaves under a field whose name says secret."""
    if isinstance(data, dict):
        return [v for k, item in data.items() for v in values(item, secret or bool(SECRET_FIELD.search(str(k))))]
    if isinstance(data, list):
        return [v for item in data for v in values(item, secret)]
    return [str(data)] if secret and isinstance(data, (str, int)) and len(str(data)) >= MIN_LEN else []


def settings_secrets(env: dict[str, str]) -> list[str]:
    """`LOOMI_*` settings that name a secret, token, key or password (not *_TOKEN_URL)."""
    return [v for k, v in env.items() if SECRET_SETTING.search(k) and len(v) >= MIN_LEN and "://" not in v]
