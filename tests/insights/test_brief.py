"""Brief categories: the documented score, and every /api/insights/brief-categories route on both
databases (bad input changes nothing, other people's insights are 404, the person's overrides,
pins and unpins survive sync and a plain cleanup)."""

from __future__ import annotations

from typing import Any

import httpx
import sqlalchemy as sa

from ai.insights.brief import DAY_MS, HOUR_MS, categorize, score
from store.ids import new_id, now_ms
from store.schema import insight_brief, insights
from tests.conftest import register


def insight_row(user_id: str, **fields: Any) -> dict[str, Any]:
    """A full `insights` row with quiet defaults (archive); tests override what they need."""
    now = now_ms()
    chat = fields.pop("chat_id", new_id("chat"))
    row: dict[str, Any] = {
        "id": new_id("ins"),
        "user_id": user_id,
        "account_id": None,
        "platform": "slack",
        "chat_id": chat,
        "chat_name": None,
        "dedupe_key": f"acct:{chat}",
        "title": "Quiet chat",
        "description": "",
        "importance": "low",
        "urgency": "low",
        "categories": [],
        "people": [],
        "my_tasks": [],
        "waiting_for_me": [],
        "waiting_for_others": [],
        "next_actions": [],
        "mentions": [],
        "is_unreplied": False,
        "due_date": None,
        "source_message_ids": [],
        "method": "offline",
        "model": None,
        "as_of": now,
        "last_seq": 0,
        "created_at": now,
        "updated_at": now,
    }
    row.update(fields)
    return row


async def insert_insight(hub: Any, user_id: str, **fields: Any) -> dict[str, Any]:
    """Insert one insight row directly (generation is tested elsewhere)."""
    row = insight_row(user_id, **fields)
    async with hub.engine.begin() as conn:
        await conn.execute(insights.insert().values(**row))
    return row


def task(text: str = "do it") -> dict[str, Any]:
    return {"text": text, "sourceMessageIds": [], "due": None}


async def brief_rows(hub: Any, user_id: str) -> dict[str, dict[str, Any]]:
    async with hub.engine.connect() as conn:
        rows = await conn.execute(sa.select(insight_brief).where(insight_brief.c.user_id == user_id))
        return {r.insight_id: dict(r._mapping) for r in rows}


# --- the score (pure) -------------------------------------------------------------------------

NOW = 1_800_000_000_000


def test_score_adds_the_documented_points() -> None:
    base = insight_row("u", as_of=NOW)
    assert score(base, NOW) == 0
    assert score({**base, "waiting_for_me": [task()]}, NOW) == 4
    assert score({**base, "waiting_for_me": [task()] * 9}, NOW) == 8  # capped at 3 + 5
    assert score({**base, "my_tasks": [task(), task()]}, NOW) == 5
    assert score({**base, "waiting_for_others": [task()] * 4}, NOW) == 3  # 1 + min(4, 2)
    assert score({**base, "importance": "high", "urgency": "medium"}, NOW) == 5
    assert score({**base, "urgency": "high"}, NOW) == 6
    assert score({**base, "is_unreplied": True}, NOW) == 2
    due = {ahead: score({**base, "due_date": NOW + ahead}, NOW) for ahead in
           (-8 * DAY_MS, -4 * DAY_MS, -HOUR_MS, 2 * HOUR_MS, 2 * DAY_MS, 5 * DAY_MS, 30 * DAY_MS)}
    assert list(due.values()) == [9, 7, 5, 6, 4, 2, 0]


def test_categories_follow_the_thresholds() -> None:
    base = insight_row("u", as_of=NOW)
    urgent = {**base, "waiting_for_me": [task()], "urgency": "high", "is_unreplied": True}  # 4 + 6 + 2
    important = {**base, "my_tasks": [task()], "urgency": "medium", "importance": "medium"}  # 4 + 2 + 1
    monitor = {**base, "importance": "high"}  # 3
    assert [categorize(r, NOW).category for r in (urgent, important, monitor, base)] == [
        "urgent", "important", "monitor", "archive"]
    assert categorize({**base, "is_unreplied": True}, NOW).category == "archive"  # 2 < 3


