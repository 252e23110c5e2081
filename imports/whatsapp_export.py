"""WhatsApp's "Export chat" text file as import records.

Both layouts WhatsApp writes: iOS `[31/01/2023, 21:15:02] Name: text` and Android
`31/01/23, 21:15 - Name: text`, 12- or 24-hour clocks, day-first or month-first dates (decided
for the whole file from the lines where one field is above 12; day-first when nothing tells),
messages running over several lines, media lines (`<attached: …>`, `… (file attached)`,
`<Media omitted>`, `image omitted`) and the system lines (encryption notice, joins, subject
changes) that have no sender or, on iOS, start their text with U+200E. Those bidi marks
(U+200E/F, U+202A-U+202E, U+2066-U+2069) are taken out everywhere.

What the file does not say, the caller does: whose phone it came from (`me`, their name as it
appears in the chat; or `guess_me` to take the most frequent sender, only when the person asks
for that), the chat's name (the export's file name "WhatsApp Chat with X.txt" when given) and
the phone's time zone (`tz`, an IANA name; UTC otherwise). The account is one per person:
platform `whatsapp`, account id `export`. A message's native id is a hash of (its local time as
written, sender, text, how many identical ones came before it in the file), so re-importing the
same file or a later export of the same chat stores nothing twice.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
from collections import Counter
from datetime import datetime, timezone
from typing import Iterator
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.base import Attachment, ChatType
from imports.records import BadInput, ImportRecord

PLATFORM = "whatsapp"
ACCOUNT_ID = "export"
MAX_LINES = 2_000_000

_MARKS = re.compile("[\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
_DATE = r"(?P<date>\d{1,4}[/.\-]\d{1,2}[/.\-]\d{1,4})"
_TIME = r"(?P<time>\d{1,2}[:.]\d{2}(?:[:.]\d{2})?(?:\s?(?P<ampm>[AaPp]\.?\s?[Mm]\.?))?)"
IOS = re.compile(r"^\[" + _DATE + r",?\s" + _TIME + r"\]\s(?P<rest>.*)$")
ANDROID = re.compile(r"^" + _DATE + r",?\s" + _TIME + r"\s[-–]\s(?P<rest>.*)$")
_SENDER = re.compile(r"^(?P<sender>[^:\n]{1,200}?):\s(?P<text>.*)$", re.S)
_ATTACHED = re.compile(r"^<attached:\s*(?P<name>[^>]+)>\s*$")
_FILE_ATTACHED = re.compile(r"^(?P<name>\S.*?\.\w{1,6})\s\(file attached\)(?:\n(?P<caption>.*))?$", re.S)
_OMITTED = {
    "<media omitted>": None, "image omitted": "image/*", "video omitted": "video/*", "audio omitted": "audio/*",
    "sticker omitted": "image/webp", "gif omitted": "image/gif", "document omitted": None,
}
_EDITED = re.compile(r"\s*<This message was edited>$")
# Android writes system lines without a sender, but a quoted subject or description can hold
# ": " and look like one; a sender never contains these phrases
_SYSTEM_PHRASE = re.compile(r" (?:changed the (?:subject|group description)|created group|added|removed|left|joined using) ")
_DELETED = {"this message was deleted", "you deleted this message"}


def clean(line: str) -> str:
    """A line without bidi marks; WhatsApp's narrow no-break space before AM/PM made plain."""
    return _MARKS.sub("", line).replace("\u202f", " ").replace("\u00a0", " ")


def header(line: str) -> re.Match[str] | None:
    """The timestamp header of a message line, iOS or Android layout."""
    stripped = clean(line)
    return IOS.match(stripped) or ANDROID.match(stripped)


def looks_like(text: str) -> bool:
    """Detection: most of the first non-empty lines that start a message carry a WhatsApp header."""
    lines = [line for line in text.splitlines()[:50] if line.strip()][:20]
    hits = sum(1 for line in lines if header(line))
    return bool(lines) and header(lines[0]) is not None and hits * 2 >= len(lines)


