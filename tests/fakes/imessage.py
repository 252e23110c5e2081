"""The Messages app's side of iMessage: a `chat.db` with the real macOS schema (Sonoma's
tables message, handle, chat, chat_message_join, chat_handle_join, attachment,
message_attachment_join, with their real column names and defaults), written the way
Messages writes it: WAL journal, a row per message with `date` in nanoseconds since
2001-01-01, the text in `attributedBody` (an archived NSAttributedString, typedstream) and
`text` often NULL, tapbacks as rows with `associated_message_type` 2000-2005 (3000-3005 to
take back) pointing at `p:<part>/<guid>`, inline replies with `thread_originator_guid`, edits
and unsends changing the row in place (`date_edited`, `date_retracted`).

`archived(text)` builds the attributedBody blob byte for byte as NSArchiver lays it out
(NSMutableAttributedString -> NSString "+" contents, then the `iI` attribute run and its
NSDictionary with `__kIMMessagePartAttributeName`), with typedstream's integer encoding for
lengths past 127 bytes; `archived_runs` / `with_mentions` write several runs through a small
archiver (shared strings and objects numbered, repeats as references; for one run it writes
exactly the bytes of `archived`), mentions as `__kIMMentionConfirmedMention` runs.
"""

from __future__ import annotations

import sqlite3
import time
import uuid
from pathlib import Path

APPLE_EPOCH = 978_307_200  # 2001-01-01T00:00:00Z in Unix seconds
TAPBACKS = {"❤️": 2000, "👍": 2001, "👎": 2002, "😂": 2003, "‼️": 2004, "❓": 2005}

