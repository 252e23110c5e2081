"""Date expressions in English and Chinese, resolved against the message's own send time.

Why our own: dateparser is not shipped, and what insights need is narrow and must be
deterministic: "by Thursday" in a message sent on Monday is that week's Thursday, whatever day
the insight is computed on. Returns the end of the named day (23:59:59.999 UTC) in ms, or a
precise time when one is given with it ("明天上午十点前", "tomorrow 9am").
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone

DAY_MS = 86_400_000
EN_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
ZH_DAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "末": 5}
ZH_NUM = {"零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9, "十": 10}
MONTHS = {m: i + 1 for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])}

_EN_WEEKDAY = re.compile(
    r"\b(?:(next|this|on|by|before|until|till|due)\s+)?(mon|tue|wed|thu|fri|sat|sun)[a-z]*(?:day)?\b", re.I
)
_EN_REL = re.compile(
    r"\b(today|tonight|this (?:morning|afternoon|evening)|eod|end of (?:the )?day|cob|"
    r"day after tomorrow|tomorrow|tmrw|tmr|end of (?:the )?week|eow|next week)\b", re.I
)
_EN_IN = re.compile(r"\bin (\d+|a|one|two|three) (day|days|week|weeks)\b", re.I)
_EN_MONTH_DAY = re.compile(r"\b(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+(\d{1,2})(?:st|nd|rd|th)?\b", re.I)
_EN_DAY_MONTH = re.compile(r"\b(\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b", re.I)
_SLASH = re.compile(r"(?<![\d/])(\d{1,2})/(\d{1,2})(?![\d/])")
_ISO = re.compile(r"\b(20\d\d)-(\d{2})-(\d{2})\b")
_ZH_REL = re.compile(r"(今天|今日|今晚|今早|今天下班|下班前|明天|明早|明晚|明日|后天|大后天|本周末|这周末|周末|下周|下星期)")
_ZH_WEEKDAY = re.compile(r"(下下|下|这|本|上)?(?:个)?(?:周|星期|礼拜)([一二三四五六日天末])")
_ZH_MONTH_DAY = re.compile(r"(\d{1,2}|[一二三四五六七八九十]{1,3})月(\d{1,2}|[一二三四五六七八九十]{1,3})[日号]")
_ZH_DAY = re.compile(r"(?<![月\d])(\d{1,2})[号日](?!子)")
_CLOCK_EN = re.compile(r"\b(\d{1,2})(?::(\d{2}))?\s*(am|pm)\b", re.I)
_CLOCK_ZH = re.compile(r"(上午|早上|中午|下午|晚上)?(\d{1,2}|[一二三四五六七八九十]{1,3})[点時时](半)?")


def _zh_int(text: str) -> int:
    if text.isdigit():
        return int(text)
    if text == "十":
        return 10
    if text.startswith("十"):
        return 10 + ZH_NUM.get(text[1:], 0)
    if "十" in text:
        tens, _, ones = text.partition("十")
        return ZH_NUM.get(tens, 0) * 10 + (ZH_NUM.get(ones, 0) if ones else 0)
    return ZH_NUM.get(text, 0)


def _end_of(day: date) -> int:
    return int(datetime.combine(day, time(23, 59, 59, 999000), tzinfo=timezone.utc).timestamp() * 1000)


def _at(day: date, hour: int, minute: int) -> int:
    return int(datetime.combine(day, time(hour % 24, minute), tzinfo=timezone.utc).timestamp() * 1000)


def _weekday(today: date, target: int, qualifier: str) -> date:
    """"Thursday"/"by Thursday"/"周四": the next one on or after today; "next Thursday"/"下周四":
    the one in next week; "this Thursday"/"这周四": the one in this week."""
    monday = today - timedelta(days=today.weekday())
    if qualifier in ("next", "下"):
        return monday + timedelta(days=7 + target)
    if qualifier == "下下":
        return monday + timedelta(days=14 + target)
    if qualifier in ("this", "这", "本"):
        return monday + timedelta(days=target)
    if qualifier == "上":
        return monday - timedelta(days=7 - target)
    ahead = (target - today.weekday()) % 7
    return today + timedelta(days=ahead)


def _year_for(today: date, month: int, day: int) -> date | None:
    try:
        candidate = date(today.year, month, day)
    except ValueError:
        return None
    if candidate < today - timedelta(days=60):  # "Jan 5" said in December: next year
        candidate = date(today.year + 1, month, day)
    return candidate


def _clock(text: str) -> tuple[int, int] | None:
    m = _CLOCK_EN.search(text)
    if m:
        hour = int(m.group(1)) % 12 + (12 if m.group(3).lower() == "pm" else 0)
        return hour, int(m.group(2) or 0)
    m = _CLOCK_ZH.search(text)
    if m:
        hour = _zh_int(m.group(2))
        if m.group(1) in ("下午", "晚上") and hour < 12:
            hour += 12
        return hour, 30 if m.group(3) else 0
    return None


def find_days(text: str, sent_at: int) -> list[tuple[int, date]]:
    """(position in the text, day) for each date expression, in text order."""
    today = datetime.fromtimestamp(sent_at / 1000, tz=timezone.utc).date()
    found: list[tuple[int, date]] = []
    lower = text.lower()
    for m in _EN_REL.finditer(lower):
        word = m.group(1)
        if word.startswith(("today", "tonight", "this ", "eod", "end of the day", "end of day", "cob")):
            found.append((m.start(), today))
        elif word == "day after tomorrow":
            found.append((m.start(), today + timedelta(days=2)))
        elif word.startswith("tom") or word in ("tmrw", "tmr"):
            found.append((m.start(), today + timedelta(days=1)))
        elif word in ("end of the week", "end of week", "eow"):
            found.append((m.start(), today + timedelta(days=(4 - today.weekday()) % 7)))
    for m in _EN_WEEKDAY.finditer(lower):
        found.append((m.start(), _weekday(today, EN_DAYS[m.group(2)[:3]], (m.group(1) or "").lower())))
    for m in _EN_IN.finditer(lower):
        word = m.group(1)
        n = int(word) if word.isdigit() else {"a": 1, "one": 1, "two": 2, "three": 3}[word]
        found.append((m.start(), today + timedelta(days=n * (7 if m.group(2).startswith("week") else 1))))
    for m in _EN_MONTH_DAY.finditer(lower):
        if (day := _year_for(today, MONTHS[m.group(1)[:3]], int(m.group(2)))) is not None:
            found.append((m.start(), day))
    for m in _EN_DAY_MONTH.finditer(lower):
        if (day := _year_for(today, MONTHS[m.group(2)[:3]], int(m.group(1)))) is not None:
            found.append((m.start(), day))
    for m in _ISO.finditer(text):
        try:
            found.append((m.start(), date(int(m.group(1)), int(m.group(2)), int(m.group(3)))))
        except ValueError:
            pass
    for m in _SLASH.finditer(text):
        if (day := _year_for(today, int(m.group(1)), int(m.group(2)))) is not None and 1 <= int(m.group(1)) <= 12:
            found.append((m.start(), day))
    for m in _ZH_REL.finditer(text):
        word = m.group(1)
        if word.startswith(("今", "下班")):
            found.append((m.start(), today))
        elif word.startswith("明"):
            found.append((m.start(), today + timedelta(days=1)))
        elif word == "后天":
            found.append((m.start(), today + timedelta(days=2)))
        elif word == "大后天":
            found.append((m.start(), today + timedelta(days=3)))
        elif word.endswith("周末"):
            found.append((m.start(), _weekday(today, 6, "这")))
    for m in _ZH_WEEKDAY.finditer(text):
        found.append((m.start(), _weekday(today, ZH_DAYS[m.group(2)], m.group(1) or "")))
    for m in _ZH_MONTH_DAY.finditer(text):
        if (day := _year_for(today, _zh_int(m.group(1)), _zh_int(m.group(2)))) is not None:
            found.append((m.start(), day))
    for m in _ZH_DAY.finditer(text):
        n = int(m.group(1))
        if 1 <= n <= 31:
            month = today.month if n >= today.day else today.month % 12 + 1
            year = today.year + (1 if month < today.month else 0)
            try:
                found.append((m.start(), date(year, month, n)))
            except ValueError:
                pass
    # "下周三" also matches "下周": keep the most specific expression at each place
    found.sort(key=lambda item: item[0])
    out: list[tuple[int, date]] = []
    for pos, day in found:
        if out and abs(out[-1][0] - pos) <= 1:
            out[-1] = (out[-1][0], day) if day != out[-1][1] else out[-1]
            continue
        out.append((pos, day))
    return out


_DEADLINE_BEFORE = re.compile(r"(?:\bby|\bbefore|\buntil|\btill|\bdue|no later than|截止|最晚)\s*(?:the\s+)?$", re.I)
_DEADLINE_START = re.compile(r"(?:by|before|until|till|due)\s", re.I)  # "by Sunday" matched whole
_DEADLINE_AFTER = re.compile(r"^\S{0,4}?(?:之前|以前|前)")


def resolve(text: str, sent_at: int) -> int | None:
    """The date the text gives as a deadline ("by Sunday", "周五前"), else the first date it
    names, as ms: the end of that day, or the clock time given with it."""
    days = find_days(text, sent_at)
    if not days:
        return None
    day = days[0][1]
    for pos, candidate in days:
        after = text[pos:pos + 12]
        if _DEADLINE_BEFORE.search(text[max(0, pos - 16):pos]) or _DEADLINE_START.match(after) or _DEADLINE_AFTER.search(after[2:] if len(after) > 2 else ""):
            day = candidate
            break
    clock = _clock(text)
    return _at(day, *clock) if clock else _end_of(day)


def same_day(ms: int, other: int) -> bool:
    return ms // DAY_MS == other // DAY_MS
