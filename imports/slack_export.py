"""A Slack workspace export (the zip from Settings > Import/Export Data) as import records.

The zip holds `users.json`, `channels.json` (public), `groups.json` (private channels),
`dms.json` and `mpims.json`, and one folder per conversation (channels, groups and mpims by
`name`, DMs by `id`) with one `YYYY-MM-DD.json` per day: a list of messages shaped like
`conversations.history` (`ts`, `user`, `text`, `thread_ts`, `subtype`, `edited`, `files`,
`reactions`, `user_profile`). Some tools zip the export folder itself, so one top folder is
allowed.

Each message goes through the live Slack connector's own `normalize` (a backfill record), so
an imported message is stored exactly as the connector would store it: native id `ts`, chat
id the channel id, the same thread and reply ids, `edited.ts` as `edited_at`, system subtypes
(joins, topics) with content type "system". The account is the workspace (platform `slack`,
account id the team id from `users.json`), the same account a connected Slack workspace has,
so history joins it. Whose messages are the person's own: `me` (a user id, or a name,
real name or display name from `users.json`); without it none are.
"""

from __future__ import annotations

import re
import zipfile
from collections import Counter
from typing import Any

import orjson

from connectors.base import Account, Envelope, Reaction
from connectors.slack.inbound import HISTORY, normalize
from imports.records import BadInput, ImportRecord

PLATFORM = "slack"
MAX_UNCOMPRESSED = 2 << 30  # a zip that inflates past this is refused before anything is read
MAX_MEMBERS = 200_000
_DAY = re.compile(r"^(?P<folder>[^/]+)/(?P<day>\d{4}-\d{2}-\d{2})\.json$")
_LISTS = {"channels.json": "channel", "groups.json": "group", "dms.json": "im", "mpims.json": "mpim"}


def root_of(archive: zipfile.ZipFile) -> str | None:
    """The folder inside the zip that holds channels.json ("" at the top), None if there is none."""
    for name in archive.namelist():
        if name == "channels.json":
            return ""
        parts = name.split("/")
        if len(parts) == 2 and parts[1] == "channels.json":
            return parts[0] + "/"
    return None


def read_member(archive: zipfile.ZipFile, name: str) -> bytes:
    """One file of the zip; a damaged or encrypted member is the input's fault (BadInput)."""
    try:
        return archive.read(name)
    except Exception as err:  # noqa: BLE001 - zipfile raises BadZipFile, zlib.error, EOFError, NotImplementedError…
        raise BadInput(0, f"{name}: cannot be read from the zip ({type(err).__name__}: {err})") from None


def _json(archive: zipfile.ZipFile, name: str) -> Any:
    try:
        return orjson.loads(read_member(archive, name))
    except orjson.JSONDecodeError as err:
        raise BadInput(0, f"{name}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})") from None


def _check_size(archive: zipfile.ZipFile) -> None:
    infos = archive.infolist()
    if len(infos) > MAX_MEMBERS:
        raise BadInput(0, f"the zip has {len(infos)} entries (at most {MAX_MEMBERS})")
    if sum(i.file_size for i in infos) > MAX_UNCOMPRESSED:
        raise BadInput(0, f"the zip inflates past {MAX_UNCOMPRESSED >> 20} MB")


def _users(archive: zipfile.ZipFile, root: str) -> tuple[dict[str, dict[str, Any]], str | None]:
    name = root + "users.json"
    if name not in archive.namelist():
        return {}, None
    users = _json(archive, name)
    if not isinstance(users, list):
        raise BadInput(0, "users.json: must be a list of users")
    by_id = {}
    teams: Counter[str] = Counter()
    for index, user in enumerate(users):
        if not isinstance(user, dict) or not isinstance(user.get("id"), str):
            raise BadInput(0, f"users.json[{index}]: a user needs an `id`")
        by_id[user["id"]] = user
        if isinstance(user.get("team_id"), str):
            teams[user["team_id"]] += 1
    return by_id, (teams.most_common(1)[0][0] if teams else None)


def _display(user: dict[str, Any]) -> str | None:
    profile = user.get("profile") if isinstance(user.get("profile"), dict) else {}
    name = profile.get("display_name") or profile.get("real_name") or user.get("real_name") or user.get("name")
    return str(name) if name else None


def _conversations(archive: zipfile.ZipFile, root: str, users: dict[str, dict[str, Any]]) -> dict[str, tuple[str, str, str]]:
    """folder -> (channel id, channel type as Slack says it, name)."""
    names = set(archive.namelist())
    found: dict[str, tuple[str, str, str]] = {}
    for file, kind in _LISTS.items():
        if root + file not in names:
            continue
        listed = _json(archive, root + file)
        if not isinstance(listed, list):
            raise BadInput(0, f"{file}: must be a list")
        for index, conv in enumerate(listed):
            if not isinstance(conv, dict) or not isinstance(conv.get("id"), str) or not 0 < len(conv["id"]) <= 100:
                raise BadInput(0, f"{file}[{index}]: a conversation needs an `id`")
            if kind == "im":
                members = [m for m in conv.get("members") or [] if isinstance(m, str)] if isinstance(conv.get("members"), list) else []
                label = ", ".join(_display(users.get(m, {})) or m for m in members) or conv["id"]
                found[conv["id"]] = (conv["id"], kind, label)
            else:
                folder = conv.get("name") if isinstance(conv.get("name"), str) else conv["id"]
                found[folder] = (conv["id"], kind, str(conv.get("name") or conv["id"]))
    return found


