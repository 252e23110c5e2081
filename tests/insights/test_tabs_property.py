"""The filter language against a plain-Python reading of its documentation: 300 random filters
(every kind, any/all, nested token matches) run in the database on both backends must select
exactly the insights the reference selects. Seeded, so a failure names a reproducible filter."""

from __future__ import annotations

import random
from typing import Any, AsyncIterator

import httpx
import pytest

from store.ids import new_id, now_ms
from store.schema import accounts
from tests.conftest import register
from tests.insights.test_brief import insert_insight

HOUR = 3_600_000
PLATFORMS = ["slack", "telegram", "discord", "feishu"]
CATEGORIES = ["News", "Meetings", "Funding", "R&D", "Other", "招聘"]
PEOPLE = ["Alice Smith", "Bob", "carol", "小王", "Dana Lee"]
CHATS = ["Design Review", "家庭群", "Investors", None]
WORDS = ["contract", "logo", "Lunch", "deploy", "预算", "invoice", "Launch"]
TOKENS = ["ali", "Bob", "BO", "小", "design", "sign", "rev", "lunch", "预", "deploy", "news", "r&d", "zzz", "Lee",
          "contract", "fund", "group", "slack", "gram"]
LEVELS = ["high", "medium", "low", "High", "Important", "Immediate", "Within 24 hours", "not urgent", "general"]
IMPORTANCE = {"high": "high", "important": "high", "medium": "medium", "general": "medium", "low": "low",
              "not important": "low"}
URGENCY = {"high": "high", "immediate": "high", "urgent": "high", "medium": "medium", "within 24 hours": "medium",
           "low": "low", "not urgent": "low", "general": None, "important": None}
KEYWORD_FIELDS = ["title", "description", "details", "sources", "groups", "insight_keywords", "people"]
TASK_LISTS = {"myTasks": "my_tasks", "waitingForMe": "waiting_for_me", "waitingForOthers": "waiting_for_others",
              "nextActions": "next_actions"}


def task(rng: random.Random) -> dict[str, Any]:
    return {"text": f"{rng.choice(WORDS)} {rng.choice(WORDS)}", "sourceMessageIds": [new_id("msg")], "due": None}


def random_insight(rng: random.Random, now: int, account_id: str) -> dict[str, Any]:
    return dict(
        platform=rng.choice(PLATFORMS),
        account_id=rng.choice([account_id, None, "acct_unknown"]),
        chat_name=rng.choice(CHATS),
        chat_id=rng.choice(["C-ONE", "C-TWO", new_id("chat")]),
        dedupe_key=new_id("dk"),
        title=" ".join(rng.sample(WORDS, 2)),
        description=" ".join(rng.sample(WORDS, 3)),
        importance=rng.choice(["high", "medium", "low"]),
        urgency=rng.choice(["high", "medium", "low"]),
        categories=rng.sample(CATEGORIES, rng.randint(0, 3)),
        people=rng.sample(PEOPLE, rng.randint(0, 3)),
        my_tasks=[task(rng) for _ in range(rng.randint(0, 2))],
        waiting_for_me=[task(rng) for _ in range(rng.randint(0, 1))],
        waiting_for_others=[task(rng) for _ in range(rng.randint(0, 1))],
        next_actions=[rng.choice(WORDS) for _ in range(rng.randint(0, 2))],
        mentions=[new_id("msg")] if rng.random() < 0.3 else [],
        as_of=now - rng.randint(0, 40 * 24) * HOUR - HOUR // 2,  # half an hour off every window edge
    )


def random_condition(rng: random.Random) -> dict[str, Any]:
    kind = rng.choice(["importance", "urgency", "platform", "account", "category", "people", "groups", "keyword",
                       "mentions_me", "time_window", "has_tasks"])
    tokens = rng.sample(TOKENS, rng.randint(1, 3))
    if kind == "importance":
        return {"kind": kind, "values": rng.sample([v for v in LEVELS if v.lower() in IMPORTANCE], rng.randint(1, 2))}
    if kind == "urgency":
        return {"kind": kind, "values": rng.sample([v for v in LEVELS if URGENCY.get(v.lower())], rng.randint(1, 2))}
    if kind == "platform":
        return {"kind": kind, "values": [p.upper() if rng.random() < 0.3 else p for p in rng.sample(PLATFORMS, rng.randint(1, 2))]}
    if kind == "account":
        return {"kind": kind, "values": rng.sample(["Acme Workspace", "acme workspace", "T0ACME", "nobody"], rng.randint(1, 2))}
    if kind == "category":
        return {"kind": kind, "values": [c.lower() if rng.random() < 0.5 else c for c in rng.sample(CATEGORIES, rng.randint(1, 2))]}
    if kind == "people":
        return {"kind": kind, "values": tokens, "match": rng.choice(["any", "all"]), "caseSensitive": rng.random() < 0.3}
    if kind == "groups":
        return {"kind": kind, "values": tokens + (["C-ONE"] if rng.random() < 0.3 else []), "match": rng.choice(["any", "all"])}
    if kind == "keyword":
        out: dict[str, Any] = {"kind": kind, "values": tokens, "match": rng.choice(["any", "all"])}
        if rng.random() < 0.6:
            out["fields"] = rng.sample(KEYWORD_FIELDS, rng.randint(1, 3))
        return out
    if kind == "mentions_me":
        return {"kind": kind, "values": []}
    if kind == "time_window":
        return {"kind": kind, "withinHours": rng.choice([1, 12, 24, 72, 200, 720])}
    return {"kind": kind, "values": rng.sample(list(TASK_LISTS), rng.randint(1, 3))}


