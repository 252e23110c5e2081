"""Keep the person's Telegram session online and emit every new message, edit and deletion in
every dialog, through Telethon's own update handling (events.NewMessage / MessageEdited /
MessageDeleted, and the raw UpdateMessageReactions).

Telegram tells a deletion in a private chat or basic group only by message id (those ids are
unique per account, so the update carries no chat): the listener remembers which chat each such
message it saw is in and resolves the ids; ids it never saw are dropped (logged). Updates missed
while offline come back by gap recovery (`ctx.reconnected()` on every start after the first),
which backfills each dialog from the newest stored message.

A handler's failure (emit refused, lease lost) must not be swallowed by Telethon's dispatcher
(it logs and goes on): the listener disconnects and raises it, so the supervisor restarts it
and gap recovery fetches what was not queued.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from typing import Any

from telethon import TelegramClient, errors, events, utils
from telethon.tl import types

from connectors.base import AccountState, Envelope, ListenContext, NeedsReauth
from connectors.telegram_user import client as tg
from connectors.telegram_user.client import json_safe
from connectors.telegram_user.payload import delivery_id, message_payload
from connectors.telegram_user.settings import TelegramUserSettings

log = logging.getLogger("loomi.telegram_user")

REMEMBERED = 50_000  # private/basic-group message ids whose chat we keep for chat-less deletes


class ChatOfMessage:
    """Bounded message id -> chat id for private chats and basic groups (one id space)."""

    def __init__(self, size: int = REMEMBERED) -> None:
        self.size = size
        self._map: OrderedDict[int, str] = OrderedDict()

    def add(self, message: Any) -> None:
        if isinstance(message.peer_id, (types.PeerUser, types.PeerChat)):
            self._map[message.id] = str(message.chat_id)
            self._map.move_to_end(message.id)
            while len(self._map) > self.size:
                self._map.popitem(last=False)

    def chat(self, message_id: int) -> str | None:
        return self._map.get(message_id)


class Listener:
    def __init__(self, client: TelegramClient, ctx: ListenContext) -> None:
        self.client, self.ctx = client, ctx
        self.chats = ChatOfMessage()
        self.failure: BaseException | None = None

    async def _emit(self, items: list[tuple[str, dict[str, Any]]]) -> None:
        if not items or self.failure is not None:
            return
        now = int(time.time() * 1000)
        envelopes = [Envelope("telegram_user", self.ctx.account.id, d, now, p) for d, p in items]
        try:
            await self.ctx.emit(envelopes, {"online_before": True, "last_emit_ms": now})
        except BaseException as err:  # noqa: BLE001 - ends the listener, see the module docstring
            self.failure = err
            await self.client.disconnect()

    async def on_message(self, event: events.NewMessage.Event) -> None:
        self.chats.add(event.message)
        chat_id = str(event.message.chat_id)
        await self._emit([(delivery_id("message", chat_id, event.message), message_payload("message", event.message))])

    async def on_edit(self, event: events.MessageEdited.Event) -> None:
        chat_id = str(event.message.chat_id)
        await self._emit([(delivery_id("edit", chat_id, event.message), message_payload("edit", event.message))])

    async def on_delete(self, event: events.MessageDeleted.Event) -> None:
        now = int(time.time() * 1000)
        by_chat: dict[str, list[int]] = {}
        for message_id in event.deleted_ids:
            chat_id = str(event.chat_id) if event.chat_id is not None else self.chats.chat(message_id)
            if chat_id is None:
                log.info("%s: deletion of unseen message %s without a chat; dropped", self.ctx.account.id, message_id)
                continue
            by_chat.setdefault(chat_id, []).append(message_id)
        await self._emit([(f"del:{chat}:{','.join(map(str, ids))}", {"kind": "delete", "chat_id": chat, "ids": ids, "at": now})
                          for chat, ids in by_chat.items()])

    async def on_reactions(self, update: types.UpdateMessageReactions) -> None:
        """Telegram sends a message's reactions as they now stand (no event class in Telethon)."""
        chat_id = str(utils.get_peer_id(update.peer))
        state = json_safe(update.reactions.to_dict())
        digest = hashlib.sha1(repr(state).encode()).hexdigest()[:12]  # one delivery per reaction state
        await self._emit([(f"react:{chat_id}:{update.msg_id}:{digest}",
                           {"kind": "reactions", "chat_id": chat_id, "msg_id": update.msg_id, "reactions": state,
                            "at": int(time.time() * 1000)})])

    def attach(self) -> None:
        self.client.add_event_handler(self.on_message, events.NewMessage())
        self.client.add_event_handler(self.on_edit, events.MessageEdited())
        self.client.add_event_handler(self.on_delete, events.MessageDeleted())
        self.client.add_event_handler(self.on_reactions, events.Raw(types.UpdateMessageReactions))


async def listen(settings: TelegramUserSettings, ctx: ListenContext) -> None:
    client = tg.new_client(settings, ctx.account.credentials["session"], updates=True)
    listener = Listener(client, ctx)
    try:
        await client.connect()
        if not await client.is_user_authorized():
            raise NeedsReauth("Telegram no longer knows this login (signed out or revoked)")
        await client.get_me()  # our id for `out` and self-mentions; also fails fast if revoked
        listener.attach()
        tg.register(ctx.account.id, client)
        await ctx.report(AccountState.CONNECTED)
        if ctx.resume.get("online_before"):
            await ctx.reconnected()  # what arrived while we were away comes by gap recovery
        else:
            await ctx.emit([], {"online_before": True})  # from now on, a restart means a gap to fill
        await client.run_until_disconnected()
    except errors.RPCError as err:
        raise tg.refusal(err) from None
    finally:
        tg.unregister(ctx.account.id, client)
        await client.disconnect()
    if listener.failure is not None:
        raise listener.failure
    raise ConnectionError("Telegram connection closed")
