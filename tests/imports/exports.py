"""Export files built the way each app writes them.

Slack: the workspace export zip (users.json, channels.json, groups.json, dms.json, mpims.json,
one folder per conversation with a JSON list per day; messages shaped like
conversations.history). Telegram: tdesktop's result.json (export_output_json.cpp: ids bare,
`date` local ISO plus `date_unixtime`, `text` a string or a list of strings and entity objects
plus `text_entities`, `edited`/`edited_unixtime`, `photo`/`file` relative paths or "(File not
included…)", service messages with `actor`/`action`). WhatsApp: the iOS `_chat.txt` (brackets,
seconds, U+200E before system and media lines, U+202F before AM/PM) and Android's
`dd/mm/yy, hh:mm - Name: text` with "(file attached)" and "<Media omitted>".
"""

from __future__ import annotations

import io
import zipfile
from typing import Any

import orjson

TEAM = "T0ACME001"
ALICE, BOB, CAROL = "U01ALICE", "U02BOB", "U03CAROL"
T0 = 1_672_574_400  # 2023-01-01T12:00:00Z


def slack_users() -> list[dict[str, Any]]:
    def user(uid: str, name: str, real: str, display: str) -> dict[str, Any]:
        return {"id": uid, "team_id": TEAM, "name": name, "deleted": False, "real_name": real, "tz": "Asia/Shanghai",
                "profile": {"real_name": real, "display_name": display, "team": TEAM}, "is_bot": False}

    return [user(ALICE, "alice", "Alice Wang", "alice"), user(BOB, "bob", "王小明", "小明"), user(CAROL, "carol", "نور", "نور")]


def slack_message(ts: str, user: str, text: str, **extra: Any) -> dict[str, Any]:
    names = {u["id"]: u for u in slack_users()}
    return {"client_msg_id": f"cm-{ts}", "type": "message", "text": text, "user": user, "ts": ts, "team": TEAM,
            "user_team": TEAM, "source_team": TEAM,
            "user_profile": {"real_name": names[user]["real_name"], "display_name": names[user]["profile"]["display_name"],
                             "name": names[user]["name"], "team": TEAM},
            "blocks": [{"type": "rich_text", "block_id": "b1", "elements": []}], **extra}