SCHEMA = """
CREATE TABLE handle (ROWID INTEGER PRIMARY KEY AUTOINCREMENT UNIQUE, id TEXT NOT NULL, country TEXT,
  service TEXT NOT NULL, uncanonicalized_id TEXT, person_centric_id TEXT, UNIQUE (id, service));
CREATE TABLE chat (ROWID INTEGER PRIMARY KEY AUTOINCREMENT, guid TEXT UNIQUE NOT NULL, style INTEGER,
  state INTEGER, account_id TEXT, properties BLOB, chat_identifier TEXT, service_name TEXT, room_name TEXT,
  account_login TEXT, is_archived INTEGER DEFAULT 0, last_addressed_handle TEXT, display_name TEXT,
  group_id TEXT, is_filtered INTEGER DEFAULT 0, successful_query INTEGER, engram_id TEXT,
  server_change_token TEXT, ck_sync_state INTEGER DEFAULT 0, original_group_id TEXT,
  last_read_message_timestamp INTEGER DEFAULT 0, cloudkit_record_id TEXT,
  last_addressed_sim_id TEXT, is_blackholed INTEGER DEFAULT 0, syndication_date INTEGER DEFAULT 0,
  syndication_type INTEGER DEFAULT 0, is_recovered INTEGER DEFAULT 0, is_deleting_incoming_messages INTEGER DEFAULT 0);
CREATE TABLE message (ROWID INTEGER PRIMARY KEY AUTOINCREMENT, guid TEXT UNIQUE NOT NULL, text TEXT,
  replace INTEGER DEFAULT 0, service_center TEXT, handle_id INTEGER DEFAULT 0, subject TEXT, country TEXT,
  attributedBody BLOB, version INTEGER DEFAULT 0, type INTEGER DEFAULT 0, service TEXT, account TEXT,
  account_guid TEXT, error INTEGER DEFAULT 0, date INTEGER, date_read INTEGER, date_delivered INTEGER,
  is_delivered INTEGER DEFAULT 0, is_finished INTEGER DEFAULT 0, is_emote INTEGER DEFAULT 0,
  is_from_me INTEGER DEFAULT 0, is_empty INTEGER DEFAULT 0, is_delayed INTEGER DEFAULT 0,
  is_auto_reply INTEGER DEFAULT 0, is_prepared INTEGER DEFAULT 0, is_read INTEGER DEFAULT 0,
  is_system_message INTEGER DEFAULT 0, is_sent INTEGER DEFAULT 0, has_dd_results INTEGER DEFAULT 0,
  is_service_message INTEGER DEFAULT 0, is_forward INTEGER DEFAULT 0, was_downgraded INTEGER DEFAULT 0,
  is_archive INTEGER DEFAULT 0, cache_has_attachments INTEGER DEFAULT 0, cache_roomnames TEXT,
  was_data_detected INTEGER DEFAULT 0, was_deduplicated INTEGER DEFAULT 0, is_audio_message INTEGER DEFAULT 0,
  is_played INTEGER DEFAULT 0, date_played INTEGER, item_type INTEGER DEFAULT 0, other_handle INTEGER DEFAULT 0,
  group_title TEXT, group_action_type INTEGER DEFAULT 0, share_status INTEGER DEFAULT 0,
  share_direction INTEGER DEFAULT 0, is_expirable INTEGER DEFAULT 0, expire_state INTEGER DEFAULT 0,
  message_action_type INTEGER DEFAULT 0, message_source INTEGER DEFAULT 0,
  associated_message_guid TEXT, associated_message_type INTEGER DEFAULT 0, balloon_bundle_id TEXT,
  payload_data BLOB, expressive_send_style_id TEXT, associated_message_range_location INTEGER DEFAULT 0,
  associated_message_range_length INTEGER DEFAULT 0, time_expressive_send_played INTEGER,
  message_summary_info BLOB, ck_sync_state INTEGER DEFAULT 0, ck_record_id TEXT,
  ck_record_change_tag TEXT, destination_caller_id TEXT, is_corrupt INTEGER DEFAULT 0,
  reply_to_guid TEXT, sort_id INTEGER, is_spam INTEGER DEFAULT 0, has_unseen_mention INTEGER DEFAULT 0,
  thread_originator_guid TEXT, thread_originator_part TEXT, syndication_ranges TEXT,
  synced_syndication_ranges TEXT, was_delivered_quietly INTEGER DEFAULT 0,
  did_notify_recipient INTEGER DEFAULT 0, date_retracted INTEGER DEFAULT 0, date_edited INTEGER DEFAULT 0,
  date_recovered INTEGER DEFAULT 0, is_stewie INTEGER DEFAULT 0, part_count INTEGER DEFAULT 0,
  associated_message_emoji TEXT);
CREATE TABLE attachment (ROWID INTEGER PRIMARY KEY AUTOINCREMENT, guid TEXT UNIQUE NOT NULL, created_date INTEGER DEFAULT 0,
  start_date INTEGER DEFAULT 0, filename TEXT, uti TEXT, mime_type TEXT, transfer_state INTEGER DEFAULT 0,
  is_outgoing INTEGER DEFAULT 0, user_info BLOB, transfer_name TEXT, total_bytes INTEGER DEFAULT 0,
  is_sticker INTEGER DEFAULT 0, sticker_user_info BLOB, attribution_info BLOB, hide_attachment INTEGER DEFAULT 0,
  ck_sync_state INTEGER DEFAULT 0, ck_server_change_token_blob BLOB, ck_record_id TEXT, original_guid TEXT UNIQUE NOT NULL,
  is_commsafety_sensitive INTEGER DEFAULT 0);
CREATE TABLE chat_message_join (chat_id INTEGER REFERENCES chat (ROWID) ON DELETE CASCADE,
  message_id INTEGER REFERENCES message (ROWID) ON DELETE CASCADE, message_date INTEGER DEFAULT 0,
  PRIMARY KEY (chat_id, message_id));
CREATE TABLE chat_handle_join (chat_id INTEGER REFERENCES chat (ROWID) ON DELETE CASCADE,
  handle_id INTEGER REFERENCES handle (ROWID) ON DELETE CASCADE, UNIQUE(chat_id, handle_id));
CREATE TABLE message_attachment_join (message_id INTEGER REFERENCES message (ROWID) ON DELETE CASCADE,
  attachment_id INTEGER REFERENCES attachment (ROWID) ON DELETE CASCADE, UNIQUE(message_id, attachment_id));
CREATE INDEX chat_message_join_idx_message_id_only ON chat_message_join(message_id);
CREATE INDEX message_idx_handle ON message(handle_id, date);
"""


