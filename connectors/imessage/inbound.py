"""One chat.db message row (as chatdb.py reads it) -> normalized changes. Pure.

- chat id: the chat's guid (`iMessage;-;+15551234567` direct, `iMessage;+;chat…` group;
  style 43 = group, 45 = direct); chat name: `display_name` (the group's name) or the
  identifier. Native id: the message guid. Sender: the handle (phone or email), or the
  account's own address when `is_from_me` (then `is_self`).
- text: `text`, or when NULL (most messages since macOS Ventura) the string decoded from
  `attributedBody`; U+FFFC (an inline attachment's place) removed.
- dates: nanoseconds since 2001-01-01 (seconds in databases from before High Sierra).
- replies: `thread_originator_guid` (inline replies); mentions: the handles in the text's
  `__kIMMentionConfirmedMention` attribute runs.
- tapbacks: `associated_message_type` 2000-2005 (love, like, dislike, laugh, emphasis,
  question) add, 3000-3005 take back, 2006/3006 a custom emoji (`associated_message_emoji`
  where the schema has it); the target is `associated_message_guid` without its `p:N/` or
  `bp:` prefix. Other associated types (stickers 1000, polls…) carry no message.
- `item_type` 2 with `group_title`: the group was renamed (a CHAT change); other item types
  (members joined/left, group photo) are not messages.
- edits (macOS 13+): the row's text changes and `date_edited` is set; the poller re-reads
  such rows marked `"change": "edit"` -> an EDIT. Unsent: `date_retracted`, or edited down to
  no body -> a DELETE (also when first seen so).
"""

from __future__ import annotations

import base64
from typing import Any

from connectors.base import Account, Attachment, Change, ChangeKind, ChatInfo, ChatType, Envelope, Message, Reaction
from connectors.imessage.typedstream import OBJECT_REPLACEMENT, TypedStreamError, attributed_text, mentions

APPLE_EPOCH_MS = 978_307_200_000
TAPBACK_EMOJI = {0: "❤️", 1: "👍", 2: "👎", 3: "😂", 4: "‼️", 5: "❓"}
GROUP_STYLE = 43


def normalize(envelope: Envelope, account: Account | None = None) -> list[Change]:
    row = envelope.payload
    if not isinstance(row, dict) or not row.get("guid"):
        raise ValueError("not a chat.db message row (no guid)")
    if not row.get("chat_guid"):
        return []  # an orphan row in no chat (left behind by a deleted conversation): nowhere to show it
    chat_id, at = str(row["chat_guid"]), apple_ms(row.get("date"))
    is_self = bool(row.get("is_from_me"))
    sender = _self_address(row) if is_self else row.get("handle")
    kind, item_type = int(row.get("associated_message_type") or 0), int(row.get("item_type") or 0)
    edit = row.get("change") == "edit"
    if edit and (kind or item_type):
        return []  # a tapback or a group event does not change after the fact
    if kind:
        return _tapback(row, kind, chat_id, sender, at)
    if _unsent(row):
        return [Change(ChangeKind.DELETE, chat_id, str(row["guid"]), at=apple_ms(row.get("date_retracted") or row["date_edited"]))]
    if item_type == 2 and row.get("group_title"):
        return [Change(ChangeKind.CHAT, chat_id, "", at=at, chat=ChatInfo(name=str(row["group_title"])))]
    if item_type:
        return []
    group = row.get("chat_style") == GROUP_STYLE
    message = Message(
        chat_id=chat_id,
        native_id=str(row["guid"]),
        sent_at=at,
        chat_type=ChatType.GROUP if group else ChatType.DM,
        chat_name=row.get("display_name") or row.get("chat_identifier"),
        reply_to_id=row.get("thread_originator_guid") or None,
        sender_id=sender,
        is_self=is_self,
        text=text_of(row),
        mentions=mentions(base64.b64decode(row["attributed_body"])) if row.get("attributed_body") else [],
        content_type="text" if not row.get("attachments") else "attachment",
        attachments=[_attachment(a) for a in row.get("attachments") or []],
        edited_at=apple_ms(row["date_edited"]) if row.get("date_edited") else None,
    )
    if edit:
        return [Change(ChangeKind.EDIT, chat_id, message.native_id, message, at=message.edited_at or at)]
    return [Change(ChangeKind.UPSERT, chat_id, message.native_id, message)]


def _unsent(row: dict[str, Any]) -> bool:
    """Unsent ("retracted"): `date_retracted` set, or edited down to nothing (how Messages
    leaves an unsent message: its body gone, `date_edited` set)."""
    if row.get("date_retracted"):
        return True
    return bool(row.get("date_edited")) and not row.get("text") and not row.get("attributed_body") and not row.get("attachments")


def apple_ms(value: Any) -> int:
    """Apple's timestamps: nanoseconds since 2001-01-01 (seconds in old databases) -> Unix ms."""
    try:
        raw = int(value or 0)
    except (TypeError, ValueError):
        raise ValueError(f"chat.db date is not a number: {value!r}") from None
    return APPLE_EPOCH_MS + (raw // 1_000_000 if raw > 10**11 else raw * 1000)


def text_of(row: dict[str, Any]) -> str:
    text = row.get("text")
    if not text and row.get("attributed_body"):
        try:
            text = attributed_text(base64.b64decode(row["attributed_body"]))
        except (TypedStreamError, ValueError) as err:
            raise ValueError(f"unreadable attributedBody: {err}") from None
    return (text or "").replace(OBJECT_REPLACEMENT, "").strip()


def _tapback(row: dict[str, Any], kind: int, chat_id: str, sender: str | None, at: int) -> list[Change]:
    if not (2000 <= kind <= 2006 or 3000 <= kind <= 3006):
        return []
    target = str(row.get("associated_message_guid") or "")
    target = target.split("/", 1)[1] if target.startswith("p:") and "/" in target else target.removeprefix("bp:")
    if not target:
        raise ValueError("tapback without associated_message_guid")
    emoji = row.get("associated_message_emoji") if kind % 1000 == 6 else TAPBACK_EMOJI.get(kind % 1000)
    if not emoji:
        return []
    reaction = Reaction(emoji=str(emoji), sender_id=sender, added=kind < 3000)
    return [Change(ChangeKind.REACTION, chat_id, target, at=at, reaction=reaction)]


def _self_address(row: dict[str, Any]) -> str | None:
    """Which of my addresses sent it: `destination_caller_id`, else the `account` (`E:me@icloud.com`)."""
    mine = row.get("destination_caller_id") or row.get("account")
    return str(mine).split(":", 1)[-1] if mine else None


def _attachment(a: dict[str, Any]) -> Attachment:
    """The file stays on the Mac (`filename`, under ~/Library/Messages/Attachments): kept as a
    `file:` reference, meaningful only there."""
    filename = a.get("filename")
    return Attachment(name=a.get("transfer_name"), url=f"file:{filename}" if filename else None,
                      content_type=a.get("mime_type"), size=a.get("total_bytes") or None)
