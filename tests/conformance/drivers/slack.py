"""Conformance driver for Slack: FakeSlack (Web API + Socket Mode + signed HTTP events), a
workspace installed through OAuth v2 (`/api/integrations/slack/oauth/start` -> callback)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

from connectors.slack.connector import SlackConnector
from tests.fakes.slack import FakeSlack

CLIENT_ID, CLIENT_SECRET, SIGNING_SECRET = "123.456", "conformance-client-secret", "conformance-signing-secret"
CHANNEL, ALICE, BOB = "C0CONF", "U0ALICE", "U0BOB"


class Driver:
    platform = "slack"
    abilities = {"edit", "delete", "reply", "attachment", "mention", "reaction", "backfill", "send", "webhook",
                 "disconnect", "rate_limit"}

    def __init__(self) -> None:
        self.fake = FakeSlack()
        self._ping = SlackConnector.ping_interval

    async def start(self) -> dict[str, str]:
        await self.fake.start()
        self.fake.add_user(ALICE, "alice")
        self.fake.add_user(BOB, "bob")
        self.fake.add_channel(CHANNEL, "conformance")
        SlackConnector.ping_interval = 0.2  # notice a dead socket in 0.2 s, not slack_sdk's 5 s
        return {
            "LOOMI_SLACK_BASE_URL": self.fake.base_url,
            "LOOMI_SLACK_CLIENT_ID": CLIENT_ID,
            "LOOMI_SLACK_CLIENT_SECRET": CLIENT_SECRET,
            "LOOMI_SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "LOOMI_SLACK_APP_TOKEN": self.fake.app_token,
        }

    async def stop(self) -> None:
        SlackConnector.ping_interval = self._ping
        await self.fake.stop()

    async def connect(self, hub: Any, headers: dict[str, str]) -> str:
        r = await hub.client.get("/api/integrations/slack/oauth/start", headers={**headers, "Accept": "application/json"})
        assert r.status_code == 200, r.text
        params = {k: v[0] for k, v in parse_qs(urlparse(r.json()["url"]).query).items()}
        f = self.fake
        f.add_oauth_code("conf-code", CLIENT_ID, CLIENT_SECRET, params["redirect_uri"], f.team_id, f.team_name,
                         f.bot_token, f.bot_user_id, bot_id=f.bot_id)
        done = await hub.client.get("/api/slack/callback", params={"code": "conf-code", "state": params["state"]})
        assert done.status_code == 200, done.text
        return str(done.json()["account"]["id"])

    async def post_message(self, text: str, **kw: Any) -> str:
        if kw.get("mention"):
            text = f"<@{BOB}> {text}"
        files = [{"id": "F0CONF", "name": "report.pdf", "mimetype": "application/pdf", "size": 1024,
                  "url_private": "https://files.slack.com/files-pri/T0/report.pdf"}] if kw.get("attachment") else None
        return self.fake.post_message(CHANNEL, ALICE, text, thread_ts=kw.get("reply_to"), files=files)

    async def edit(self, native_id: str, text: str) -> None:
        self.fake.edit_message(CHANNEL, native_id, text)

    async def delete(self, native_id: str) -> None:
        self.fake.delete_message(CHANNEL, native_id)

    async def react(self, native_id: str, emoji: str) -> None:
        self.fake.push_event({"type": "reaction_added", "user": BOB, "reaction": "thumbsup",
                              "item": {"type": "message", "channel": CHANNEL, "ts": native_id},
                              "item_user": ALICE, "event_ts": f"{time.time():.6f}"})

    async def drop_connection(self) -> None:
        self.fake.drop_connections()

    async def seed_history(self, n: int) -> list[str]:
        return [self.fake.add_history_only(CHANNEL, ALICE, f"history {i}") for i in range(n)]

    async def forged_webhook(self, hub_url: str, account_id: str) -> int:
        body = json.dumps({"type": "event_callback", "team_id": self.fake.team_id, "event_id": "EvForged",
                           "event": {"type": "message", "channel": CHANNEL, "user": ALICE, "text": "forged",
                                     "ts": f"{time.time():.6f}"}})
        stamp = str(int(time.time()))
        signature = "v0=" + hmac.new(b"not-the-signing-secret", f"v0:{stamp}:{body}".encode(), hashlib.sha256).hexdigest()
        async with httpx.AsyncClient(base_url=hub_url) as http:
            r = await http.post("/api/slack/events", content=body, headers={
                "content-type": "application/json", "x-slack-request-timestamp": stamp, "x-slack-signature": signature})
        return r.status_code

    def sent_texts(self) -> list[str]:
        return [str(m.get("text")) for m in self.fake.sent_messages]

    async def rate_limit_next(self, n: int) -> None:
        self.fake.fail_next("chat.postMessage", status=429, retry_after=1, times=n)
