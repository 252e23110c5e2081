"""An in-process Telegram for Telethon: the MTProto transport replaced, everything above it real.

Why this shape: a loopback MTProto server (DH key exchange, AES-IGE framing, msg_id/seqno
rules, salts, acks) is impractical here. Telethon sends every request through one object,
`client._sender` (an MTProtoSender), and receives pushed updates through `client._updates_queue`.
`FakeSender` stands in for that object and `FakeTelegram` answers the TL requests with TL
objects, so Telethon's own code runs unchanged above it: `connect()` (auth key into the
StringSession, InitConnection), `get_me`, login (`send_code_request`, `sign_in` with the code,
then the 2FA password through SRP: the fake does the server half of Telegram's SRP-2048 check),
the update loop (MessageBox pts bookkeeping; a pts gap makes Telethon ask `updates.getDifference`,
which the fake answers), the event builders (NewMessage, MessageEdited, MessageDeleted),
`get_dialogs`, `get_messages`, `send_message`, and FloodWait handling in `_call`.

What is not covered: the wire encryption and framing, DC migration, channels' own pts (the
fake has private chats and basic groups, which share the account's pts and message ids).

Use: `world = FakeTelegram(); connectors.telegram_user.client.CLIENT_CLASS[0] = world.client_class()`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import os
from dataclasses import dataclass, field
from typing import Any

from telethon import TelegramClient, errors
from telethon import password as srp
from telethon.crypto import AuthKey
from telethon.extensions import BinaryReader
from telethon.tl import functions, types
from telethon.tl.tlobject import TLObject

__all__ = ["FakeTelegram", "FakeSender"]

# The 2048-bit safe prime Telegram serves for SRP (Telethon accepts no other without a full
# primality check); read from Telethon's own check so it is byte-for-byte the published one.
PRIME = next(bytes(c) for c in srp.check_prime_and_good.__code__.co_consts if isinstance(c, tuple) and len(c) == 256)
G = 3
CHANNEL_MARK = 10**12  # Telethon marks channel ids as -100<id>
WRAPPERS = (functions.InvokeWithLayerRequest, functions.InitConnectionRequest, functions.InvokeWithoutUpdatesRequest)


def wire(obj: Any) -> Any:
    """Serialize and parse back, as the bytes would travel: the client never shares the
    server's objects (and the TL encoding of every answer is exercised)."""
    if isinstance(obj, list):
        return [wire(o) for o in obj]
    if isinstance(obj, TLObject):
        with BinaryReader(bytes(obj)) as reader:
            return reader.tgread_object()
    return obj


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def marked(peer: Any) -> int:
    if isinstance(peer, types.PeerUser):
        return peer.user_id
    if isinstance(peer, types.PeerChat):
        return -peer.chat_id
    if isinstance(peer, types.PeerChannel):
        return -(CHANNEL_MARK + peer.channel_id)
    raise NotImplementedError(f"the fake has no {type(peer).__name__}")


@dataclass
class _Key:
    state: str = "new"  # new | password | authorized
    sent_hash: str | None = None


@dataclass
class _Srp:
    b: int
    B: int
    v: int