def test_one_step_of_decay_after_24_hours_without_activity() -> None:
    urgent = {**insight_row("u"), "waiting_for_me": [task()], "urgency": "high", "is_unreplied": True}
    steps = []
    for idle in (23 * HOUR_MS, 24 * HOUR_MS, 10 * DAY_MS):
        brief = categorize({**urgent, "as_of": NOW - idle}, NOW)
        steps.append((brief.category, brief.cold))
    assert steps == [("urgent", False), ("important", True), ("important", True)]  # one step, not one per day
    quiet = {**insight_row("u"), "as_of": NOW - 3 * DAY_MS}
    assert categorize(quiet, NOW).category == "archive"  # archive stays archive
    # A deadline within 24 h holds the category even when the chat is quiet.
    held = {**urgent, "as_of": NOW - 3 * DAY_MS, "due_date": NOW + 2 * HOUR_MS}
    assert categorize(held, NOW).category == "urgent" and not categorize(held, NOW).cold
    missed = {**held, "due_date": NOW - 2 * DAY_MS}  # missed recently: still held
    assert categorize(missed, NOW).category == "urgent" and not categorize(missed, NOW).cold
    long_missed = {**held, "due_date": NOW - 8 * DAY_MS}  # missed long ago: decays like the rest
    assert categorize(long_missed, NOW).cold and categorize(long_missed, NOW).category == "important"
    far = {**held, "due_date": NOW + 3 * DAY_MS}
    assert categorize(far, NOW).cold


# --- the routes (both databases) ------------------------------------------------------------

async def three_insights(hub: Any, user: dict) -> dict[str, dict[str, Any]]:
    uid = user["user"]["id"]
    return {
        "urgent": await insert_insight(hub, uid, title="Contract", waiting_for_me=[task()], urgency="high", is_unreplied=True),
        "important": await insert_insight(hub, uid, title="Review", my_tasks=[task()], urgency="medium", importance="medium"),
        "archive": await insert_insight(hub, uid, title="Chit-chat"),
    }


async def test_list_shows_computed_categories_of_my_insights_only(hub, client: httpx.AsyncClient, user: dict) -> None:
    mine = await three_insights(hub, user)
    other = await register(client)
    theirs = await insert_insight(hub, other["user"]["id"], title="Theirs", urgency="high")
    r = await client.get("/api/insights/brief-categories", headers=user["headers"])
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert [i["insightId"] for i in data["items"]] == [mine["urgent"]["id"], mine["important"]["id"], mine["archive"]["id"]]
    assert data["categories"] == {row["id"]: name for name, row in mine.items()}
    assert all(i["source"] == "computed" for i in data["items"]) and data["items"][0]["score"] == 12
    assert data["counts"] == {"urgent": 1, "important": 1, "monitor": 0, "archive": 1}
    assert theirs["id"] not in r.text
    only = await client.get("/api/insights/brief-categories?category=important", headers=user["headers"])
    assert [i["insightId"] for i in only.json()["data"]["items"]] == [mine["important"]["id"]]
    bad = await client.get("/api/insights/brief-categories?category=later", headers=user["headers"])
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_input"
    assert (await client.get("/api/insights/brief-categories")).status_code == 401


