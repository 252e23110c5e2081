"""Brief categories: `urgent | important | monitor | archive` for an insight, from a score.

Not an LLM call: a documented, deterministic score over the insight's fields, so the same
insight at the same moment always lands in the same category and a person can predict it.

    S = due + waiting_for_me + my_tasks + waiting_for_others + importance + urgency + unreplied

    due                 overdue by more than 7 days: 9, by more than 3 days: 7, overdue: 5,
                        due within 24 h: 6, within 3 days: 4, within 7 days: 2, else (or none): 0
    waiting_for_me      3 + min(n, 5) when n > 0 items wait for the person, else 0
    my_tasks            3 + min(n, 5) when n > 0, else 0
    waiting_for_others  1 + min(n, 2) when n > 0, else 0
    importance          high 3, medium 1, low 0
    urgency             high 6, medium 2, low 0
    unreplied           2 when the chat's last word is someone else's and unanswered

    category(S)         urgent S >= 12, important S >= 7, monitor S >= 3, archive otherwise

Time decay: the last activity is `as_of` (the chat's newest message). After 24 h without
activity the category moves one step down (urgent -> important -> monitor -> archive), once;
a due date within the next 24 h, or overdue by less than 7 days, holds the category (the
deadline is the activity; a deadline missed long ago decays like anything else). Within a
category, higher S comes first, then the newer activity.

This is the automatic part only: the person's overrides and pins (store/insight_brief.py)
always win over it, and nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

CATEGORIES = ("urgent", "important", "monitor", "archive")
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
THRESHOLDS = (("urgent", 12.0), ("important", 7.0), ("monitor", 3.0))
LEVEL_POINTS = {"importance": {"high": 3, "medium": 1}, "urgency": {"high": 6, "medium": 2}}
UNREPLIED_POINTS = 2
COLD_AFTER_MS = DAY_MS
HOLD_OVERDUE_MS = 7 * DAY_MS  # a deadline missed by less than this keeps the insight warm


@dataclass(frozen=True)
class Brief:
    category: str  # after decay
    score: float
    cold: bool  # 24 h or more without activity


def due_points(due_ms: int | None, now_ms: int) -> int:
    if due_ms is None:
        return 0
    ahead = due_ms - now_ms
    if ahead < 0:
        late = -ahead
        return 9 if late > 7 * DAY_MS else 7 if late > 3 * DAY_MS else 5
    if ahead <= DAY_MS:
        return 6
    if ahead <= 3 * DAY_MS:
        return 4
    if ahead <= 7 * DAY_MS:
        return 2
    return 0


def _count(insight: Mapping[str, Any], name: str) -> int:
    """Items in a list column; a precomputed `n_<name>` (counted by the database) is used as is."""
    if f"n_{name}" in insight:
        return int(insight[f"n_{name}"] or 0)
    value = insight.get(name)
    return len(value) if isinstance(value, list) else 0


def _items(n: int, base: int, cap: int) -> int:
    return base + min(n, cap) if n > 0 else 0


def score(insight: Mapping[str, Any], now_ms: int) -> float:
    """S for one insight row (snake_case columns of `insights`). Pure: no I/O."""
    points = due_points(insight.get("due_date"), now_ms)
    points += _items(_count(insight, "waiting_for_me"), 3, 5)
    points += _items(_count(insight, "my_tasks"), 3, 5)
    points += _items(_count(insight, "waiting_for_others"), 1, 2)
    points += LEVEL_POINTS["importance"].get(str(insight.get("importance") or "").lower(), 0)
    points += LEVEL_POINTS["urgency"].get(str(insight.get("urgency") or "").lower(), 0)
    points += UNREPLIED_POINTS if insight.get("is_unreplied") else 0
    return float(points)


def category_of(s: float) -> str:
    for name, threshold in THRESHOLDS:
        if s >= threshold:
            return name
    return "archive"


def decayed(category: str) -> str:
    """One step down; archive stays archive."""
    return CATEGORIES[min(CATEGORIES.index(category) + 1, len(CATEGORIES) - 1)]


def is_cold(insight: Mapping[str, Any], now_ms: int) -> bool:
    """24 h or more since the chat's newest message, and no deadline holding it warm."""
    due = insight.get("due_date")
    if due is not None and -HOLD_OVERDUE_MS < due - now_ms <= DAY_MS:
        return False
    last = insight.get("as_of") or insight.get("updated_at") or 0
    return now_ms - int(last) >= COLD_AFTER_MS


def categorize(insight: Mapping[str, Any], now_ms: int) -> Brief:
    s = score(insight, now_ms)
    cold = is_cold(insight, now_ms)
    base = category_of(s)
    return Brief(decayed(base) if cold else base, s, cold)