class FakeSender:
    """What TelegramClient uses of MTProtoSender, answered in-process by a FakeTelegram."""

    def __init__(self, world: FakeTelegram, updates_queue: asyncio.Queue, auth_key: AuthKey | None) -> None:
        self.world, self.updates_queue = world, updates_queue
        self.auth_key = auth_key if auth_key is not None else AuthKey(None)
        self._connected = False
        self._disconnected: asyncio.Future[None] | None = None
        self.muted = False  # a dropped connection: updates are not pushed to it

    async def connect(self, connection: Any) -> bool:
        if self._connected:
            return False
        if self.world.unreachable:
            raise ConnectionError("Telegram is unreachable")
        if not self.auth_key.key:
            self.auth_key = AuthKey(os.urandom(256))  # what the DH exchange would produce
        self.world.known_key(self.auth_key)
        self._connected = True
        self._disconnected = asyncio.get_running_loop().create_future()
        self.world.senders.append(self)
        return True

    def is_connected(self) -> bool:
        return self._connected

    def _transport_connected(self) -> bool:
        return self._connected

    def _keepalive_ping(self, rnd_id: int) -> None:
        pass

    @property
    def disconnected(self) -> asyncio.Future[None]:
        if self._disconnected is None:
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        return asyncio.shield(self._disconnected)  # type: ignore[return-value]

    async def disconnect(self) -> None:
        if not self._connected:
            return
        self._connected = False
        if self.world.senders.count(self):
            self.world.senders.remove(self)
        if self._disconnected is not None and not self._disconnected.done():
            self._disconnected.set_result(None)

    def send(self, request: Any, ordered: bool = False) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if not self._connected:
            future.set_exception(ConnectionError("Cannot send requests while disconnected"))
            return future
        try:
            future.set_result(wire(self.world.answer(self, request)))
        except Exception as err:  # noqa: BLE001 - RPC errors travel in the future, as from Telegram
            future.set_exception(err)
        return future

    def sever(self) -> None:
        self._connected = False
        if self.world.senders.count(self):
            self.world.senders.remove(self)
        if self._disconnected is not None and not self._disconnected.done():
            self._disconnected.set_exception(ConnectionError("Connection to Telegram lost"))

    def push(self, updates: Any) -> None:
        if self._connected and not self.muted:
            self.updates_queue.put_nowait(wire(updates))