class _Raw:
    __slots__ = ("line", "date", "time", "ampm", "rest", "marked")

    def __init__(self, line: int, match: re.Match[str], marked: bool) -> None:
        self.line, self.date, self.time = line, match["date"], match["time"]
        self.ampm, self.rest, self.marked = match["ampm"], match["rest"], marked


def _split(text: str) -> Iterator[_Raw]:
    """Message starts with their continuation lines folded in; BadInput for text before the first."""
    current: _Raw | None = None
    for number, line in enumerate(text.split("\n"), start=1):
        if number > MAX_LINES:
            raise BadInput(number, f"too many lines (at most {MAX_LINES} per import)")
        line = line.rstrip("\r")
        match = header(line)
        if match is not None:
            if current is not None:
                yield current
            after = line.split("] ", 1)[-1] if match.re is IOS else line.split(" - ", 1)[-1]
            _, colon, said = after.partition(": ")
            current = _Raw(number, match, marked=bool(colon) and said.startswith("\u200e"))
        elif current is not None:
            current.rest += "\n" + clean(line)
        elif line.strip():
            raise BadInput(number, "not a WhatsApp message line (expected `[dd/mm/yyyy, hh:mm:ss] Name: text` "
                                   "or `dd/mm/yy, hh:mm - Name: text`)")
    if current is not None:
        yield current


def _fields(date: str) -> tuple[int, int, int]:
    parts = [int(p) for p in re.split(r"[/.\-]", date)]
    return parts[0], parts[1], parts[2]


def _day_first(raws: list[_Raw]) -> bool:
    """Day-first unless some line's second field is above 12 (and none's first field is)."""
    dated = [(r, _fields(r.date)) for r in raws]
    dated = [(r, f) for r, f in dated if f[0] <= 31]  # year-first dates say nothing about the order
    first_big = next((r for r, f in dated if f[0] > 12), None)
    second_big = next((r for r, f in dated if f[1] > 12), None)
    if first_big and second_big:
        raise BadInput(second_big.line, f"date {second_big.date!r} contradicts {first_big.date!r} "
                                        f"(line {first_big.line}): one is day-first, the other month-first")
    return second_big is None


def _local(raw: _Raw, day_first: bool) -> datetime:
    a, b, c = _fields(raw.date)
    if a > 31:  # year first (2023-01-31), as some locales write it
        year, month, day = a, b, c
    else:
        day, month, year = (a, b, c) if day_first else (b, a, c)
    if year < 100:
        year += 2000
    numbers = [int(p) for p in re.split(r"[:.]", re.sub(r"\s?[AaPp]\.?\s?[Mm]\.?$", "", raw.time))]
    hour, minute, second = numbers[0], numbers[1], numbers[2] if len(numbers) > 2 else 0
    if raw.ampm:
        if not 1 <= hour <= 12:
            raise BadInput(raw.line, f"hour {hour} with {raw.ampm.strip()}")
        hour = hour % 12 + (12 if raw.ampm.lower().startswith("p") else 0)
    try:
        return datetime(year, month, day, hour, minute, second)
    except ValueError as err:
        raise BadInput(raw.line, f"not a date and time: {raw.date} {raw.time} ({err})") from None


def _media(text: str) -> tuple[str, list[Attachment]] | None:
    """(caption, attachments) for a media line, None for text."""
    if match := _ATTACHED.match(text):
        name = match["name"].strip()
        return "", [Attachment(name=name, content_type=mimetypes.guess_type(name)[0])]
    if match := _FILE_ATTACHED.match(text):
        name = match["name"].strip()
        return (match["caption"] or "").strip(), [Attachment(name=name, content_type=mimetypes.guess_type(name)[0])]
    lowered = text.strip().lower()
    if lowered in _OMITTED:
        return "", [Attachment(name=None, content_type=_OMITTED[lowered])]
    return None


def _native_id(local: datetime, sender: str, text: str, seen: Counter[tuple[str, str, str]]) -> str:
    key = (local.isoformat(), sender, text)
    occurrence = seen[key]
    seen[key] += 1
    digest = hashlib.sha256("\x00".join((*key, str(occurrence))).encode()).hexdigest()
    return "wa-" + digest[:32]