def _int(value: int) -> bytes:
    """typedstream's integer: one byte, or 0x81 + 2 bytes / 0x82 + 4 bytes little-endian."""
    if -0x6E <= value < 0x80:  # bytes 0x80..0x91 are tags
        return bytes([value & 0xFF])
    if -0x8000 <= value < 0x8000:
        return b"\x81" + value.to_bytes(2, "little", signed=True)
    return b"\x82" + value.to_bytes(4, "little", signed=True)


def archived(text: str) -> bytes:
    """`text` as Messages archives it in attributedBody."""
    data = text.encode("utf-8")
    utf16 = len(text.encode("utf-16-le")) // 2
    return (
        b"\x04\x0bstreamtyped\x81\xe8\x03"
        b"\x84\x01@\x84\x84\x84\x19NSMutableAttributedString\x00\x84\x84\x12NSAttributedString\x00"
        b"\x84\x84\x08NSObject\x00\x85"
        b"\x92\x84\x84\x84\x0fNSMutableString\x01\x84\x84\x08NSString\x01\x95"
        b"\x84\x01+" + _int(len(data)) + data + b"\x86"
        b"\x84\x02iI\x01" + _int(utf16) +
        b"\x92\x84\x84\x84\x0cNSDictionary\x00\x95\x84\x01i\x01\x92\x84\x98\x98\x1d__kIMMessagePartAttributeName\x86"
        b"\x92\x84\x84\x84\x08NSNumber\x00\x84\x84\x07NSValue\x00\x95\x84\x01*\x84\x9b\x9b\x00\x86\x86\x86"
    )


class _Archiver:
    """NSArchiver's typedstream writer for the few classes Messages puts in attributedBody:
    shared strings (type encodings, class names) and objects (objects, classes, C strings)
    each numbered in order of first appearance, later appearances written as references."""

    def __init__(self) -> None:
        self.out = bytearray(b"\x04\x0bstreamtyped\x81\xe8\x03")
        self.strings: dict[bytes, int] = {}
        self.objects: dict[object, int] = {}
        self.count = 0

    def _ref(self, number: int) -> None:
        self.out += _int(number - 110)

    def _number(self, key: object) -> bool:
        """True if `key` was written before (a reference went out); else it gets the next number."""
        if key in self.objects:
            self._ref(self.objects[key])
            return True
        self.objects[key] = self.count
        self.count += 1
        return False

    def shared(self, value: bytes) -> None:
        if value in self.strings:
            self._ref(self.strings[value])
            return
        self.strings[value] = len(self.strings)
        self.out += b"\x84" + _int(len(value)) + value

    def klass(self, chain: list[tuple[str, int]]) -> None:
        if not chain:
            self.out += b"\x85"
            return
        name, version = chain[0]
        if ("class", name) in self.objects:
            self._ref(self.objects[("class", name)])
            return
        self.out += b"\x84"
        self._number(("class", name))
        self.shared(name.encode())
        self.out += _int(version)
        self.klass(chain[1:])

    def obj(self, key: object, chain: list[tuple[str, int]], contents: "list[tuple[str, object]]") -> None:
        self.shared(b"@")
        self.out += b"\x84" if key not in self.objects else b""
        if self._number(key):
            return
        self.klass(chain)
        for encoding, value in contents:
            self.group(encoding, value)
        self.out += b"\x86"

    def group(self, encoding: str, value: object) -> None:
        if encoding == "@":
            value()  # type: ignore[operator]  # writes its own "@" and object
            return
        self.shared(encoding.encode())
        for kind, item in zip(encoding, value if isinstance(value, tuple) else (value,)):
            if kind == "+":
                data = item.encode() if isinstance(item, str) else item  # type: ignore[union-attr]
                self.out += _int(len(data)) + data
            elif kind == "*":
                self.out += b"\x84" if ("cstring", item) not in self.objects else b""
                if not self._number(("cstring", item)):
                    self.shared(item)  # type: ignore[arg-type]
            else:
                self.out += _int(int(item))  # type: ignore[call-overload]


OBJECT, STRING = [("NSObject", 0)], [("NSString", 1), ("NSObject", 0)]