@dataclass
class FakeTelegram:
    phone: str = "+15550001111"
    code: str = "24680"
    password: str | None = None
    me_id: int = 777000001
    unreachable: bool = False
    users: dict[int, types.User] = field(default_factory=dict)
    chats: dict[int, types.Chat] = field(default_factory=dict)
    messages: dict[int, list[types.Message]] = field(default_factory=dict)  # marked peer id -> ascending
    log: list[tuple[int, Any]] = field(default_factory=list)  # (pts after, update) for getDifference
    sent: list[dict[str, Any]] = field(default_factory=list)  # what our clients sent
    senders: list[FakeSender] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)  # TL request names, in order
    flood_next: list[int] = field(default_factory=list)  # seconds of FLOOD_WAIT for the next sends
    pts: int = 1
    channel_pts: dict[int, int] = field(default_factory=dict)
    channel_log: dict[int, list[tuple[int, Any]]] = field(default_factory=dict)
    code_expired: bool = False
    _keys: dict[int, _Key] = field(default_factory=dict)
    _srp: dict[int, _Srp] = field(default_factory=dict)
    _revoked: set[int] = field(default_factory=set)
    _channel_ids: dict[int, Any] = field(default_factory=dict)
    _ids: Any = field(default_factory=lambda: itertools.count(1001))


    def __post_init__(self) -> None:
        self.add_user(self.me_id, "Loomi", "loomi_me", is_self=True)

    # ------------------------------------------------------------------ set-up and controls

    def client_class(self) -> type[TelegramClient]:
        world = self

        class LoopbackTelegramClient(TelegramClient):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                super().__init__(*args, **kwargs)
                self._sender = FakeSender(world, self._updates_queue, self.session.auth_key)  # type: ignore[assignment]

        return LoopbackTelegramClient

    def add_user(self, user_id: int, first_name: str, username: str | None = None, *, is_self: bool = False) -> types.User:
        self.users[user_id] = types.User(id=user_id, is_self=is_self, access_hash=user_id * 7 + 3, first_name=first_name,
                                         username=username, phone=self.phone.lstrip("+") if is_self else None)
        return self.users[user_id]

    def add_channel(self, channel_id: int, title: str, *, megagroup: bool = True) -> types.Channel:
        """A supergroup (or, megagroup=False, a broadcast channel): its own pts and message ids."""
        self.chats[channel_id] = types.Channel(id=channel_id, title=title, photo=types.ChatPhotoEmpty(), date=now(),
                                               megagroup=megagroup, broadcast=not megagroup,
                                               access_hash=channel_id * 5 + 1)
        self.channel_pts[channel_id] = 1
        return self.chats[channel_id]  # type: ignore[return-value]

    def add_group(self, chat_id: int, title: str) -> types.Chat:
        self.chats[chat_id] = types.Chat(id=chat_id, title=title, photo=types.ChatPhotoEmpty(),
                                         participants_count=3, date=now(), version=1)
        return self.chats[chat_id]

    def known_key(self, auth_key: AuthKey) -> None:
        """A key made on this connection (or brought back in a session) that was never revoked."""
        if auth_key.key_id not in self._revoked:
            self._keys.setdefault(auth_key.key_id, _Key())

    def authorize_all(self) -> None:
        """Every auth key seen so far is signed in (a session made elsewhere)."""
        for key in self._keys.values():
            key.state = "authorized"

    def revoke_all(self) -> None:
        """The person ended every session (Settings > Devices): each key is unregistered."""
        self._revoked |= set(self._keys)
        self._keys.clear()

    def drop(self) -> None:
        """Connections stop receiving pushes (as while a socket is dead); `restore` ends it."""
        for sender in self.senders:
            sender.muted = True

    def restore(self) -> None:
        for sender in self.senders:
            sender.muted = False

    def sever(self) -> None:
        """Every connection dies (the network went away): each client's `disconnected` fails."""
        for sender in list(self.senders):
            sender.sever()

    def kick(self) -> None:
        """Tell clients their state is stale (updatesTooLong): they ask getDifference."""
        for sender in list(self.senders):
            sender.push(types.UpdatesTooLong())

    def post(self, sender_id: int, text: str, *, group: int | None = None, channel: int | None = None,
             reply_to: int | None = None, mention: int | None = None, media: Any = None, out: bool = False,
             history_only: bool = False, date: dt.datetime | None = None) -> types.Message:
        """Someone (or we, with out=True) writes in a private chat with `sender_id`, in `group`
        (a basic group) or in `channel` (a supergroup: its own message ids and pts)."""
        peer: Any = types.PeerChannel(channel) if channel else types.PeerChat(group) if group else types.PeerUser(sender_id)
        own_ids = self._channel_ids.setdefault(channel, itertools.count(1)) if channel else self._ids
        entities = None
        if mention is not None:
            name = self.users[mention].first_name
            text = f"{name} {text}"
            entities = [types.MessageEntityMentionName(offset=0, length=len(name), user_id=mention)]
        message = types.Message(
            id=next(own_ids), peer_id=peer, date=date or now(), message=text, out=out,
            from_id=types.PeerUser(self.me_id if out else sender_id) if group or channel or out else None,
            reply_to=types.MessageReplyHeader(reply_to_msg_id=reply_to) if reply_to else None,
            media=media, entities=entities,
        )
        self.messages.setdefault(marked(peer), []).append(message)
        if not history_only and channel:
            self._publish(types.UpdateNewChannelMessage(message=message, pts=self.channel_pts[channel] + 1, pts_count=1))
        elif not history_only:
            self._publish(types.UpdateNewMessage(message=message, pts=self.pts + 1, pts_count=1))
        return message

    def edit(self, message_id: int, text: str, *, channel: int | None = None) -> types.Message:
        message = self.find(message_id, channel=channel)
        message.message, message.edit_date = text, now() + dt.timedelta(seconds=1)
        if channel:
            self._publish(types.UpdateEditChannelMessage(message=message, pts=self.channel_pts[channel] + 1, pts_count=1))
        else:
            self._publish(types.UpdateEditMessage(message=message, pts=self.pts + 1, pts_count=1))
        return message

    def delete_in_channel(self, channel: int, *message_ids: int) -> None:
        """Supergroups and channels name themselves in the deletion (unlike private chats)."""
        history = self.messages.get(-(CHANNEL_MARK + channel), [])
        history[:] = [m for m in history if m.id not in message_ids]
        self._publish(types.UpdateDeleteChannelMessages(channel_id=channel, messages=list(message_ids),
                                                        pts=self.channel_pts[channel] + len(message_ids),
                                                        pts_count=len(message_ids)))

    def delete(self, *message_ids: int) -> None:
        """Private chats and basic groups: the update names the ids only, never the chat."""
        for history in self.messages.values():
            history[:] = [m for m in history if m.id not in message_ids]
        self._publish(types.UpdateDeleteMessages(messages=list(message_ids), pts=self.pts + len(message_ids),
                                                 pts_count=len(message_ids)))

    def react(self, message_id: int, emoji: str, by: int) -> None:
        """`by` reacts; Telegram pushes the message's reactions as they now stand (no pts)."""
        message = self.find(message_id)
        reaction = types.ReactionEmoji(emoticon=emoji)
        state = types.MessageReactions(results=[types.ReactionCount(reaction=reaction, count=1)], recent_reactions=[
            types.MessagePeerReaction(peer_id=types.PeerUser(by), date=now(), reaction=reaction)])
        update = types.UpdateMessageReactions(peer=message.peer_id, msg_id=message_id, reactions=state)
        packed = types.Updates(updates=[update], users=list(self.users.values()), chats=list(self.chats.values()),
                               date=now(), seq=0)
        for sender in list(self.senders):
            sender.push(packed)

    def find(self, message_id: int, *, channel: int | None = None) -> types.Message:
        if channel:
            return next(m for m in self.messages[-(CHANNEL_MARK + channel)] if m.id == message_id)
        return next(m for peer, history in self.messages.items() if peer > -CHANNEL_MARK
                    for m in history if m.id == message_id)

    def photo(self) -> types.MessageMediaPhoto:
        size = types.PhotoSize(type="x", w=800, h=600, size=48213)
        return types.MessageMediaPhoto(photo=types.Photo(id=next(self._ids), access_hash=1, file_reference=b"\x01\x02",
                                                         date=now(), sizes=[size], dc_id=2))

    def _publish(self, update: Any) -> None:
        channel = getattr(update, "channel_id", None) or getattr(getattr(update, "message", None), "peer_id", None)
        if isinstance(update, (types.UpdateNewChannelMessage, types.UpdateEditChannelMessage, types.UpdateDeleteChannelMessages)):
            cid = update.channel_id if isinstance(update, types.UpdateDeleteChannelMessages) else channel.channel_id
            self.channel_pts[cid] = update.pts
            self.channel_log.setdefault(cid, []).append((update.pts, update))
        else:
            self.pts = update.pts
            self.log.append((self.pts, update))
        packed = types.Updates(updates=[update], users=list(self.users.values()), chats=list(self.chats.values()),
                               date=now(), seq=0)
        for sender in list(self.senders):
            sender.push(packed)

    # ------------------------------------------------------------------ the server side

    def _key(self, sender: FakeSender) -> _Key:
        return self._keys.setdefault(sender.auth_key.key_id, _Key())

    def _signed_in(self, sender: FakeSender, request: Any) -> None:
        key = self._keys.get(sender.auth_key.key_id)
        if key is None or key.state != "authorized":
            raise errors.AuthKeyUnregisteredError(request)

    def _peer(self, input_peer: Any) -> int:
        if isinstance(input_peer, types.InputPeerSelf):
            return self.me_id
        if isinstance(input_peer, types.InputPeerUser):
            return input_peer.user_id
        if isinstance(input_peer, types.InputPeerChat):
            return -input_peer.chat_id
        if isinstance(input_peer, (types.InputPeerChannel, types.InputChannel)):
            return -(CHANNEL_MARK + input_peer.channel_id)
        raise NotImplementedError(f"the fake has no {type(input_peer).__name__}")

    def answer(self, sender: FakeSender, request: Any) -> Any:
        while isinstance(request, WRAPPERS):
            request = request.query
        self.requests.append(type(request).__name__)
        handler = getattr(self, "_" + type(request).__name__, None)
        if handler is None:
            raise NotImplementedError(f"FakeTelegram does not answer {type(request).__name__}")
        return handler(sender, request)

    def _GetConfigRequest(self, sender: FakeSender, request: Any) -> None:
        return None  # Telethon only sends it to open the connection with InitConnection

    def _PingDelayDisconnectRequest(self, sender: FakeSender, request: Any) -> Any:
        return types.Pong(msg_id=0, ping_id=request.ping_id)

    def _SendCodeRequest(self, sender: FakeSender, request: Any) -> Any:
        if request.phone_number.lstrip("+") != self.phone.lstrip("+"):
            raise errors.PhoneNumberInvalidError(request)
        key = self._key(sender)
        key.sent_hash = os.urandom(8).hex()
        return types.auth.SentCode(type=types.auth.SentCodeTypeApp(length=len(self.code)), phone_code_hash=key.sent_hash)

    def _SignInRequest(self, sender: FakeSender, request: Any) -> Any:
        key = self._key(sender)
        if self.code_expired:
            raise errors.PhoneCodeExpiredError(request)
        if request.phone_code_hash != key.sent_hash or request.phone_code != self.code:
            raise errors.PhoneCodeInvalidError(request)
        if self.password is not None:
            key.state = "password"
            raise errors.SessionPasswordNeededError(request)
        key.state = "authorized"
        return types.auth.Authorization(user=self.users[self.me_id])

    def _GetPasswordRequest(self, sender: FakeSender, request: Any) -> Any:
        assert self.password is not None
        algo = types.PasswordKdfAlgoSHA256SHA256PBKDF2HMACSHA512iter100000SHA256ModPow(
            salt1=b"loomi-salt1", salt2=b"loomi-salt2-16by", g=G, p=PRIME)
        p = int.from_bytes(PRIME, "big")
        v = pow(G, int.from_bytes(srp.compute_hash(algo, self.password), "big"), p)
        k = int.from_bytes(srp.sha256(srp.num_bytes_for_hash(PRIME), srp.big_num_for_hash(G)), "big")
        b = int.from_bytes(os.urandom(256), "big")
        B = (k * v + pow(G, b, p)) % p
        srp_id = int.from_bytes(os.urandom(7), "big")
        self._srp[srp_id] = _Srp(b, B, v)
        return types.account.Password(
            new_algo=types.PasswordKdfAlgoUnknown(), new_secure_algo=types.SecurePasswordKdfAlgoUnknown(),
            secure_random=os.urandom(32), has_password=True, current_algo=algo,
            srp_B=B.to_bytes(256, "big"), srp_id=srp_id)

    def _CheckPasswordRequest(self, sender: FakeSender, request: Any) -> Any:
        """The server half of Telegram's SRP: S = (A * v^u)^b, then the client's M1 must match."""
        check = request.password
        state = self._srp.pop(check.srp_id, None)
        key = self._key(sender)
        if state is None or key.state != "password":
            raise errors.SrpIdInvalidError(request)
        p = int.from_bytes(PRIME, "big")
        a_bytes, b_bytes = bytes(check.A), state.B.to_bytes(256, "big")
        u = int.from_bytes(srp.sha256(a_bytes, b_bytes), "big")
        s = pow(int.from_bytes(a_bytes, "big") * pow(state.v, u, p) % p, state.b, p)
        expected = srp.sha256(
            srp.xor(srp.sha256(srp.num_bytes_for_hash(PRIME)), srp.sha256(srp.big_num_for_hash(G))),
            srp.sha256(b"loomi-salt1"), srp.sha256(b"loomi-salt2-16by"), a_bytes, b_bytes,
            srp.sha256(srp.big_num_for_hash(s)))
        if bytes(check.M1) != expected:
            raise errors.PasswordHashInvalidError(request)
        key.state = "authorized"
        return types.auth.Authorization(user=self.users[self.me_id])

    def _GetUsersRequest(self, sender: FakeSender, request: Any) -> Any:
        self._signed_in(sender, request)
        found = []
        for wanted in request.id:
            user_id = self.me_id if isinstance(wanted, types.InputUserSelf) else wanted.user_id
            found.append(self.users[user_id])
        return found

    def _GetStateRequest(self, sender: FakeSender, request: Any) -> Any:
        self._signed_in(sender, request)
        return types.updates.State(pts=self.pts, qts=0, date=now(), seq=0, unread_count=0)

    def _GetDifferenceRequest(self, sender: FakeSender, request: Any) -> Any:
        self._signed_in(sender, request)
        missed = [u for pts, u in self.log if pts > request.pts]
        state = types.updates.State(pts=self.pts, qts=0, date=now(), seq=0, unread_count=0)
        if not missed:
            return types.updates.DifferenceEmpty(date=now(), seq=0)
        return types.updates.Difference(
            new_messages=[u.message for u in missed if isinstance(u, types.UpdateNewMessage)],
            new_encrypted_messages=[],
            other_updates=[u for u in missed if not isinstance(u, types.UpdateNewMessage)],
            chats=list(self.chats.values()), users=list(self.users.values()), state=state)

    def _GetDialogsRequest(self, sender: FakeSender, request: Any) -> Any:
        self._signed_in(sender, request)
        tops = sorted((h[-1] for h in self.messages.values() if h), key=lambda m: m.id, reverse=True)
        dialogs = [types.Dialog(peer=m.peer_id, top_message=m.id, read_inbox_max_id=0, read_outbox_max_id=0,
                                unread_count=0, unread_mentions_count=0, unread_reactions_count=0, unread_poll_votes_count=0,
                                notify_settings=types.PeerNotifySettings()) for m in tops]
        return types.messages.Dialogs(dialogs=dialogs, messages=tops, chats=list(self.chats.values()),
                                      users=list(self.users.values()))

    def _GetHistoryRequest(self, sender: FakeSender, request: Any) -> Any:
        """Newest first, older than offset_id (when given), honouring add_offset/limit/min_id/max_id."""
        self._signed_in(sender, request)
        history = self.messages.get(self._peer(request.peer), [])
        picked = [m for m in reversed(history)
                  if (not request.offset_id or m.id < request.offset_id)
                  and (not request.min_id or m.id > request.min_id)
                  and (not request.max_id or m.id < request.max_id)]
        start = max(request.add_offset, 0)
        page = picked[start:start + request.limit]
        return types.messages.Messages(messages=page, topics=[], chats=list(self.chats.values()),
                                       users=list(self.users.values()))

    def _GetChannelsRequest(self, sender: FakeSender, request: Any) -> Any:
        """A user account must know a channel's access hash (from dialogs or updates)."""
        self._signed_in(sender, request)
        found = []
        for wanted in request.id:
            channel = self.chats.get(wanted.channel_id)
            if not isinstance(channel, types.Channel) or wanted.access_hash != channel.access_hash:
                raise errors.ChannelInvalidError(request)
            found.append(channel)
        return types.messages.Chats(chats=found)

    def _GetChannelDifferenceRequest(self, sender: FakeSender, request: Any) -> Any:
        self._signed_in(sender, request)
        cid = request.channel.channel_id
        missed = [u for pts, u in self.channel_log.get(cid, []) if pts > request.pts]
        if not missed:
            return types.updates.ChannelDifferenceEmpty(pts=self.channel_pts[cid], final=True)
        return types.updates.ChannelDifference(
            pts=self.channel_pts[cid], final=True,
            new_messages=[u.message for u in missed if isinstance(u, types.UpdateNewChannelMessage)],
            other_updates=[u for u in missed if not isinstance(u, types.UpdateNewChannelMessage)],
            chats=list(self.chats.values()), users=list(self.users.values()))

    def _SendMessageRequest(self, sender: FakeSender, request: Any) -> Any:
        self._signed_in(sender, request)
        if self.flood_next:
            raise errors.FloodWaitError(request, capture=self.flood_next.pop(0))
        peer = self._peer(request.peer)
        reply_to = request.reply_to.reply_to_msg_id if request.reply_to else None
        self.sent.append({"peer": peer, "text": request.message, "reply_to": reply_to})
        if peer < -CHANNEL_MARK:  # supergroups answer with the full Updates, the new id keyed by random_id
            cid = -peer - CHANNEL_MARK
            message = self.post(self.me_id, request.message, channel=cid, reply_to=reply_to, out=True, history_only=True)
            update = types.UpdateNewChannelMessage(message=message, pts=self.channel_pts[cid] + 1, pts_count=1)
            self._publish(update)
            return types.Updates(updates=[types.UpdateMessageID(id=message.id, random_id=request.random_id), update],
                                 users=list(self.users.values()), chats=list(self.chats.values()), date=now(), seq=0)
        message = self.post(peer if peer > 0 else self.me_id, request.message, group=-peer if peer < 0 else None,
                            reply_to=reply_to, out=True, history_only=True)
        self.pts += 1
        update = types.UpdateNewMessage(message=message, pts=self.pts, pts_count=1)
        self.log.append((self.pts, update))
        packed = types.Updates(updates=[update], users=list(self.users.values()), chats=list(self.chats.values()),
                               date=now(), seq=0)
        for other in list(self.senders):  # the person's other sessions see it; the sender gets the short answer
            if other is not sender:
                other.push(packed)
        return types.UpdateShortSentMessage(out=True, id=message.id, pts=self.pts, pts_count=1, date=message.date)
