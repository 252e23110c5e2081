"""Conformance driver for X: FakeX (API v2 mentions, DM events, DMs, OAuth 2 with PKCE), an
account connected through `/api/integrations/x/oauth/start` and the `/api/x/callback` redirect.

Someone DMs the person (`post_message`), or mentions them in a tweet (`mention=True`). X has
no edits or deletes of DMs and no reactions in API v2 and DM replies are not threaded, so those
abilities are not claimed. History is what the first poll pages through (`history_pages` of
dm_events and mentions, newest first); after that the saved positions leave no gaps, so the
connector is no Backfiller and the suite's gap job finds nothing to do: polling delivers them. A "dropped connection" of a polling client is X answering 503 for a
while; rate limits hit the DM send endpoint (the poll endpoints' 429s are in the connector's
own tests)."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse

from tests.fakes.x import FakeX

CLIENT_ID, CLIENT_SECRET = "conformance-x-client", "conformance-x-secret"
ME, ALICE = "1500000000000000001", "1500000000000000002"


class Driver:
    platform = "x"
    abilities = {"attachment", "mention", "backfill", "send", "disconnect", "rate_limit"}

    def __init__(self) -> None:
        self.fake = FakeX(client_id=CLIENT_ID, client_secret=CLIENT_SECRET)

    async def start(self) -> dict[str, str]:
        await self.fake.start()
        self.fake.add_user(ME, "loomi_person", "Loomi Person")
        self.fake.add_user(ALICE, "alice")
        return {"LOOMI_X_BASE_URL": self.fake.base_url, "LOOMI_X_CLIENT_ID": CLIENT_ID,
                "LOOMI_X_CLIENT_SECRET": CLIENT_SECRET, "LOOMI_X_POLL_SECONDS": "0.2"}

    async def stop(self) -> None:
        await self.fake.stop()

    async def connect(self, hub: Any, headers: dict[str, str]) -> str:
        r = await hub.client.get("/api/integrations/x/oauth/start", headers={**headers, "Accept": "application/json"})
        assert r.status_code == 200, r.text
        params = {k: v[0] for k, v in parse_qs(urlparse(r.json()["url"]).query).items()}
        assert params["code_challenge_method"] == "S256"
        self.fake.add_code("conf-code", ME, params["redirect_uri"], params["code_challenge"])
        done = await hub.client.get("/api/x/callback", params={"code": "conf-code", "state": params["state"]})
        assert done.status_code == 200, done.text
        return str(done.json()["account"]["id"])

    async def post_message(self, text: str, **kw: Any) -> str:
        if kw.get("mention"):
            return str(self.fake.mention(ALICE, text, mentioned=[ME], media=bool(kw.get("attachment")))["id"])
        return str(self.fake.dm(ALICE, ME, text, media=bool(kw.get("attachment")))["id"])

    async def edit(self, native_id: str, text: str) -> None:
        raise NotImplementedError("X DMs cannot be edited")

    async def delete(self, native_id: str) -> None:
        raise NotImplementedError("API v2 dm_events reports no deletions")

    async def react(self, native_id: str, emoji: str) -> None:
        raise NotImplementedError("API v2 exposes no DM reactions")

    async def drop_connection(self) -> None:
        self.fake.outage(4)

    async def seed_history(self, n: int) -> list[str]:
        return [str(self.fake.dm(ALICE, ME, f"history {i}")["id"]) for i in range(n)]

    async def forged_webhook(self, hub_url: str, account_id: str) -> int:
        raise NotImplementedError("X is polled: there is no webhook")

    def sent_texts(self) -> list[str]:
        return [str(s["text"]) for s in self.fake.sent]

    async def rate_limit_next(self, n: int) -> None:
        self.fake.rate_limit_next(n, seconds=1, path="/2/dm_conversations")
