"""Backfill and gap recovery: `GET /open-apis/im/v1/chats` and `GET /open-apis/im/v1/messages
?container_id_type=chat&container_id=…` paged by `page_token`, oldest first.

Reading a chat's history needs the app's `im:message.group_msg` (groups) or
`im:message.p2p_msg` (direct chats) permission; without it Feishu answers an error code and
the chat is skipped with an empty last page (the live listener still sees new messages).
`oldest` (epoch ms) becomes `start_time` in seconds, which Feishu treats as inclusive: the
store's uniqueness absorbs the overlap. Each item is queued as `{"type": "history", "app_id",
"chat": {chat_id, name, chat_mode}, "message": item}` with delivery id = message id.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from lark_oapi.api.im.v1 import GetChatRequest, ListChatRequest, ListMessageRequest

from connectors.base import Account, Envelope, Page
from connectors.feishu.client import PLATFORM, FeishuApi, FeishuError
from connectors.feishu.inbound import HISTORY

log = logging.getLogger("loomi.feishu")

PAGE_SIZE = 50  # Feishu's maximum for message lists
CHATS_PAGE_SIZE = 100


class FeishuHistory:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self._chats: dict[tuple[str, str], dict[str, Any]] = {}  # (account, chat) -> chat_id, name, chat_mode

    async def list_chats(self, account: Account) -> list[str]:
        """Every chat the bot is in."""
        api = FeishuApi.for_account(self.base_url, account)
        ids: list[str] = []
        token: str | None = None
        while True:
            builder = ListChatRequest.builder().page_size(CHATS_PAGE_SIZE)
            request = (builder.page_token(token) if token else builder).build()
            data = (await api.call(lambda option: api.sdk.im.v1.chat.alist(request, option))).get("data") or {}
            for chat in data.get("items") or []:
                if isinstance(chat, dict) and chat.get("chat_id"):
                    ids.append(str(chat["chat_id"]))
                    self._remember(account, chat)
            token = data.get("page_token") or None
            if not data.get("has_more") or not token:
                return ids

    async def backfill(self, account: Account, chat_id: str, cursor: str | None, oldest: str | None) -> Page:
        api = FeishuApi.for_account(self.base_url, account)
        chat = await self._chat(api, account, chat_id)
        builder = (ListMessageRequest.builder().container_id_type("chat").container_id(chat_id)
                   .sort_type("ByCreateTimeAsc").page_size(PAGE_SIZE))
        if cursor:
            builder = builder.page_token(cursor)
        if oldest and str(oldest).isdigit():
            builder = builder.start_time(str(int(oldest) // 1000))
        request = builder.build()
        try:
            body = await api.call(lambda option: api.sdk.im.v1.message.alist(request, option))
        except FeishuError as err:
            if err.status in (400, 403):  # no history permission for this chat, or the bot left it
                log.info("feishu: no history for chat %s: %s", chat_id, err.msg)
                return Page(envelopes=[], cursor=None)
            raise
        data = body.get("data") or {}
        received = int(time.time() * 1000)
        envelopes = [
            Envelope(platform=PLATFORM, account_id=account.id, delivery_id=str(item["message_id"]),
                     received_at=received, source="backfill",
                     payload={"type": HISTORY, "app_id": api.app_id, "chat": chat, "message": item})
            for item in data.get("items") or [] if isinstance(item, dict) and item.get("message_id")
        ]
        more = bool(data.get("has_more")) and bool(data.get("page_token"))
        return Page(envelopes=envelopes, cursor=str(data["page_token"]) if more else None)

    async def _chat(self, api: FeishuApi, account: Account, chat_id: str) -> dict[str, Any]:
        chat = self._chats.get((account.id, chat_id))
        if chat is None:
            request = GetChatRequest.builder().chat_id(chat_id).build()
            try:
                data = (await api.call(lambda option: api.sdk.im.v1.chat.aget(request, option))).get("data") or {}
            except FeishuError:
                data = {}
            chat = self._remember(account, {**data, "chat_id": chat_id})
        return chat

    def _remember(self, account: Account, chat: dict[str, Any]) -> dict[str, Any]:
        kept = {"chat_id": str(chat["chat_id"]), "name": chat.get("name"), "chat_mode": chat.get("chat_mode")}
        self._chats[(account.id, kept["chat_id"])] = kept
        return kept
