"""Telegram Desktop's JSON export (`result.json`) as import records.

Two shapes, as tdesktop's export_output_json.cpp writes them: the whole account
(`{"personal_information": {"user_id", …}, "chats": {"list": [chat…]}, "left_chats": {…}}`)
or one chat (`{"name", "type", "id", "messages": […]}`). A chat's `id` is the bare peer id; we
store it the way the Bot API and Telethon mark peers (groups `-id`, supergroups and channels
`-100id`), so imported history lands in the same chats the live Telegram user account
(platform `telegram_user`, account id the person's user id) reports. A
message's `id` is its native id (unique per chat, stable across exports); `date_unixtime`
(UTC seconds) is its time; `text` is a string or a list of plain strings and entity objects;
`edited_unixtime` sets `edited_at` (exports older than `date_unixtime` have only the local
`date`, read in `tz`); `photo` / `file` (a relative path, or "(File not
included…)") become attachments; `reactions[].recent[]` become reactions. Service messages
(joins, pins, calls) are counted as not imported.

The account is the person who exported: `personal_information.user_id` in a whole-account
export. A one-chat export does not say who that is; for a personal chat it is the sender who
is not the peer, otherwise the caller says (`me`: a name as in `from`, or `user123` / `123`),
or asks for the most frequent sender (`guess_me`).
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.base import Attachment, ChatType, Reaction
from imports.records import BadInput, ImportRecord, to_millis

PLATFORM = "telegram_user"  # a Desktop export is a person's own account, as connectors/telegram_user connects it
MAX_MESSAGES = 2_000_000

CHAT_TYPES = {
    "personal_chat": ChatType.DM, "bot_chat": ChatType.DM, "saved_messages": ChatType.DM,
    "private_group": ChatType.GROUP, "private_supergroup": ChatType.GROUP, "public_supergroup": ChatType.GROUP,
    "private_channel": ChatType.CHANNEL, "public_channel": ChatType.CHANNEL,
}
_CHANNEL_LIKE = {"private_supergroup", "public_supergroup", "private_channel", "public_channel"}
_NOT_INCLUDED = "(File"  # "(File not included. …)", "(File exceeds maximum size. …)", "(File unavailable…)"
_MEDIA_TYPES = {"sticker": "image/webp", "voice_message": "audio/ogg", "video_message": "video/mp4", "animation": "video/mp4"}


def looks_like(data: Any) -> bool:
    if not isinstance(data, dict):
        return False
    chats = data.get("chats")
    if isinstance(chats, dict) and isinstance(chats.get("list"), list):
        return True
    messages = data.get("messages")
    return isinstance(messages, list) and ("type" in data or "id" in data) and not (
        messages and isinstance(messages[0], dict) and "messageId" in messages[0]  # openloomi's bulk shape
    )


def chat_id(bare: Any, kind: str) -> str:
    """tdesktop's bare id, marked as the Bot API and Telethon mark peers."""
    if kind in _CHANNEL_LIKE:
        return f"-100{bare}"
    if kind == "private_group":
        return f"-{bare}"
    return str(bare)


def _peer(from_id: Any) -> str | None:
    """"user123" / "channel5" / "chat7" -> the bare id, as the live telegram_user connector
    reports senders (connectors/telegram_user/inbound.py)."""
    if not isinstance(from_id, str) or not from_id:
        return None
    for prefix in ("user", "channel", "chat"):
        if from_id.startswith(prefix) and from_id[len(prefix):].isdigit():
            return from_id[len(prefix):]
    return from_id[:200]


