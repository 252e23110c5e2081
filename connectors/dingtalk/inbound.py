"""DingTalk robot messages (topic `/v1.0/im/bot/messages/get`, or the same JSON posted in HTTP
mode) -> normalized changes. Pure: no I/O, no SDK objects, only the dict.

What DingTalk gives a robot: every DM sent to it and the group messages that @-mention it,
each exactly once per `msgId`. It never tells a robot about edits, recalls (deletes) or
reactions, and has no history API for robots: every message is an UPSERT.

Chat ids: a group is `group:{conversationId}` (the openConversationId the robot API sends to,
as the openloomi client names DingTalk groups); a DM is `user:{senderStaffId}` (batchSend's
`userIds`), or `user:{senderId}` for a sender outside the organisation, who has no staff id.

The payload is the message exactly as DingTalk sent it, minus `sessionWebhook`: that URL lets
anyone post into the chat until it expires, so it is a credential and stays out of the store
(the listener keeps it in memory for replies, see outbound.SessionWebhooks).
"""

from __future__ import annotations

from typing import Any

from connectors.base import Account, Attachment, Change, ChangeKind, ChatType, Envelope, Message

TOPIC = "/v1.0/im/bot/messages/get"
SECRET_KEYS = ("sessionWebhook",)

# msgtype -> our content_type (text and richText are "text")
MEDIA = {"picture": "image", "file": "file", "audio": "voice", "video": "video"}


def stored_payload(data: dict[str, Any]) -> dict[str, Any]:
    """What goes into the queue and the store: the message without its session webhook."""
    return {k: v for k, v in data.items() if k not in SECRET_KEYS}


def chat_of(data: dict[str, Any]) -> tuple[str, ChatType]:
    kind = str(data.get("conversationType") or "")
    if kind == "2":
        cid = data.get("conversationId")
        if not isinstance(cid, str) or not cid:
            raise ValueError("DingTalk group message without conversationId")
        return f"group:{cid}", ChatType.GROUP
    if kind == "1":
        who = data.get("senderStaffId") or data.get("senderId")
        if not isinstance(who, str) or not who:
            raise ValueError("DingTalk DM without senderStaffId or senderId")
        return f"user:{who}", ChatType.DM
    raise ValueError(f"unknown DingTalk conversationType {kind!r}")


def normalize(envelope: Envelope, account: Account | None = None) -> list[Change]:
    data = envelope.payload
    if not isinstance(data, dict) or not isinstance(data.get("msgId"), str) or not data["msgId"]:
        raise ValueError("not a DingTalk robot message: no msgId")
    message = to_message(data)
    return [Change(ChangeKind.UPSERT, message.chat_id, message.native_id, message)]


def to_message(data: dict[str, Any]) -> Message:
    chat_id, chat_type = chat_of(data)
    created = data.get("createAt")
    if not _is_int(created):
        raise ValueError("DingTalk message without an integer createAt")
    sender_id = data.get("senderStaffId") or data.get("senderId")
    nick = data.get("senderNick") if isinstance(data.get("senderNick"), str) else None
    text, content_type, attachments = _content(data)
    reply_to = None
    text_obj = data.get("text")
    if isinstance(text_obj, dict) and text_obj.get("isReplyMsg"):
        replied = text_obj.get("repliedMsg")
        if isinstance(replied, dict) and isinstance(replied.get("msgId"), str):
            reply_to = replied["msgId"]
    bot = data.get("chatbotUserId")
    return Message(
        chat_id=chat_id,
        native_id=data["msgId"],
        sent_at=created,
        chat_type=chat_type,
        chat_name=data.get("conversationTitle") if chat_type is ChatType.GROUP else nick,
        reply_to_id=reply_to,
        sender_id=str(sender_id) if sender_id else None,
        sender_name=nick,
        is_self=bool(bot) and data.get("senderId") == bot,  # robots never get their own messages; kept for safety
        text=text,
        content_type=content_type,
        attachments=attachments,
        mentions=_mentions(data),
    )


def _content(data: dict[str, Any]) -> tuple[str, str, list[Attachment]]:
    """(text, content_type, attachments). Files have no URL: DingTalk hands out a `downloadCode`
    (kept in the raw payload) that `/v1.0/robot/messageFiles/download` turns into a short-lived one."""
    kind = data.get("msgtype")
    content = data.get("content") if isinstance(data.get("content"), dict) else {}
    if kind == "text":
        text = data.get("text", {}).get("content") if isinstance(data.get("text"), dict) else None
        return (text.strip() if isinstance(text, str) else ""), "text", []
    if kind == "richText":
        parts: list[str] = []
        found: list[Attachment] = []
        for item in content.get("richText") or ():
            if not isinstance(item, dict):
                continue
            if isinstance(item.get("text"), str):
                parts.append(item["text"])
            elif item.get("type") == "picture" or item.get("downloadCode"):
                found.append(Attachment(content_type="image"))
        return "".join(parts).strip(), "text", found
    if kind in MEDIA:
        name = content.get("fileName") if isinstance(content.get("fileName"), str) else None
        mime = {"picture": "image", "audio": "audio", "video": "video"}.get(kind)
        if kind == "video" and isinstance(content.get("videoType"), str):
            mime = f"video/{content['videoType']}"
        # DingTalk transcribes voice messages itself: keep the transcript as the text
        text = content.get("recognition") if kind == "audio" and isinstance(content.get("recognition"), str) else ""
        return text, MEDIA[kind], [Attachment(name=name, content_type=mime)]
    return "", "other", []


def _mentions(data: dict[str, Any]) -> list[str]:
    """Who was @-ed: staff ids where DingTalk gives them, else the opaque dingtalkId (the robot)."""
    out: list[str] = []
    for user in data.get("atUsers") or ():
        if isinstance(user, dict):
            who = user.get("staffId") or user.get("dingtalkId")
            if isinstance(who, str) and who:
                out.append(who)
    return list(dict.fromkeys(out))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