def has(text: str | None, token: str, case_sensitive: bool = False) -> bool:
    text = text or ""
    return token in text if case_sensitive else token.lower() in text.lower()


def keyword_hit(row: dict[str, Any], fields: list[str], token: str) -> bool:
    texts: list[str | None] = []
    for field in fields:
        if field == "title":
            texts.append(row["title"])
        elif field == "description":
            texts.append(row["description"])
        elif field == "groups":
            texts.append(row["chat_name"])
        elif field == "people":
            texts += row["people"]
        elif field == "insight_keywords":
            texts += row["categories"]
        elif field == "details":
            texts += [t["text"] for key in ("my_tasks", "waiting_for_me", "waiting_for_others") for t in row[key]]
            texts += row["next_actions"]
        elif field == "sources":
            texts += [row["platform"], row["chat_name"]]
    return any(has(t, token) for t in texts)


def reference(row: dict[str, Any], cond: dict[str, Any], account: dict[str, Any], now: int) -> bool:
    """What the docstring of ai/insights/filters.py says, in Python."""
    kind, values = cond["kind"], cond.get("values", [])
    combine = all if cond.get("match") == "all" else any
    if kind == "importance":
        return row["importance"] in {IMPORTANCE[v.lower()] for v in values}
    if kind == "urgency":
        return row["urgency"] in {URGENCY[v.lower()] for v in values}
    if kind == "platform":
        return row["platform"] in {v.lower() for v in values}
    if kind == "account":
        named = row["account_id"] == account["id"] and (
            account["name"].lower() in {v.lower() for v in values} or account["external_id"] in values)
        return row["account_id"] in values or named
    if kind == "category":
        return any(c.lower() in {v.lower() for v in values} for c in row["categories"])
    if kind == "people":
        return combine(any(has(p, t, cond["caseSensitive"]) for p in row["people"]) for t in values)
    if kind == "groups":
        return combine(has(row["chat_name"], t) or row["chat_id"] == t for t in values)
    if kind == "keyword":
        return combine(keyword_hit(row, cond.get("fields") or KEYWORD_FIELDS, t) for t in values)
    if kind == "mentions_me":
        return bool(row["mentions"])
    if kind == "time_window":
        return row["as_of"] >= now - cond["withinHours"] * HOUR
    return any(row[TASK_LISTS[v]] for v in values)


@pytest.fixture(scope="module")
async def corpus(hub: Any, server: Any) -> AsyncIterator[tuple[dict, list[dict], dict]]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        user = await register(client)
        other = await register(client)
    rng, now = random.Random(20261130), now_ms()
    account = {"id": new_id("acct"), "user_id": user["user"]["id"], "platform": "slack", "external_id": "T0ACME",
               "name": "Acme Workspace", "settings": {}, "resume": {}, "state": "imported", "created_at": now, "updated_at": now}
    async with hub.engine.begin() as conn:
        await conn.execute(accounts.insert().values(**account))
    rows = [await insert_insight(hub, user["user"]["id"], **random_insight(rng, now, account["id"])) for _ in range(40)]
    for _ in range(10):  # another person's rows, drawn from the same distribution: never selected
        await insert_insight(hub, other["user"]["id"], **random_insight(rng, now, account["id"]))
    yield user, rows, account


async def test_random_filters_match_the_reference(corpus: tuple[dict, list[dict], dict], client: httpx.AsyncClient) -> None:
    user, rows, account = corpus
    rng = random.Random(7)
    selected_sizes = []
    for _ in range(300):
        flt = {"match": rng.choice(["all", "any"]), "conditions": [random_condition(rng) for _ in range(rng.randint(1, 3))]}
        r = await client.post("/api/insight-tabs/preview", headers=user["headers"], json={"filter": flt, "limit": 200})
        assert r.status_code == 200, (flt, r.text)
        now = now_ms()
        combine = all if flt["match"] == "all" else any
        expected = {row["id"] for row in rows if combine(reference(row, c, account, now) for c in flt["conditions"])}
        got = {i["id"] for i in r.json()["insights"]}
        assert got == expected, flt
        selected_sizes.append(len(expected))
    # The filters must discriminate: neither always empty nor always everything.
    assert sum(1 for n in selected_sizes if 0 < n < len(rows)) > 150