def parse(
    text: str, *, me: str | None = None, guess_me: bool = False, chat: str | None = None, tz: str | None = None
) -> tuple[list[ImportRecord], dict[str, int]]:
    """Records in file order and the counts of lines not imported, by reason."""
    try:
        zone = ZoneInfo(tz) if tz else timezone.utc
    except (ZoneInfoNotFoundError, ValueError):
        raise BadInput(0, f"tz: unknown time zone {tz!r} (an IANA name such as Europe/Berlin)") from None
    raws = list(_split(text))
    if not raws:
        raise BadInput(0, "no WhatsApp message lines in the file")
    day_first = _day_first(raws)
    ignored: Counter[str] = Counter()
    parsed: list[tuple[_Raw, datetime, str, str, bool]] = []  # raw, local time, sender, text, edited
    for raw in raws:
        local = _local(raw, day_first)
        said = _SENDER.match(raw.rest)
        if said is None or _SYSTEM_PHRASE.search(said["sender"] + " "):
            ignored["system lines (encryption notice, joins, subject changes)"] += 1
            continue
        body = said["text"].rstrip()  # the blank line that ends the file is not part of the last message
        if body.strip().rstrip(".").lower() in _DELETED:
            ignored["deleted messages"] += 1
            continue
        if raw.marked and _media(body) is None:
            ignored["system lines (encryption notice, joins, subject changes)"] += 1
            continue
        edited = bool(_EDITED.search(body))
        parsed.append((raw, local, said["sender"].strip(), _EDITED.sub("", body), edited))
    senders = Counter(sender for _, _, sender, _, _ in parsed)
    if not senders:
        raise BadInput(0, "the file has only system lines, no messages")
    if me is None:
        if not guess_me:
            names = ", ".join(name for name, _ in senders.most_common(10))
            raise BadInput(0, f"a WhatsApp export does not say whose phone it came from: pass me=<your name as it "
                              f"appears in the chat> (senders: {names}), or guessMe to take the most frequent sender")
        me = senders.most_common(1)[0][0]
    elif me not in senders:
        names = ", ".join(name for name, _ in senders.most_common(10))
        raise BadInput(0, f"me: {me!r} sent nothing in this chat (senders: {names})")
    others = sorted(name for name in senders if name != me)
    chat_name = chat or (others[0] if len(others) == 1 else ", ".join(others[:5]) or me)
    chat_type = ChatType.GROUP if len(others) > 1 else ChatType.DM
    seen: Counter[tuple[str, str, str]] = Counter()
    records = []
    for raw, local, sender, body, edited in parsed:
        media = _media(body)
        caption, attachments = media if media else (body, [])
        sent_at = int(local.replace(tzinfo=zone).timestamp() * 1000)
        records.append(ImportRecord(
            line=raw.line, platform=PLATFORM, account_id=ACCOUNT_ID, account_name=f"WhatsApp ({me})",
            chat_id=f"export:{chat_name}"[:200], chat_name=chat_name, chat_type=chat_type,
            native_id=_native_id(local, sender, body, seen), sender_id=sender[:200], sender_name=sender,
            sent_at=sent_at, text=caption, is_self=sender == me, attachments=tuple(attachments),
            raw={"whatsapp": {"line": raw.line, "time": f"{raw.date} {raw.time}", "edited": edited}},
            edited_at=sent_at if edited else None,  # the export says "edited", not when: the sending time stands in
            content_type="file" if attachments and not caption else "text",
        ))
    return records, dict(ignored)


def chat_from_filename(name: str | None) -> str | None:
    """"WhatsApp Chat with Alice.txt" / "WhatsApp Chat - Family.zip" -> the chat's name."""
    if not name:
        return None
    match = re.match(r"^WhatsApp Chat (?:with|-)\s*(?P<chat>.+?)(?:\s\(\d+\))?\.(?:txt|zip)$", name.rsplit("/", 1)[-1], re.I)
    return match["chat"].strip() if match else None