def archived_runs(text: str, runs: list[tuple[int, dict[str, object]]]) -> bytes:
    """`text` with attribute runs [(utf-16 length, {key: int | str})], archived as Messages does;
    equal dictionaries are one object, written once and referenced after."""
    a = _Archiver()

    def string(key: object, value: str, chain: list[tuple[str, int]] = STRING) -> "callable":
        return lambda: a.obj(key, chain, [("+", value)])

    def number(value: int) -> "callable":
        return lambda: a.obj(("number", value), [("NSNumber", 0), ("NSValue", 0)] + OBJECT, [("*", b"i"), ("i", value)])

    def dictionary(attributes: dict[str, object]) -> "callable":
        def write() -> None:
            pairs: list[tuple[str, object]] = [("i", len(attributes))]
            for k, v in attributes.items():
                pairs += [("@", string(("key", k), k)), ("@", number(v) if isinstance(v, int) else string(("value", v), str(v)))]
            a.obj(("dict", tuple(sorted(attributes.items()))), [("NSDictionary", 0)] + OBJECT, pairs)
        return write

    indexes: dict[tuple, int] = {}
    contents: list[tuple[str, object]] = [("@", string("text", text, [("NSMutableString", 1)] + STRING))]
    for length, attributes in runs:
        key = tuple(sorted(attributes.items()))
        new = key not in indexes
        indexes.setdefault(key, len(indexes) + 1)
        contents.append(("iI", (indexes[key], length)))
        if new:
            contents.append(("@", dictionary(attributes)))
    a.obj("root", [("NSMutableAttributedString", 0), ("NSAttributedString", 0)] + OBJECT, contents)
    return bytes(a.out)