async def test_sync_stores_auto_rows_and_cleans_those_that_left(hub, client: httpx.AsyncClient, user: dict) -> None:
    mine = await three_insights(hub, user)
    uid = user["user"]["id"]
    ids = [mine["urgent"]["id"], mine["important"]["id"]]
    r = await client.post("/api/insights/brief-categories/sync", headers=user["headers"],
                          json={"insightIds": ids, "categories": {ids[1]: "monitor"}})
    assert r.status_code == 200, r.text
    assert r.json() == {"success": True, "data": {"synced": 2, "cleaned": 0}}
    rows = await brief_rows(hub, uid)
    assert {i: (rows[i]["category"], rows[i]["source"]) for i in rows} == {
        ids[0]: ("urgent", "auto"),  # ours: the score
        ids[1]: ("monitor", "auto"),  # the client's
    }
    r = await client.post("/api/insights/brief-categories/sync", headers=user["headers"],
                          json={"insightIds": [mine["archive"]["id"]]})
    assert r.json()["data"] == {"synced": 1, "cleaned": 2}
    assert set(await brief_rows(hub, uid)) == {mine["archive"]["id"]}
    empty = await client.post("/api/insights/brief-categories/sync", headers=user["headers"], json={"insightIds": []})
    assert empty.json()["data"] == {"synced": 0, "cleaned": 0}


async def test_sync_bad_input_and_foreign_ids_store_nothing(hub, client: httpx.AsyncClient, user: dict) -> None:
    mine = await three_insights(hub, user)
    other = await register(client)
    theirs = await insert_insight(hub, other["user"]["id"])
    uid = user["user"]["id"]
    mid = mine["urgent"]["id"]
    bad_bodies = [
        {"insightIds": [mid] * 101},  # more than 100
        {"insightIds": [mid], "categories": {mid: "later"}},
        {"insightIds": [mid], "categories": {mine["archive"]["id"]: "urgent"}},  # not in insightIds
        {"insightIds": "all"},
        {},
    ]
    for body in bad_bodies:
        r = await client.post("/api/insights/brief-categories/sync", headers=user["headers"], json=body)
        assert r.status_code == 400, (body, r.text)
        assert set(r.json()) >= {"error", "code"} and r.json()["code"] == "invalid_input"
    r = await client.post("/api/insights/brief-categories/sync", headers=user["headers"],
                          json={"insightIds": [mid, theirs["id"]]})
    assert r.status_code == 404 and r.json()["code"] == "insight_not_found"
    assert await brief_rows(hub, uid) == {} and await brief_rows(hub, other["user"]["id"]) == {}


async def test_sync_never_overwrites_overrides_pins_or_unpins(hub, client: httpx.AsyncClient, user: dict) -> None:
    mine = await three_insights(hub, user)
    uid, h = user["user"]["id"], user["headers"]
    a, b, c = mine["urgent"]["id"], mine["important"]["id"], mine["archive"]["id"]
    r = await client.post("/api/insights/brief-categories/overrides", headers=h, json={"overrides": {a: "archive"}})
    assert r.status_code == 200 and r.json()["data"]["overrides"] == {a: "archive"}
    r = await client.post("/api/insights/brief-categories/pinned", headers=h, json={"insightId": b, "category": "monitor"})
    assert r.status_code == 200 and r.json()["data"]["pinnedIds"] == [b]
    r = await client.post("/api/insights/brief-categories/pinned", headers=h, json={"insightId": c, "pinned": False})
    assert r.json()["data"]["unpinnedIds"] == [c]
    before = await brief_rows(hub, uid)
    r = await client.post("/api/insights/brief-categories/sync", headers=h,
                          json={"insightIds": [a, b, c], "categories": {a: "urgent", b: "urgent", c: "urgent"}})
    assert r.json()["data"] == {"synced": 2, "cleaned": 0}  # the unpinned one is not brought back
    r = await client.post("/api/insights/brief-categories/sync", headers=h, json={"insightIds": []})
    r = await client.post("/api/insights/brief-categories/sync", headers=h, json={"insightIds": [mine["urgent"]["id"]]})
    assert r.json()["data"]["cleaned"] == 0  # the person's rows are never cleaned by sync
    after = await brief_rows(hub, uid)
    assert {i: (r["category"], r["source"], r["pinned"], r["unpinned_at"]) for i, r in after.items()} == {
        i: (r["category"], r["source"], r["pinned"], r["unpinned_at"]) for i, r in before.items()
    }
    listed = (await client.get("/api/insights/brief-categories", headers=h)).json()["data"]
    assert listed["categories"][a] == "archive" and listed["categories"][b] == "monitor"
    assert listed["pinnedIds"] == [b] and listed["unpinnedIds"] == [c]


