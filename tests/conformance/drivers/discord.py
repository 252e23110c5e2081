"""Conformance driver for Discord: FakeDiscord (REST v10 + bot gateway), a guild connected
through the OAuth2 bot install (`/api/integrations/discord/oauth/start` -> `/api/discord/callback`).
No webhook: Discord delivers guild messages over the gateway only."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

from connectors.discord.connector import DiscordConnector
from tests.fakes.discord import FakeDiscord

SEND_ROUTE = "POST /channels/{channel_id}/messages"


class Driver:
    platform = "discord"
    abilities = {"edit", "delete", "reply", "attachment", "mention", "reaction", "backfill", "send",
                 "disconnect", "rate_limit"}

    def __init__(self) -> None:
        self.fake = FakeDiscord(heartbeat_interval_ms=1000)
        self._delay = DiscordConnector.reidentify_delay

    async def start(self) -> dict[str, str]:
        f = await self.fake.start()
        self.guild = f.add_guild("Conformance", bot_member=False)  # joins through the OAuth install
        self.channel = f.add_channel(self.guild, "conformance")
        self.alice, self.bob = f.add_user("alice"), f.add_user("bob")
        DiscordConnector.reidentify_delay = 0.1  # discord.py pauses 5 s before a re-IDENTIFY
        return {
            "LOOMI_DISCORD_BASE_URL": f.base_url,
            "LOOMI_DISCORD_CLIENT_ID": f.client_id,
            "LOOMI_DISCORD_CLIENT_SECRET": f.client_secret,
            "LOOMI_DISCORD_BOT_TOKEN": f.bot_token,
        }

    async def stop(self) -> None:
        DiscordConnector.reidentify_delay = self._delay
        await self.fake.stop()

    async def connect(self, hub: Any, headers: dict[str, str]) -> str:
        r = await hub.client.get("/api/integrations/discord/oauth/start", headers={**headers, "Accept": "application/json"})
        assert r.status_code == 200, r.text
        params = {k: v[0] for k, v in parse_qs(urlparse(r.json()["url"]).query).items()}
        assert params["scope"] == "identify guilds bot" and params["permissions"]
        self.fake.add_oauth_code("conf-code", self.guild, redirect_uri=params["redirect_uri"])
        done = await hub.client.get("/api/discord/callback",
                                    params={"code": "conf-code", "state": params["state"], "guild_id": self.guild})
        assert done.status_code == 200, done.text
        return str(done.json()["account"]["id"])

    async def post_message(self, text: str, **kw: Any) -> str:
        mentions = [self.bob] if kw.get("mention") else None
        if mentions:
            text = f"<@{self.bob}> {text}"
        attachments = [{"filename": "report.pdf", "size": 1024, "content_type": "application/pdf"}] if kw.get("attachment") else None
        return self.fake.post_message(self.channel, self.alice, text, reply_to=kw.get("reply_to"),
                                      mentions=mentions, attachments=attachments)

    async def edit(self, native_id: str, text: str) -> None:
        self.fake.edit_message(self.channel, native_id, text)

    async def delete(self, native_id: str) -> None:
        self.fake.delete_message(self.channel, native_id)

    async def react(self, native_id: str, emoji: str) -> None:
        self.fake.react(self.channel, native_id, self.bob, emoji)

    async def drop_connection(self) -> None:
        self.fake.drop_connections()

    async def seed_history(self, n: int) -> list[str]:
        return [self.fake.add_history_only(self.channel, self.alice, f"history {i}") for i in range(n)]

    async def forged_webhook(self, hub_url: str, account_id: str) -> int:
        raise NotImplementedError("Discord has no webhook delivery of guild messages")

    def sent_texts(self) -> list[str]:
        return [str(m["content"]) for m in self.fake.sent]

    async def rate_limit_next(self, n: int) -> None:
        self.fake.rate_limit_next(n, retry_after=1.0, route=SEND_ROUTE)
