"""Events API over HTTP (`POST /api/slack/events`): verify, answer the challenge, hand events on.

Verification is Slack's v0 scheme with `LOOMI_SLACK_SIGNING_SECRET`: HMAC-SHA256 over
`v0:{X-Slack-Request-Timestamp}:{raw body}`, compared in constant time by slack_sdk's
SignatureVerifier; a timestamp more than 5 minutes away from now is stale. Forged, stale or
unsigned requests raise WebhookRejected(401) and nothing is queued. No I/O here.
"""

from __future__ import annotations

import json
import time
from typing import Any, Callable

from slack_sdk.signature import Clock, SignatureVerifier

from connectors.slack.settings import SlackSettings
from connectors.base import WebhookEvent, WebhookRejected, WebhookReply, WebhookRequest
from connectors.slack.inbound import without_secrets

MAX_AGE_SECONDS = 5 * 60


class _Clock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


class SlackWebhook:
    def __init__(self, settings: SlackSettings, now: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.now = now

    def handle_webhook(self, request: WebhookRequest) -> WebhookReply:
        self.verify(request)
        try:
            body: Any = json.loads(request.body)
        except (UnicodeDecodeError, ValueError):
            raise WebhookRejected(400, "body is not JSON") from None
        if not isinstance(body, dict):
            raise WebhookRejected(400, "body is not a JSON object")
        kind = body.get("type")
        if kind == "url_verification":
            return WebhookReply(200, {"challenge": str(body.get("challenge", ""))})
        if kind != "event_callback":
            return WebhookReply(200)  # app_rate_limited and the like: acknowledged, nothing to queue
        event_id = body.get("event_id")
        if not isinstance(event_id, str) or not event_id or not isinstance(body.get("event"), dict):
            raise WebhookRejected(400, "event_callback without event_id or event")
        return WebhookReply(200, events=[WebhookEvent(delivery_id=event_id, payload=without_secrets(body), external_id=team_of(body))])

    def verify(self, request: WebhookRequest) -> None:
        if self.settings.signing_secret is None:
            raise WebhookRejected(500, "LOOMI_SLACK_SIGNING_SECRET is not set")
        secret = self.settings.signing_secret.get_secret_value()
        stamp = request.headers.get("x-slack-request-timestamp", "")
        signature = request.headers.get("x-slack-signature", "")
        if not stamp.isdigit() or not signature:
            raise WebhookRejected(401, "missing Slack signature")
        if abs(self.now() - int(stamp)) > MAX_AGE_SECONDS:
            raise WebhookRejected(401, "stale Slack request")
        try:
            valid = SignatureVerifier(secret, _Clock(self.now)).is_valid(request.body, stamp, signature)
        except UnicodeDecodeError:  # slack_sdk decodes the body before hashing it
            valid = False
        if not valid:
            raise WebhookRejected(401, "bad Slack signature")


def team_of(body: dict[str, Any]) -> str | None:
    """The workspace an event belongs to: `team_id`, else the first authorization's team."""
    if body.get("team_id"):
        return str(body["team_id"])
    for auth in body.get("authorizations") or ():
        if isinstance(auth, dict) and auth.get("team_id"):
            return str(auth["team_id"])
    return None
