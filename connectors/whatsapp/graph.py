"""The Graph API calls the connector makes (httpx; Meta publishes no Python SDK for the Cloud
API), and Meta's errors mapped onto the hub's exceptions.

Errors come as `{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}`.
Rejected credentials: HTTP 401 or code 190 (expired/invalid token), 102 (session), 10/200
(permission). Rate limits: HTTP 429, 4/80007 (app/account call limits), 130429 (throughput),
131056 (too many messages to one person: Meta allows about one per 6 s per pair). Meta sends
no Retry-After on most of these, so the waits below are its documented windows.
"""

from __future__ import annotations

from typing import Any

import httpx

from connectors.base import NeedsReauth, RateLimited

TIMEOUT = httpx.Timeout(15.0, connect=5.0)
REJECTED = {190, 102, 10, 200}
RATE_LIMITS = {130429: 2.0, 131056: 6.0, 4: 60.0, 80007: 60.0, 133016: 60.0}


class GraphError(Exception):
    """Meta refused a call for a reason that is neither credentials nor a rate limit."""

    def __init__(self, status: int, code: int | None, message: str) -> None:
        super().__init__(f"WhatsApp refused ({status}, code {code}): {message}")
        self.status, self.code, self.message = status, code, message


def client(base_url: str, access_token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url.rstrip("/") + "/", timeout=TIMEOUT,
                             headers={"Authorization": f"Bearer {access_token}"})


def checked(response: httpx.Response) -> dict[str, Any]:
    """The JSON of a 2xx answer; otherwise NeedsReauth, RateLimited or GraphError."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.is_success and isinstance(body, dict):
        return body
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    code = error.get("code") if isinstance(error.get("code"), int) else None
    message = str(error.get("message") or response.reason_phrase or "no answer")
    if response.status_code == 429 or code in RATE_LIMITS:
        retry_after = _retry_after(response) or RATE_LIMITS.get(code or 0, 60.0)
        raise RateLimited(retry_after, f"WhatsApp rate limit (code {code}): {message}")
    if response.status_code == 401 or code in REJECTED or error.get("type") == "OAuthException":
        raise NeedsReauth(f"Meta: {message}")
    raise GraphError(response.status_code, code, message)


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return max(float(response.headers.get("retry-after", "")), 0.0)
    except ValueError:
        return None