def slack_zip(*, broken: str | None = None, top_folder: str | None = None) -> bytes:
    """general (public, thread, edit, reactions, file, join), a private group, a DM and an mpim.
    `broken`: "ts" drops one message's ts (general/2023-01-02.json, message 2)."""
    day1 = [
        {"type": "message", "subtype": "channel_join", "ts": f"{T0}.000100", "user": ALICE, "text": f"<@{ALICE}> has joined the channel"},
        slack_message(f"{T0 + 60}.000200", ALICE, "Ship it by Friday? 🚀", thread_ts=f"{T0 + 60}.000200", reply_count=1,
                      reply_users=[BOB], latest_reply=f"{T0 + 120}.000300",
                      reactions=[{"name": "rocket", "users": [BOB, CAROL], "count": 2}, {"name": "+1", "users": [BOB], "count": 1}]),
        slack_message(f"{T0 + 120}.000300", BOB, "好的，周五前完成 ✅", thread_ts=f"{T0 + 60}.000200", parent_user_id=ALICE,
                      edited={"user": BOB, "ts": f"{T0 + 180}.000000"}),
    ]
    day2 = [
        slack_message(f"{T0 + 86_400}.000100", CAROL, "مرحبا بالجميع", subtype="file_share", upload=False,
                      files=[{"id": "F01", "name": "plan.pdf", "title": "plan.pdf", "mimetype": "application/pdf", "filetype": "pdf",
                              "size": 12345, "url_private": "https://files.slack.com/files-pri/T0ACME001-F01/plan.pdf"}]),
        slack_message(f"{T0 + 86_460}.000200", ALICE, "thanks <@U03CAROL>"),
    ]
    if broken == "ts":
        del day2[1]["ts"]
    files: dict[str, Any] = {
        "users.json": slack_users(),
        "channels.json": [{"id": "C0GENERAL", "name": "general", "created": T0 - 1000, "creator": ALICE, "is_archived": False,
                           "is_general": True, "members": [ALICE, BOB, CAROL], "topic": {"value": ""}, "purpose": {"value": ""}}],
        "groups.json": [{"id": "G0SECRET", "name": "secret-plans", "created": T0 - 500, "creator": BOB, "is_archived": False,
                         "members": [ALICE, BOB]}],
        "dms.json": [{"id": "D0ALICEBOB", "created": T0 - 100, "members": [ALICE, BOB]}],
        "mpims.json": [{"id": "G0MPIM", "name": "mpdm-alice--bob--carol-1", "created": T0 - 50, "creator": ALICE,
                        "is_archived": False, "members": [ALICE, BOB, CAROL]}],
        "integration_logs.json": [],
        "general/2023-01-01.json": day1,
        "general/2023-01-02.json": day2,
        "secret-plans/2023-01-01.json": [slack_message(f"{T0 + 30}.000100", BOB, "budget is 5k")],
        "D0ALICEBOB/2023-01-01.json": [slack_message(f"{T0 + 40}.000100", ALICE, "lunch?"),
                                       slack_message(f"{T0 + 50}.000100", BOB, "sure 🍜")],
        "mpdm-alice--bob--carol-1/2023-01-01.json": [slack_message(f"{T0 + 70}.000100", CAROL, "who has the keys?")],
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, value in files.items():
            archive.writestr((top_folder + "/" if top_folder else "") + name, orjson.dumps(value, option=orjson.OPT_INDENT_2))
    return buffer.getvalue()


SLACK_MESSAGES = 9  # every message in slack_zip, the channel_join included (stored as "system")


def tg_message(ident: int, when: int, sender: str, sender_id: str, text: Any, **extra: Any) -> dict[str, Any]:
    from datetime import datetime

    entities = [{"type": "plain", "text": text}] if isinstance(text, str) else [
        part if isinstance(part, dict) else {"type": "plain", "text": part} for part in text
    ]
    return {"id": ident, "type": "message", "date": datetime.utcfromtimestamp(when).isoformat(), "date_unixtime": str(when),
            "from": sender, "from_id": sender_id, **extra, "text": text, "text_entities": entities}


def telegram_chat(*, broken: str | None = None) -> dict[str, Any]:
    """A private supergroup: service join, Chinese/emoji/RTL, entities, an edit, a reply, a photo,
    a file not included, a sticker, reactions. `broken`: "date" drops message 4's dates."""
    messages = [
        {"id": 1, "type": "service", "date": "2023-01-01T12:00:00", "date_unixtime": str(T0), "actor": "Alice",
         "actor_id": "user111", "action": "create_group", "title": "家庭 Family", "members": ["Bob"], "text": "", "text_entities": []},
        tg_message(2, T0 + 60, "Alice", "user111", "你好 👋 everyone"),
        tg_message(3, T0 + 120, "Bob", "user222", ["see ", {"type": "bold", "text": "שלום"}, " and ",
                                                  {"type": "link", "text": "https://example.com"}],
                   edited="2023-01-01T12:05:00", edited_unixtime=str(T0 + 300)),
        tg_message(4, T0 + 180, "Alice", "user111", "on it", reply_to_message_id=3,
                   reactions=[{"type": "emoji", "count": 1, "emoji": "👍", "recent": [{"from": "Bob", "from_id": "user222",
                                                                                      "date": "2023-01-01T12:04:00"}]}]),
        tg_message(5, T0 + 240, "Bob", "user222", "", photo="photos/photo_1@01-01-2023_12-04-00.jpg", photo_file_size=54321,
                   width=1280, height=960),
        tg_message(6, T0 + 300, "Alice", "user111", "the contract",
                   file="(File not included. Change data exporting settings to download.)", file_name="contract.pdf",
                   file_size=99999, mime_type="application/pdf"),
        tg_message(7, T0 + 360, "Bob", "user222", "", file="stickers/sticker.webp", media_type="sticker", sticker_emoji="😂",
                   width=512, height=512),
    ]
    if broken == "date":
        del messages[3]["date"], messages[3]["date_unixtime"]
    return {"name": "家庭 Family", "type": "private_supergroup", "id": 1234567890, "messages": messages}


TELEGRAM_MESSAGES = 6  # telegram_chat's messages without the service one


def telegram_full() -> dict[str, Any]:
    """A whole-account export: personal_information says who exported; a personal chat too."""
    personal = {"name": "Bob", "type": "personal_chat", "id": 222, "messages": [
        tg_message(10, T0 + 500, "Alice", "user111", "direct hi"),
        tg_message(11, T0 + 560, "Bob", "user222", "direct hello"),
    ]}
    return {"about": "Here is the data you requested.",
            "personal_information": {"user_id": 111, "first_name": "Alice", "last_name": "", "phone_number": "+1 555 0100",
                                     "bio": ""},
            "chats": {"about": "This page lists all chats from this export.", "list": [telegram_chat(), personal]},
            "left_chats": {"about": "This page lists all supergroups and channels you've left.", "list": []}}


IOS_CHAT = (
    "\u200e[01/02/2023, 21:15:02] Family 家: \u200eMessages and calls are end-to-end encrypted. No one outside of this chat, "
    "not even WhatsApp, can read or listen to them.\r\n"
    "\u200e[01/02/2023, 21:15:03] Alice: \u200eAlice created group \u201cFamily 家\u201d\r\n"
    "[01/02/2023, 21:15:10] Alice: 你好 👋\r\n"
    "second line of the same message\r\n"
    "[01/02/2023, 21:16:00] Bob: \u200e<attached: 00000012-PHOTO-2023-02-01-21-16-00.jpg>\r\n"
    "[13/02/2023, 9:05:00\u202fPM] Bob: שלום עולם <This message was edited>\r\n"
    "[13/02/2023, 9:06:00\u202fPM] \u202a+1\u00a0555\u00a0010\u00a00199\u202c: ok\r\n"
    "[13/02/2023, 9:06:00\u202fPM] \u202a+1\u00a0555\u00a0010\u00a00199\u202c: ok\r\n"
    "[13/02/2023, 9:07:00\u202fPM] Alice: \u200eimage omitted\r\n"
    "[13/02/2023, 9:08:00\u202fPM] Bob: \u200eThis message was deleted.\r\n"
)
IOS_MESSAGES = 6  # two system lines and a deleted message are not imported

ANDROID_CHAT = (
    "01/02/23, 21:15 - Messages and calls are end-to-end encrypted. No one outside of this chat, not even WhatsApp, can "
    "read or listen to them. Tap to learn more.\n"
    "01/02/23, 21:16 - Alice: IMG-20230201-WA0001.jpg (file attached)\n"
    "our new flat 🏠\n"
    "01/02/23, 21:17 - Bob: <Media omitted>\n"
    "13/02/23, 09:00 - Bob: 明天见\n"
    "13/02/23, 09:01 - Alice: see you <This message was edited>\n"
    "13/02/23, 09:02 - Bob changed this group's icon\n"
)
ANDROID_MESSAGES = 4
