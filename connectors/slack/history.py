"""History backfill and gap recovery: conversations.list, conversations.history, conversations.replies.

Each history message becomes an Envelope with source "backfill", delivery_id
`{channel}:{ts}` and the synthetic payload described in inbound.py. A page is one
conversations.history page plus, for every thread parent on it, that thread's replies
(conversations.replies follows its own cursor to the end inside the page), so threads are
backfilled too. `oldest` is passed to both calls (Slack treats it as exclusive); it may be a
Slack ts or epoch milliseconds (see slack_ts).

Once Slack refuses a history or replies call (429), later ones are paced (pacing.py) so the
rate limit is used whole instead of in bursts and whole-second waits.

Known gap: with `oldest`, a reply posted during the gap to a thread whose parent is older than
`oldest` is not found (conversations.history lists parents by their own ts).
"""

from __future__ import annotations

import time
from typing import Any

from config.settings import PlatformSettings
from connectors.base import Account, Envelope, Page
from connectors.slack.client import bot_token, call, web_client
from connectors.slack.inbound import HISTORY
from connectors.slack.pacing import Pacer

CHAT_KINDS = "public_channel,private_channel,mpim,im"
LIST_LIMIT = 200
PAGE_LIMIT = 200


def slack_ts(oldest: str) -> str:
    """`oldest` as Slack wants it (a ts, seconds): a Slack ts or epoch seconds pass through;
    a bare integer of 12+ digits is epoch milliseconds, the unit of the hub's own timestamps."""
    text = str(oldest).strip()
    if text.isdigit() and len(text) >= 12:
        ms = int(text)
        return f"{ms // 1000}.{ms % 1000:03d}000"
    return text


def channel_type(channel: dict[str, Any]) -> str:
    """conversations.list flags -> the `channel_type` Slack puts on message events."""
    if channel.get("is_im"):
        return "im"
    if channel.get("is_mpim"):
        return "mpim"
    if channel.get("is_private") or channel.get("is_group"):
        return "group"
    return "channel"


class SlackHistory:
    def __init__(self, settings: PlatformSettings) -> None:
        self.settings = settings
        self._chats: dict[tuple[str, str], dict[str, Any]] = {}  # (account, channel) -> type, name
        self._pacers: dict[tuple[str, str], Pacer] = {}  # (account, method): Tier 3 methods we page

    def _pacer(self, account: Account, method: str) -> Pacer:
        return self._pacers.setdefault((account.id, method), Pacer())

    async def list_chats(self, account: Account) -> list[str]:
        """Every conversation the bot can read: IMs, MPIMs and channels it is a member of."""
        client = web_client(self.settings, bot_token(self.settings, account))
        ids: list[str] = []
        cursor: str | None = None
        while True:
            response = await call(lambda: client.conversations_list(
                types=CHAT_KINDS, exclude_archived=True, limit=LIST_LIMIT, cursor=cursor))
            for channel in response.get("channels") or []:
                if channel.get("is_im") or channel.get("is_member"):
                    ids.append(channel["id"])
                    self._remember(account, channel)
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return ids

    async def backfill(self, account: Account, chat_id: str, cursor: str | None, oldest: str | None) -> Page:
        """One page, newest first as Slack gives it; `cursor` is Slack's own next_cursor."""
        client = web_client(self.settings, bot_token(self.settings, account))
        chat = await self._chat(account, chat_id, client)
        bounds = {"oldest": slack_ts(oldest)} if oldest else {}
        pacer = self._pacer(account, "conversations.history")
        response = await call(lambda: pacer.paced(lambda: client.conversations_history(
            channel=chat_id, limit=PAGE_LIMIT, cursor=cursor, **bounds)), sleep=pacer.refused)
        messages: list[dict[str, Any]] = []
        for message in response.get("messages") or []:
            messages.append(message)
            if message.get("reply_count") and message.get("thread_ts") == message.get("ts"):
                messages += await self._replies(account, client, chat_id, message["ts"], bounds)
        received = int(time.time() * 1000)
        envelopes = [self._envelope(account, chat_id, chat, m, received) for m in messages if m.get("ts")]
        next_cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
        return Page(envelopes=envelopes, cursor=next_cursor if response.get("has_more", True) else None)

    async def _replies(
        self, account: Account, client: Any, chat_id: str, parent_ts: str, bounds: dict[str, str]
    ) -> list[dict[str, Any]]:
        replies: list[dict[str, Any]] = []
        cursor: str | None = None
        pacer = self._pacer(account, "conversations.replies")
        while True:
            response = await call(lambda: pacer.paced(lambda: client.conversations_replies(
                channel=chat_id, ts=parent_ts, limit=PAGE_LIMIT, cursor=cursor, **bounds)), sleep=pacer.refused)
            replies += [m for m in response.get("messages") or [] if m.get("ts") != parent_ts]
            cursor = (response.get("response_metadata") or {}).get("next_cursor") or None
            if not cursor:
                return replies

    async def _chat(self, account: Account, chat_id: str, client: Any) -> dict[str, Any]:
        chat = self._chats.get((account.id, chat_id))
        if chat is None:
            response = await call(lambda: client.conversations_info(channel=chat_id))
            chat = self._remember(account, response["channel"])
        return chat

    def _remember(self, account: Account, channel: dict[str, Any]) -> dict[str, Any]:
        chat = {"channel_type": channel_type(channel), "channel_name": channel.get("name")}
        self._chats[(account.id, channel["id"])] = chat
        return chat

    def _envelope(
        self, account: Account, chat_id: str, chat: dict[str, Any], message: dict[str, Any], received: int
    ) -> Envelope:
        creds = account.credentials
        payload = {
            "type": HISTORY,
            "team_id": account.external_id,
            "channel": chat_id,
            **chat,
            "message": message,
            "authorizations": [{"user_id": creds.get("bot_user_id"), "bot_id": creds.get("bot_id"), "is_bot": True}],
        }
        return Envelope(
            platform="slack",
            account_id=account.id,
            delivery_id=f"{chat_id}:{message['ts']}",
            received_at=received,
            payload=payload,
            source="backfill",
        )
