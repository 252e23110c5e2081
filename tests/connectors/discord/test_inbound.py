"""normalize() on gateway payloads shaped like Discord's documentation (Gateway Events, Message
and Channel resources): pure, no fake needed."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.base import Account, ChangeKind, ChatType, Envelope
from connectors.discord.inbound import iso_ms, normalize

BOT = "1100000000000000001"
GUILD = "197038439483310086"
CHANNEL = "290926798999357250"
ACCOUNT = Account(id="acct", user_id="usr", platform="discord", external_id=GUILD, name="HQ",
                  credentials={"bot_user_id": BOT})
AUTHOR = {"id": "53908232506183680", "username": "mason", "discriminator": "0", "global_name": "Mason",
          "avatar": "a_d5efa99b3eeaa7dd43acca82f5692432", "public_flags": 131328}


def env(t: str, d: dict[str, Any], s: int = 7, received_at: int = 1_700_000_000_000) -> Envelope:
    return Envelope("discord", "acct", f"{t}:x", received_at, {"t": t, "s": s, "d": d})


def message(**over: Any) -> dict[str, Any]:
    base = {
        "id": "334385199974967042", "type": 0, "channel_id": CHANNEL, "guild_id": GUILD, "author": AUTHOR,
        "member": {"roles": [], "joined_at": "2015-04-26T06:26:56.936000+00:00", "deaf": False, "mute": False,
                   "nick": None, "flags": 0},
        "content": "Supa Hot", "timestamp": "2017-07-11T17:27:07.299000+00:00", "edited_timestamp": None,
        "tts": False, "mention_everyone": False, "mentions": [], "mention_roles": [], "attachments": [],
        "embeds": [], "pinned": False, "flags": 0, "nonce": "334385199285592064", "components": [],
    }
    return base | over


def test_message_create_is_an_upsert_with_everything_we_keep() -> None:
    data = message(
        content=f"hey <@{BOT}> look",
        mentions=[{"id": BOT, "username": "loomibot", "discriminator": "0", "avatar": None, "bot": True}],
        attachments=[{"id": "1", "filename": "report.pdf", "size": 2048, "content_type": "application/pdf",
                      "url": "https://cdn.discordapp.com/attachments/1/2/report.pdf", "proxy_url": "https://m/x"}],
        member={"nick": "Mase", "roles": []},
    )
    (change,) = normalize(env("MESSAGE_CREATE", data), ACCOUNT)
    m = change.message
    assert (change.kind, change.chat_id, change.native_id) == (ChangeKind.UPSERT, CHANNEL, "334385199974967042")
    assert m.sent_at == iso_ms("2017-07-11T17:27:07.299000+00:00") == 1499794027299
    assert (m.chat_type, m.sender_id, m.sender_name, m.is_self) == (ChatType.CHANNEL, AUTHOR["id"], "Mase", False)
    assert m.mentions == [BOT] and m.text == f"hey <@{BOT}> look" and m.content_type == "text"
    assert [(a.name, a.content_type, a.size) for a in m.attachments] == [("report.pdf", "application/pdf", 2048)]
    assert m.attachments[0].url.endswith("/report.pdf") and m.reply_to_id is None and m.edited_at is None


def test_reply_forward_thread_starter_and_system_messages() -> None:
    reply = message(type=19, message_reference={"type": 0, "message_id": "111", "channel_id": CHANNEL,
                                                "guild_id": GUILD}, referenced_message=message(id="111"))
    assert normalize(env("MESSAGE_CREATE", reply), ACCOUNT)[0].message.reply_to_id == "111"
    forward = message(message_reference={"type": 1, "message_id": "222", "channel_id": "9"})
    assert normalize(env("MESSAGE_CREATE", forward), ACCOUNT)[0].message.reply_to_id is None
    starter = message(type=21, message_reference={"message_id": "333", "channel_id": CHANNEL})
    assert normalize(env("MESSAGE_CREATE", starter), ACCOUNT)[0].message.reply_to_id is None
    join = message(type=7, content="")
    assert normalize(env("MESSAGE_CREATE", join), ACCOUNT)[0].message.content_type == "system"
    image_only = message(content="", attachments=[{"id": "1", "filename": "a.png", "size": 3, "url": "u",
                                                   "content_type": "image/png"}])
    assert normalize(env("MESSAGE_CREATE", image_only), ACCOUNT)[0].message.content_type == "image"


def test_the_bots_own_message_is_self_and_a_dm_is_a_dm() -> None:
    mine = message(author={"id": BOT, "username": "loomibot", "bot": True})
    assert normalize(env("MESSAGE_CREATE", mine), ACCOUNT)[0].message.is_self is True
    other_account = Account(id="b", user_id="u", platform="discord", external_id=GUILD, name="x", credentials={})
    assert normalize(env("MESSAGE_CREATE", mine), other_account)[0].message.is_self is False
    dm = message()
    del dm["guild_id"], dm["member"]
    assert normalize(env("MESSAGE_CREATE", dm), ACCOUNT)[0].message.chat_type == ChatType.DM


def test_edits_deletes_and_bulk_deletes() -> None:
    edited = message(content="Supa Hot (fixed)", edited_timestamp="2017-07-11T17:30:00.000000+00:00")
    (change,) = normalize(env("MESSAGE_UPDATE", edited), ACCOUNT)
    assert (change.kind, change.at, change.message.text) == (ChangeKind.EDIT, 1499794200000, "Supa Hot (fixed)")
    assert change.message.edited_at == change.at
    assert normalize(env("MESSAGE_UPDATE", message()), ACCOUNT) == []  # an embed unfurl, not an edit

    (gone,) = normalize(env("MESSAGE_DELETE", {"id": "334385199974967042", "channel_id": CHANNEL,
                                                "guild_id": GUILD}, received_at=42), ACCOUNT)
    assert (gone.kind, gone.chat_id, gone.native_id, gone.at) == (ChangeKind.DELETE, CHANNEL, "334385199974967042", 42)
    bulk = normalize(env("MESSAGE_DELETE_BULK", {"ids": ["1", "2"], "channel_id": CHANNEL, "guild_id": GUILD}), ACCOUNT)
    assert [(c.kind, c.native_id) for c in bulk] == [(ChangeKind.DELETE, "1"), (ChangeKind.DELETE, "2")]


def test_reactions_unicode_and_custom() -> None:
    add = {"user_id": AUTHOR["id"], "channel_id": CHANNEL, "message_id": "5", "guild_id": GUILD,
           "emoji": {"id": None, "name": "🔥"}, "burst": False, "type": 0, "message_author_id": BOT}
    (change,) = normalize(env("MESSAGE_REACTION_ADD", add, received_at=99), ACCOUNT)
    assert (change.kind, change.chat_id, change.native_id, change.at) == (ChangeKind.REACTION, CHANNEL, "5", 99)
    assert (change.reaction.emoji, change.reaction.sender_id, change.reaction.added) == ("🔥", AUTHOR["id"], True)
    custom = add | {"emoji": {"id": "41771983429993937", "name": "LUL", "animated": True}}
    (removed,) = normalize(env("MESSAGE_REACTION_REMOVE", custom), ACCOUNT)
    assert (removed.reaction.emoji, removed.reaction.added) == ("<a:LUL:41771983429993937>", False)


def test_channel_thread_and_guild_create_are_chat_changes() -> None:
    channel = {"id": CHANNEL, "type": 0, "guild_id": GUILD, "name": "general", "position": 6, "topic": None}
    (change,) = normalize(env("CHANNEL_UPDATE", channel), ACCOUNT)
    assert (change.kind, change.chat_id, change.native_id) == (ChangeKind.CHAT, CHANNEL, "")
    assert (change.chat.name, change.chat.type) == ("general", ChatType.CHANNEL)
    thread = {"id": "41771983423143937", "guild_id": GUILD, "parent_id": CHANNEL, "owner_id": AUTHOR["id"],
              "name": "don't buy dota-2", "type": 11, "thread_metadata": {"archived": False}}
    (t,) = normalize(env("THREAD_CREATE", thread), ACCOUNT)
    assert (t.chat_id, t.chat.type, t.chat.name) == ("41771983423143937", ChatType.THREAD, "don't buy dota-2")
    guild = {"id": GUILD, "name": "HQ", "channels": [channel, {"id": "3", "type": 4, "name": "a category"},
                                                     {"id": "4", "type": 2, "name": "voice"}], "threads": [thread]}
    changes = normalize(env("GUILD_CREATE", guild), ACCOUNT)
    assert [(c.chat_id, c.chat.type) for c in changes] == [
        (CHANNEL, ChatType.CHANNEL), ("4", ChatType.CHANNEL), ("41771983423143937", ChatType.THREAD)]


def test_other_events_give_nothing_and_garbage_is_refused() -> None:
    assert normalize(env("TYPING_START", {"channel_id": CHANNEL, "user_id": "1", "timestamp": 1}), ACCOUNT) == []
    for bad in ({"t": "MESSAGE_CREATE"}, {"d": {}}, {"t": "MESSAGE_CREATE", "d": message(id=None)},
                {"t": "MESSAGE_CREATE", "d": message(timestamp="yesterday")},
                {"t": "MESSAGE_REACTION_ADD", "d": {"channel_id": "1", "message_id": "2", "emoji": {}}}):
        with pytest.raises(ValueError):
            normalize(Envelope("discord", "acct", "x", 0, bad), ACCOUNT)