def _text(value: Any, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = []
        for part in value:
            if isinstance(part, str):
                parts.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                parts.append(part["text"])
            else:
                raise BadInput(0, f"{where}: text: an entity without text")
        return "".join(parts)
    raise BadInput(0, f"{where}: text: must be a string or a list of entities")


def _attachments(msg: dict[str, Any]) -> tuple[list[Attachment], str | None]:
    found = []
    kind = None
    for key in ("photo", "file"):
        path = msg.get(key)
        if not isinstance(path, str) or not path:
            continue
        included = not path.startswith(_NOT_INCLUDED)
        name = msg.get("file_name") if key == "file" else None
        name = name or (path.rsplit("/", 1)[-1] if included else msg.get("media_type") or key)
        mime = msg.get("mime_type") or ("image/jpeg" if key == "photo" else _MEDIA_TYPES.get(str(msg.get("media_type"))))
        size = msg.get("file_size") if key == "file" else msg.get("photo_file_size")
        found.append(Attachment(name=str(name), url=None, content_type=mime,
                                size=size if isinstance(size, int) and not isinstance(size, bool) else None))
        kind = kind or ("image" if key == "photo" else "file")
    return found, kind


def _reactions(msg: dict[str, Any]) -> tuple[Reaction, ...]:
    out = []
    for item in _list(msg.get("reactions")):
        if not isinstance(item, dict) or item.get("type", "emoji") != "emoji" or not item.get("emoji"):
            continue  # custom emoji and paid reactions have no portable name
        for who in _list(item.get("recent")):
            if isinstance(who, dict) and _peer(who.get("from_id")):
                out.append(Reaction(str(item["emoji"]), _peer(who.get("from_id"))))
    return tuple(out)


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _time(msg: dict[str, Any], unix: str, iso: str, where: str, zone: tzinfo) -> int | None:
    """`date_unixtime` (UTC seconds); exports before 2021 have only `date`, the exporting
    computer's local time, read in `zone`."""
    value, key = (msg.get(unix), unix) if msg.get(unix) is not None else (msg.get(iso), iso)
    if value is None:
        return None
    try:
        if key == iso and isinstance(value, str):
            local = datetime.fromisoformat(value)
            return int((local if local.tzinfo else local.replace(tzinfo=zone)).timestamp() * 1000)
        return to_millis(value)
    except (ValueError, OverflowError):
        raise BadInput(0, f"{where}: {key}: not a time ({str(value)[:40]!r})") from None


def _chats(data: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(where, chat) in file order, for either shape."""
    if "messages" in data and not isinstance(data.get("chats"), dict):
        return [("chat", data)]
    out = []
    for section in ("chats", "left_chats"):
        block = data.get(section)
        if block is None:
            continue
        if not isinstance(block, dict) or not isinstance(block.get("list"), list):
            raise BadInput(0, f"{section}: must be an object with a `list`")
        out += [(f"{section}.list[{i}]", chat) for i, chat in enumerate(block["list"])]
    return out


def _self_of(data: dict[str, Any], chats: list[tuple[str, dict[str, Any]]], me: str | None, guess_me: bool) -> tuple[str, str]:
    """(the exporting person's user id, their name)."""
    info = data.get("personal_information")
    if isinstance(info, dict) and info.get("user_id"):
        user_id = str(info["user_id"])
        if not user_id.isdigit():
            raise BadInput(0, "personal_information.user_id: must be a number")
        name = " ".join(str(info.get(k) or "") for k in ("first_name", "last_name")).strip()
        return user_id, name[:200] or user_id
    senders: Counter[tuple[str, str]] = Counter()
    for _, chat in chats:
        for msg in chat.get("messages") or []:
            if isinstance(msg, dict) and msg.get("type") == "message" and isinstance(msg.get("from_id"), str):
                senders[(msg["from_id"], str(msg.get("from") or ""))] += 1
    listed = ", ".join(f"{name or '?'} ({ident})" for (ident, name), _ in senders.most_common(10))
    if me:
        wanted = me.strip()
        hits = {ident: name for (ident, name) in senders if wanted in (ident, _peer(ident), name)}
        if len(hits) == 1:
            ident, name = next(iter(hits.items()))
            return str(_peer(ident)), name or wanted
        if len(hits) > 1:
            raise BadInput(0, f"me: {me!r} names several senders ({', '.join(hits)}); pass the id instead")
        raise BadInput(0, f"me: {me!r} sent nothing in this export (senders: {listed})")
    if len(chats) == 1:
        chat = chats[0][1]
        if chat.get("type") == "personal_chat":
            peer = f"user{chat.get('id')}"
            mine = {(i, n) for (i, n) in senders if i != peer}
            if len(mine) == 1:
                ident, name = mine.pop()
                return str(_peer(ident)), name
        if chat.get("type") == "saved_messages" and len(senders) == 1:
            (ident, name), _ = senders.most_common(1)[0]
            return str(_peer(ident)), name
    if guess_me and senders:
        (ident, name), _ = senders.most_common(1)[0]
        return str(_peer(ident)), name
    raise BadInput(0, "this Telegram export does not say who exported it: pass me=<your name or user id as in `from` / "
                      f"`from_id`> (senders: {listed}), or guessMe to take the most frequent sender")


def parse(
    data: Any, *, me: str | None = None, guess_me: bool = False, tz: str | None = None
) -> tuple[list[ImportRecord], dict[str, int]]:
    """Records in file order and the counts of entries not imported, by reason."""
    try:
        zone: tzinfo = ZoneInfo(tz) if tz else timezone.utc
    except (ZoneInfoNotFoundError, ValueError):
        raise BadInput(0, f"tz: unknown time zone {tz!r} (an IANA name such as Europe/Berlin)") from None
    if not isinstance(data, dict):
        raise BadInput(0, "a Telegram export is a JSON object")
    chats = _chats(data)
    for where, chat in chats:
        if not isinstance(chat, dict) or not isinstance(chat.get("messages"), list):
            raise BadInput(0, f"{where}: a chat needs a `messages` list")
        if isinstance(chat.get("id"), bool) or not re.fullmatch(r"-?\d{1,20}", str(chat.get("id"))):
            raise BadInput(0, f"{where}: id: a chat needs a numeric `id`")
    self_id, self_name = _self_of(data, chats, me, guess_me)
    records: list[ImportRecord] = []
    ignored: Counter[str] = Counter()
    for where_chat, chat in chats:
        kind = str(chat.get("type") or "")
        if kind == "replies":
            ignored["the Replies service chat"] += len(chat["messages"])
            continue
        cid = chat_id(chat["id"], kind)
        name = chat.get("name") or ("Saved Messages" if kind == "saved_messages" else cid)
        for index, msg in enumerate(chat["messages"]):
            where = f"{where_chat}.messages[{index}]"
            if not isinstance(msg, dict):
                raise BadInput(0, f"{where}: must be an object")
            ident = msg.get("id")
            if not isinstance(ident, int) or isinstance(ident, bool):
                raise BadInput(0, f"{where}: id: an integer message id is required")
            where = f"{where} (id {ident})"
            mtype = msg.get("type")
            if mtype == "service":
                ignored["service messages (joins, pins, calls, title changes)"] += 1
                continue
            if mtype == "unsupported":
                ignored["messages Telegram Desktop could not export"] += 1
                continue
            if mtype != "message":
                raise BadInput(0, f"{where}: type: expected message or service, got {mtype!r}")
            sent_at = _time(msg, "date_unixtime", "date", where, zone)
            if sent_at is None:
                raise BadInput(0, f"{where}: date_unixtime (or date) is required")
            text = _text(msg.get("text"), where)
            attachments, media = _attachments(msg)
            if msg.get("media_type") == "sticker" and not text:
                text = str(msg.get("sticker_emoji") or "")
            reply = msg.get("reply_to_message_id")
            sender = _peer(msg.get("from_id"))
            if len(records) >= MAX_MESSAGES:
                raise BadInput(0, f"{where}: too many messages (at most {MAX_MESSAGES} per import)")
            records.append(ImportRecord(
                line=index + 1, platform=PLATFORM, account_id=self_id, account_name=self_name,
                chat_id=cid, chat_name=str(name)[:500], chat_type=CHAT_TYPES.get(kind, ChatType.GROUP),
                native_id=str(ident), sender_id=sender, sender_name=str(msg["from"]) if msg.get("from") else None,
                sent_at=sent_at, text=text, is_self=sender == self_id or kind == "saved_messages",
                reply_to=str(reply) if isinstance(reply, int) and not msg.get("reply_to_peer_id") else None,
                attachments=tuple(attachments), raw={"telegram": msg},
                edited_at=_time(msg, "edited_unixtime", "edited", where, zone),
                content_type="text" if text or not media else media,
                reactions=_reactions(msg),
            ))
    return records, dict(ignored)