def _me(me: str | None, users: dict[str, dict[str, Any]]) -> frozenset[str]:
    if not me:
        return frozenset()
    if me in users:
        return frozenset({me})
    hits = {uid for uid, user in users.items()
            if me in (user.get("name"), user.get("real_name"), _display(user),
                      (user.get("profile") or {}).get("real_name") if isinstance(user.get("profile"), dict) else None)}
    if len(hits) == 1:
        return frozenset(hits)
    if hits:
        raise BadInput(0, f"me: {me!r} names several users ({', '.join(sorted(hits))}); pass the user id")
    if re.fullmatch(r"[UW][A-Z0-9]{2,}", me):
        return frozenset({me})  # not in users.json (a guest from another workspace): trust the id
    raise BadInput(0, f"me: {me!r} is not a user id or name in users.json")


def team_name(filename: str | None) -> str | None:
    """"Acme Slack export Jan 1 2023 - Feb 1 2023.zip" -> "Acme"."""
    if not filename:
        return None
    match = re.match(r"^(?P<team>.+?) Slack export\b", filename.rsplit("/", 1)[-1], re.I)
    return match["team"].strip() if match else None


def parse(archive: zipfile.ZipFile, *, me: str | None = None, filename: str | None = None) -> tuple[list[ImportRecord], dict[str, int]]:
    """Records in folder and day order and the counts of entries not imported, by reason."""
    _check_size(archive)
    root = root_of(archive)
    if root is None:
        raise BadInput(0, "not a Slack export: channels.json is missing")
    users, team = _users(archive, root)
    conversations = _conversations(archive, root, users)
    mine = _me(me, users)
    days: list[tuple[str, str, str]] = []  # (folder, day, member name)
    for name in archive.namelist():
        if not name.startswith(root):
            continue
        match = _DAY.match(name[len(root):])
        if match:
            days.append((match["folder"], match["day"], name))
    days.sort()
    ignored: Counter[str] = Counter()
    raw_messages: list[tuple[str, int, dict[str, Any], tuple[str, str, str]]] = []
    for folder, _day, name in days:
        conv = conversations.get(folder)
        if conv is None:
            ignored[f"day files in folders no conversation list names ({folder})"] += 1
            continue
        listed = _json(archive, name)
        if not isinstance(listed, list):
            raise BadInput(0, f"{name[len(root):]}: must be a list of messages")
        for index, msg in enumerate(listed, start=1):
            raw_messages.append((name[len(root):], index, msg, conv))
        if not team:
            team = next((m.get("team") for m in listed if isinstance(m, dict) and isinstance(m.get("team"), str)), None)
    team = team or "export"
    account = Account(id="import", user_id="", platform=PLATFORM, external_id=team, name=team,
                      credentials={"bot_user_id": next(iter(mine))} if mine else {})
    label = team_name(filename) or team
    records = []
    for where, index, msg, (channel, kind, chat_name) in raw_messages:
        entry = f"{where}, message {index}"
        if not isinstance(msg, dict):
            raise BadInput(0, f"{entry}: must be an object")
        payload = {"type": HISTORY, "team_id": team, "channel": channel, "channel_type": kind,
                   "channel_name": chat_name, "message": msg}
        try:
            changes = normalize(Envelope(PLATFORM, "import", f"{channel}:{msg.get('ts')}", 0, payload, "backfill"), account)
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            raise BadInput(0, f"{entry}: {err}") from None
        for change in changes:
            m = change.message
            if m is None:
                continue
            user = users.get(m.sender_id or "", {})
            records.append(ImportRecord(
                line=index, platform=PLATFORM, account_id=team, account_name=label,
                chat_id=m.chat_id, chat_name=m.chat_name, chat_type=m.chat_type, native_id=change.native_id,
                sender_id=m.sender_id, sender_name=m.sender_name or _display(user), sent_at=m.sent_at,
                text=m.text, is_self=m.is_self or (m.sender_id in mine), reply_to=m.reply_to_id,
                thread_id=m.thread_id, attachments=tuple(m.attachments), raw={"slack": msg, "file": where},
                edited_at=m.edited_at, content_type=m.content_type, reactions=_reactions(msg, entry),
            ))
    return records, dict(ignored)


def _reactions(msg: dict[str, Any], entry: str) -> tuple[Reaction, ...]:
    listed = msg.get("reactions") or []
    if not isinstance(listed, list):
        raise BadInput(0, f"{entry}: reactions: must be a list")
    out = []
    for item in listed:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise BadInput(0, f"{entry}: reactions: each needs a `name`")
        for user in item.get("users") if isinstance(item.get("users"), list) else []:
            if isinstance(user, str):
                out.append(Reaction(item["name"], user))
    return tuple(out)