async def test_overrides_read_openloomi_shape_and_reset(hub, client: httpx.AsyncClient, user: dict) -> None:
    mine = await three_insights(hub, user)
    uid, h = user["user"]["id"], user["headers"]
    a, b = mine["urgent"]["id"], mine["important"]["id"]
    await client.post("/api/insights/brief-categories/overrides", headers=h, json={"insightId": a, "category": "monitor"})
    # openloomi posts whole insight objects to read the person's categories.
    r = await client.post("/api/insights/brief-categories/overrides", headers=h,
                          json={"insights": [{"id": a, "title": "Contract", "categories": []}, {"id": b}]})
    assert r.status_code == 200
    assert r.json() == {"success": True, "data": {"overrides": {a: "monitor"}, "unpinnedIds": []}}
    r = await client.post("/api/insights/brief-categories/overrides", headers=h, json={"overrides": {a: None}})
    assert r.json()["data"]["overrides"] == {} and await brief_rows(hub, uid) == {}
    for bad in ({}, {"overrides": {a: "soon"}}, {"category": "urgent"}, {"insights": [{"title": "no id"}]}):
        r = await client.post("/api/insights/brief-categories/overrides", headers=h, json=bad)
        assert r.status_code == 400, (bad, r.text)
    assert await brief_rows(hub, uid) == {}


async def test_other_peoples_insights_are_404_everywhere(hub, client: httpx.AsyncClient, user: dict) -> None:
    other = await register(client)
    theirs = await insert_insight(hub, other["user"]["id"], title="Their secret", urgency="high")
    await client.post("/api/insights/brief-categories/pinned", headers=other["headers"], json={"insightId": theirs["id"]})
    before = await brief_rows(hub, other["user"]["id"])
    h, tid = user["headers"], theirs["id"]
    calls = [
        ("POST", "/api/insights/brief-categories/overrides", {"insights": [tid]}),
        ("POST", "/api/insights/brief-categories/overrides", {"overrides": {tid: "archive"}}),
        ("POST", "/api/insights/brief-categories/pinned", {"insightId": tid, "pinned": False}),
        ("POST", "/api/insights/brief-categories/sync", {"insightIds": [tid]}),
        ("POST", f"/api/insights/{tid}/brief-category", {"category": "archive"}),
        ("GET", f"/api/insights/{tid}/brief-category", None),
    ]
    for method, path, body in calls:
        r = await client.request(method, path, headers=h, json=body)
        assert r.status_code == 404, (path, r.text)
        assert "Their secret" not in r.text
    for path in ("/api/insights/brief-categories", "/api/insights/brief-categories/pinned"):
        assert tid not in (await client.get(path, headers=h)).text
    await client.request("DELETE", "/api/insights/brief-categories/cleanup?force=true", headers=h)
    assert await brief_rows(hub, other["user"]["id"]) == before


async def test_pinned_lists_insights_with_their_category(hub, client: httpx.AsyncClient, user: dict) -> None:
    mine = await three_insights(hub, user)
    h = user["headers"]
    a, c = mine["urgent"]["id"], mine["archive"]["id"]
    r = await client.post("/api/insights/brief-categories/pinned", headers=h, json={"insightIds": [a, c]})
    assert r.json()["data"]["pinnedIds"] == sorted([a, c])
    pinned = (await client.get("/api/insights/brief-categories/pinned", headers=h)).json()
    assert pinned["success"] is True
    got = {i["id"]: (i["briefCategory"], i["title"]) for i in pinned["data"]["insights"]}
    assert got == {a: ("urgent", "Contract"), c: ("archive", "Chit-chat")}
    first = pinned["data"]["insights"][0]
    assert {"chatId", "importance", "urgency", "myTasks", "waitingForMe", "isUnreplied", "asOf"} <= set(first)
    await client.post("/api/insights/brief-categories/pinned", headers=h, json={"insightId": c, "pinned": False})
    after = (await client.get("/api/insights/brief-categories/pinned", headers=h)).json()["data"]["insights"]
    assert [i["id"] for i in after] == [a]
    for bad in ({}, {"insightId": a, "pinned": False, "category": "urgent"}, {"insightIds": ["x"] * 101}):
        r = await client.post("/api/insights/brief-categories/pinned", headers=h, json=bad)
        assert r.status_code == 400, (bad, r.text)


