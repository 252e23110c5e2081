"""A WeixinMessage (one entry of getupdates' `msgs`) -> normalized changes. Pure.

Shape (iLink, as Tencent's openclaw-weixin plugin reads it): `message_id` (uint64), `seq`,
`from_user_id` / `to_user_id` ("…@im.wechat" people, "…@im.bot" bots), `group_id` (group
chats), `create_time_ms`, `delete_time_ms` (set on a recalled message), `message_type`
(1 user, 2 bot), `message_state` (0 new, 1 generating, 2 finished), `context_token`, and
`item_list` of items typed 1 text, 2 image, 3 voice (may carry a transcript), 4 file, 5 video;
an item's `ref_msg` is a quoted message (a reply). WeChat has no edits, reactions or mentions
in this API. Our own sends carry the `client_id` we chose: that is their native id, so an
echo (if iLink ever returns one) merges with the outbound row.
"""

from __future__ import annotations

from typing import Any

from connectors.base import Account, Attachment, Change, ChangeKind, ChatType, Envelope, Message

TEXT, IMAGE, VOICE, FILE, VIDEO = 1, 2, 3, 4, 5
BOT_MESSAGE = 2
GENERATING = 1
MEDIA = {IMAGE: ("image", "image_item", "image/jpeg"), VOICE: ("voice", "voice_item", "audio/silk"),
         FILE: ("file", "file_item", None), VIDEO: ("video", "video_item", "video/mp4")}


def delivery_id(msg: dict[str, Any]) -> str:
    """Unique per delivery: a recall of a message is a second delivery of the same message_id."""
    base = str(msg.get("message_id") or f"seq-{msg.get('seq')}")
    deleted = msg.get("delete_time_ms")
    return f"{base}:deleted" if _is_int(deleted) and deleted > 0 else base


def chat_of(msg: dict[str, Any]) -> str:
    """The chat a message belongs to (and the `to_user_id` a reply goes to)."""
    if isinstance(msg.get("group_id"), str) and msg["group_id"]:
        return msg["group_id"]
    key = "to_user_id" if msg.get("message_type") == BOT_MESSAGE else "from_user_id"
    return str(msg.get(key) or "")


def normalize(envelope: Envelope, account: Account | None = None) -> list[Change]:
    msg = envelope.payload
    if not isinstance(msg, dict) or not (_is_int(msg.get("message_id")) or _is_int(msg.get("seq"))):
        raise ValueError("not an iLink WeixinMessage: no integer message_id or seq")
    if not isinstance(msg.get("from_user_id"), str) or not msg["from_user_id"]:
        raise ValueError("iLink message has no from_user_id")
    if msg.get("message_state") == GENERATING:
        return []  # a bot reply still being streamed: its finished state follows
    chat_id = chat_of(msg)
    native_id = _native_id(msg)
    deleted = msg.get("delete_time_ms")
    if _is_int(deleted) and deleted > 0:
        return [Change(ChangeKind.DELETE, chat_id, native_id, at=deleted)]
    message = to_message(msg, account)
    return [Change(ChangeKind.UPSERT, message.chat_id, message.native_id, message)]


def to_message(msg: dict[str, Any], account: Account | None = None) -> Message:
    texts: list[str] = []
    attachments: list[Attachment] = []
    content_type: str | None = None
    reply_to_id: str | None = None
    items = msg.get("item_list") if isinstance(msg.get("item_list"), list) else []
    for item in items:
        if not isinstance(item, dict):
            continue
        kind = item.get("type")
        if kind == TEXT and isinstance(item.get("text_item"), dict):
            text = item["text_item"].get("text")
            if isinstance(text, str) and text:
                texts.append(text)
        elif kind in MEDIA:
            name, key, mime = MEDIA[kind]
            content_type = content_type or name
            body = item.get(key) if isinstance(item.get(key), dict) else {}
            attachments.append(_attachment(kind, body, mime))
            transcript = body.get("text") if kind == VOICE else None
            if isinstance(transcript, str) and transcript:
                texts.append(transcript)
        reply_to_id = reply_to_id or _quoted(item.get("ref_msg"))
    own_ids = {account.external_id} if account is not None and account.external_id else set()
    sender = msg["from_user_id"]
    created = msg.get("create_time_ms")
    text = "\n".join(texts)
    group = isinstance(msg.get("group_id"), str) and bool(msg["group_id"])
    return Message(
        chat_id=chat_of(msg),
        native_id=_native_id(msg),
        sent_at=created if _is_int(created) else 0,
        chat_type=ChatType.GROUP if group else ChatType.DM,
        reply_to_id=reply_to_id,
        sender_id=sender,
        is_self=msg.get("message_type") == BOT_MESSAGE or sender in own_ids,
        text=text,
        content_type=content_type or ("text" if text else "other"),
        attachments=attachments,
    )


def _native_id(msg: dict[str, Any]) -> str:
    if msg.get("message_type") == BOT_MESSAGE and isinstance(msg.get("client_id"), str) and msg["client_id"]:
        return msg["client_id"]
    return str(msg.get("message_id") or f"seq-{msg.get('seq')}")


def _attachment(kind: int, body: dict[str, Any], mime: str | None) -> Attachment:
    """Media lives encrypted on WeChat's CDN (AES-128-ECB, key in the item): keep the direct
    `full_url` when iLink gives one; otherwise the raw payload has what a download needs."""
    media = body.get("media") if isinstance(body.get("media"), dict) else {}
    url = media.get("full_url") if isinstance(media.get("full_url"), str) else None
    size: Any = None
    if kind == FILE:
        size = body.get("len")
        size = int(size) if isinstance(size, str) and size.isdigit() else size
    elif kind == VIDEO:
        size = body.get("video_size")
    elif kind == IMAGE:
        size = body.get("hd_size") or body.get("mid_size")
    name = body.get("file_name") if isinstance(body.get("file_name"), str) else None
    return Attachment(name=name, url=url, content_type=mime, size=size if _is_int(size) else None)


def _quoted(ref: Any) -> str | None:
    """A quote names the quoted message by `svr_id` (its message_id), else by its item's msg_id."""
    if not isinstance(ref, dict):
        return None
    if _is_int(ref.get("svr_id")) or (isinstance(ref.get("svr_id"), str) and ref["svr_id"]):
        return str(ref["svr_id"])
    item = ref.get("message_item")
    if isinstance(item, dict) and isinstance(item.get("msg_id"), str) and item["msg_id"]:
        return item["msg_id"]
    return None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
