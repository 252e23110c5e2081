"""Conformance driver for DingTalk: FakeDingTalk (its own thread) and a robot app connected
through `POST /api/dingtalk/listener/init {clientId, clientSecret}`.

Abilities: replies (quoted messages), attachments (a richText message with a picture), mentions
(group @s), send, webhook (HTTP-mode callbacks, signed with the app secret), disconnect, rate
limits. Not: edit, delete, reaction (DingTalk never tells a robot about them) and backfill (no
history API for robots).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx

from tests.fakes.dingtalk import FakeDingTalk, sign

APP, SECRET = "dingconformance01", "conformance-app-secret-0123"
GROUP = "cidConformanceGroup"


class Driver:
    platform = "dingtalk"
    abilities = {"reply", "attachment", "mention", "send", "webhook", "disconnect", "rate_limit"}

    def __init__(self) -> None:
        self.fake = FakeDingTalk(disconnect_grace=0.3)

    async def start(self) -> dict[str, str]:
        await asyncio.to_thread(self.fake.start)
        await asyncio.to_thread(self.fake.add_app, APP, SECRET)
        return {"LOOMI_DINGTALK_BASE_URL": self.fake.base_url}

    async def stop(self) -> None:
        await asyncio.to_thread(self.fake.stop)

    async def connect(self, hub: Any, headers: dict[str, str]) -> str:
        r = await hub.client.post("/api/dingtalk/listener/init", json={"clientId": APP, "clientSecret": SECRET},
                                  headers=headers)
        assert r.status_code == 200, r.text
        return str(r.json()["account"]["id"])

    async def post_message(self, text: str, **kw: Any) -> str:
        """kw: `reply_to` (a native id to quote), `attachment` (True: a picture with the text),
        `mention` (True or a staff id to @; the message goes to the group), `group` (True)."""
        options: dict[str, Any] = {}
        if kw.get("group") or kw.get("mention") or kw.get("reply_to"):
            options["group"] = GROUP
        if kw.get("mention"):
            who = "staff-carol" if kw["mention"] is True else str(kw["mention"])
            options["at"] = [who]
            text = f"{text} @{who}"
        if kw.get("reply_to"):
            options["reply_to"] = str(kw["reply_to"])
        if kw.get("attachment"):
            options |= {"msgtype": "richText", "content": {"richText": [
                {"text": text}, {"type": "picture", "downloadCode": "dl-conformance", "pictureDownloadCode": "p1"}]}}
        return await asyncio.to_thread(lambda: self.fake.post_message(APP, text, **options))

    async def edit(self, native_id: str, text: str) -> None:
        raise NotImplementedError("DingTalk does not tell robots about edits")

    async def delete(self, native_id: str) -> None:
        raise NotImplementedError("DingTalk does not tell robots about recalls")

    async def react(self, native_id: str, emoji: str) -> None:
        raise NotImplementedError("DingTalk does not tell robots about reactions")

    async def drop_connection(self) -> None:
        await asyncio.to_thread(self.fake.drop_connections, APP)

    async def seed_history(self, n: int) -> list[str]:
        raise NotImplementedError("DingTalk has no message history API for robots")

    async def forged_webhook(self, hub_url: str, account_id: str) -> int:
        body = {"msgId": "msgForged1", "conversationType": "1", "senderStaffId": "mallory", "createAt": 1,
                "msgtype": "text", "text": {"content": "forged"}}
        stamp = str(int(time.time() * 1000))
        async with httpx.AsyncClient(base_url=hub_url) as http:
            r = await http.post(f"/api/dingtalk/webhook/{account_id}", content=json.dumps(body),
                                headers={"timestamp": stamp, "sign": sign("not-the-app-secret", stamp)})
        return r.status_code

    def sent_texts(self) -> list[str]:
        return [str(s["text"]) for s in self.fake.sent]

    async def rate_limit_next(self, n: int) -> None:
        """The next n sends are throttled on every path: the session webhook answers its
        flow-control errcode 130101 (send falls back to the robot API), and the robot API answers
        HTTP 429 `Throttling.Api` without Retry-After (send waits a second and tries again)."""
        for path in ("/robot/sendBySession", "/v1.0/robot/oToMessages/batchSend", "/v1.0/robot/groupMessages/send"):
            await asyncio.to_thread(lambda p=path: self.fake.rate_limit_next(n, path=p))