async def test_cleanup_keeps_the_persons_rows_unless_forced(hub, client: httpx.AsyncClient, user: dict) -> None:
    mine = await three_insights(hub, user)
    uid, h = user["user"]["id"], user["headers"]
    a, b, c = mine["urgent"]["id"], mine["important"]["id"], mine["archive"]["id"]
    await client.post("/api/insights/brief-categories/sync", headers=h, json={"insightIds": [a, b, c]})
    await client.post("/api/insights/brief-categories/overrides", headers=h, json={"overrides": {b: "urgent"}})
    await client.post("/api/insights/brief-categories/pinned", headers=h, json={"insightId": c})
    r = await client.post("/api/insights/brief-categories/cleanup", headers=h)  # the seed's form
    assert r.status_code == 200 and r.json()["data"]["cleaned"] == 1
    assert set(await brief_rows(hub, uid)) == {b, c}
    r = await client.request("DELETE", "/api/insights/brief-categories/cleanup", headers=h)  # openloomi's
    assert r.json()["data"]["cleaned"] == 0
    r = await client.request("DELETE", "/api/insights/brief-categories/cleanup?force=true", headers=h)
    assert r.json()["data"]["cleaned"] == 2 and await brief_rows(hub, uid) == {}
    await client.post("/api/insights/brief-categories/overrides", headers=h, json={"overrides": {b: "urgent"}})
    r = await client.post("/api/insights/brief-categories/cleanup", headers=h, json={"force": True})
    assert r.json()["data"]["cleaned"] == 1
    bad = await client.post("/api/insights/brief-categories/cleanup?force=maybe", headers=h)
    assert bad.status_code == 400


async def test_per_insight_brief_category_route(hub, client: httpx.AsyncClient, user: dict) -> None:
    mine = await three_insights(hub, user)
    h, a = user["headers"], mine["archive"]["id"]
    assert (await client.get(f"/api/insights/{a}/brief-category", headers=h)).json()["data"] == {"id": a, "category": None}
    r = await client.post(f"/api/insights/{a}/brief-category", headers=h, json={"category": "important"})
    assert r.status_code == 200 and r.json()["data"] == {"id": a, "category": "important"}
    assert (await client.get(f"/api/insights/{a}/brief-category", headers=h)).json()["data"]["category"] == "important"
    r = await client.post(f"/api/insights/{a}/brief-category", headers=h, json={"category": "someday"})
    assert r.status_code == 400
    assert (await client.get(f"/api/insights/{a}/brief-category", headers=h)).json()["data"]["category"] == "important"


async def test_sync_racing_an_override_does_not_overwrite_it(hub, client: httpx.AsyncClient, user: dict, monkeypatch) -> None:
    """The person overrides between sync's read and its write: the database's upsert condition
    still keeps the override (simulated by sync reading a stale, empty view of the rows)."""
    from store import insight_brief as store

    mine = await three_insights(hub, user)
    uid, a = user["user"]["id"], mine["urgent"]["id"]
    await client.post("/api/insights/brief-categories/overrides", headers=user["headers"], json={"overrides": {a: "archive"}})

    async def stale(conn, user_id, ids=None):  # noqa: ANN001
        return {}

    monkeypatch.setattr(store, "rows_of", stale)
    async with hub.engine.begin() as conn:
        await store.sync(conn, uid, [a], {a: "urgent"}, now_ms())
    monkeypatch.undo()
    row = (await brief_rows(hub, uid))[a]
    assert (row["category"], row["source"]) == ("archive", "override")