def with_mentions(text: str, mentioned: dict[str, str]) -> bytes:
    """`text` where each key of `mentioned` (e.g. "@Alice") is a confirmed mention of its handle."""
    runs: list[tuple[int, dict[str, object]]] = []
    rest = text
    plain: dict[str, object] = {"__kIMMessagePartAttributeName": 0}
    while rest:
        hits = [(rest.find(name), name) for name in mentioned if name in rest]
        if not hits:
            runs.append((len(rest.encode("utf-16-le")) // 2, plain))
            break
        at, name = min(hits)
        if at:
            runs.append((len(rest[:at].encode("utf-16-le")) // 2, plain))
        runs.append((len(name.encode("utf-16-le")) // 2, {**plain, "__kIMMentionConfirmedMention": mentioned[name]}))
        rest = rest[at + len(name):]
    return archived_runs(text, runs)


def apple_ns(unix_seconds: float | None = None) -> int:
    return int(((unix_seconds if unix_seconds is not None else time.time()) - APPLE_EPOCH) * 1_000_000_000)


class ChatDb:
    """A chat.db being written by "Messages": keeps its own write connection (WAL), like the app."""

    def __init__(self, path: Path, me: str = "me@icloud.com") -> None:
        self.path, self.me = path, me
        fresh = not path.exists()
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        if fresh:
            self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def handle(self, address: str, service: str = "iMessage") -> int:
        self.db.execute("INSERT OR IGNORE INTO handle (id, service, country, uncanonicalized_id) VALUES (?, ?, 'us', ?)",
                        (address, service, address))
        return int(self.db.execute("SELECT ROWID FROM handle WHERE id = ? AND service = ?", (address, service)).fetchone()[0])

    def chat(self, members: list[str], name: str | None = None, service: str = "iMessage") -> int:
        """A direct chat (style 45, guid `iMessage;-;<address>`) or a group (style 43, `iMessage;+;chat…`)."""
        group = len(members) > 1
        identifier = f"chat{uuid.uuid4().int % 10**18}" if group else members[0]
        guid = f"{service};{'+' if group else '-'};{identifier}"
        self.db.execute(
            "INSERT INTO chat (guid, style, state, account_id, chat_identifier, service_name, account_login, display_name, group_id) "
            "VALUES (?, ?, 3, ?, ?, ?, ?, ?, ?)",
            (guid, 43 if group else 45, str(uuid.uuid4()).upper(), identifier, service, f"E:{self.me}", name or "",
             str(uuid.uuid4()).upper()))
        chat_id = int(self.db.execute("SELECT ROWID FROM chat WHERE guid = ?", (guid,)).fetchone()[0])
        for address in members:
            self.db.execute("INSERT OR IGNORE INTO chat_handle_join VALUES (?, ?)", (chat_id, self.handle(address)))
        return chat_id

    def chat_guid(self, chat_id: int) -> str:
        return str(self.db.execute("SELECT guid FROM chat WHERE ROWID = ?", (chat_id,)).fetchone()[0])

    def message(self, chat_id: int, sender: str | None, text: str | None, *, in_text_column: bool = False,
                reply_to: str | None = None, attachment: dict | None = None, tapback: tuple[str, int] | None = None,
                item_type: int = 0, group_title: str | None = None, at: float | None = None,
                mentions: dict[str, str] | None = None) -> str:
        """Insert one message as Messages does (one transaction); returns its guid. `sender` None: from me.
        `tapback`: (target guid, associated_message_type)."""
        guid = str(uuid.uuid4()).upper()
        date = apple_ns(at)
        handle_id = self.handle(sender) if sender else 0
        body = (with_mentions(text, mentions) if mentions else archived(text)) if text is not None else None
        associated = (f"p:0/{tapback[0]}", tapback[1]) if tapback else (None, 0)
        with self.db:
            self.db.execute("BEGIN")
            cur = self.db.execute(
                "INSERT INTO message (guid, text, handle_id, attributedBody, service, account, account_guid, date, "
                "date_read, date_delivered, is_delivered, is_finished, is_from_me, is_sent, is_read, "
                "cache_has_attachments, item_type, group_title, associated_message_guid, associated_message_type, "
                "destination_caller_id, thread_originator_guid, thread_originator_part, reply_to_guid, part_count) "
                "VALUES (?, ?, ?, ?, 'iMessage', ?, ?, ?, 0, ?, 1, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1)",
                (guid, text if in_text_column else None, handle_id, body, f"E:{self.me}", str(uuid.uuid4()).upper(),
                 date, date if sender else 0, 0 if sender else 1, 0 if sender else 1, 1 if sender else 0,
                 1 if attachment else 0, item_type, group_title, associated[0], associated[1], self.me,
                 reply_to, "0:0:1" if reply_to else None, reply_to))
            rowid = cur.lastrowid
            self.db.execute("INSERT INTO chat_message_join VALUES (?, ?, ?)", (chat_id, rowid, date))
            if attachment:
                a_guid = str(uuid.uuid4()).upper()
                self.db.execute(
                    "INSERT INTO attachment (guid, original_guid, created_date, filename, uti, mime_type, transfer_state, "
                    "transfer_name, total_bytes) VALUES (?, ?, ?, ?, ?, ?, 5, ?, ?)",
                    (a_guid, a_guid, date, f"~/Library/Messages/Attachments/ab/11/{a_guid}/{attachment['name']}",
                     attachment.get("uti", "public.jpeg"), attachment.get("mime_type", "image/jpeg"),
                     attachment["name"], attachment.get("size", 1024)))
                a_id = self.db.execute("SELECT ROWID FROM attachment WHERE guid = ?", (a_guid,)).fetchone()[0]
                self.db.execute("INSERT INTO message_attachment_join VALUES (?, ?)", (rowid, a_id))
        return guid

    def edit(self, guid: str, text: str) -> None:
        """An edit (macOS 13+): the row's body becomes the new text, `date_edited` is set
        (the history goes to message_summary_info, which the hub does not read)."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute("UPDATE message SET attributedBody = ?, text = NULL, date_edited = ? WHERE guid = ?",
                            (archived(text), apple_ns(), guid))

    def unsend(self, guid: str, *, retracted_column: bool = False) -> None:
        """An unsend: the body removed and `date_edited` set, or `date_retracted` where set."""
        column = "date_retracted" if retracted_column else "date_edited"
        with self.db:
            self.db.execute("BEGIN")
            self.db.execute(f"UPDATE message SET attributedBody = NULL, text = NULL, {column} = ? WHERE guid = ?",
                            (apple_ns(), guid))

    def react(self, chat_id: int, sender: str | None, target: str, emoji: str, *, remove: bool = False) -> str:
        kind = TAPBACKS[emoji] + (1000 if remove else 0)
        verb = "Removed" if remove else "Reacted"
        return self.message(chat_id, sender, f"{verb} {emoji} to “…”", in_text_column=True, tapback=(target, kind))
