"""Insight tabs on both databases: CRUD, reorder (seed POST, openloomi PUT), bad filters (400
naming the condition, nothing stored), other people's tabs and insights never reachable, and
every kind of the filter language evaluated in the database, with match any and all."""

from __future__ import annotations

from typing import Any, AsyncIterator

import httpx
import pytest
import sqlalchemy as sa

from store.ids import new_id, now_ms
from store.schema import accounts, insight_tabs
from tests.conftest import register
from tests.insights.test_brief import insert_insight, task

HOUR = 3_600_000
MENTIONS_ME = {"kind": "mentions_me", "values": []}


async def tab_count(hub: Any, user_id: str) -> int:
    async with hub.engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).where(insight_tabs.c.user_id == user_id))).scalar_one()


async def make_tab(client: httpx.AsyncClient, user: dict, name: str, flt: dict | None = None) -> dict:
    r = await client.post("/api/insight-tabs", headers=user["headers"],
                          json={"name": name, "filter": flt or {"match": "all", "conditions": [MENTIONS_ME]}})
    assert r.status_code == 200, r.text
    return r.json()["tab"]


# --- the filter language: one world of three insights (and a look-alike of another person) ---

class World:
    def __init__(self, user: dict, ids: dict[str, str], account: dict[str, Any], other: dict) -> None:
        self.user, self.ids, self.account, self.other = user, ids, account, other


@pytest.fixture(scope="module")
async def world(hub: Any, server: Any) -> AsyncIterator[World]:
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        user = await register(client)
        other = await register(client)
    uid, now = user["user"]["id"], now_ms()
    account = {"id": new_id("acct"), "user_id": uid, "platform": "slack", "external_id": "T0DESIGN", "name": "Acme Workspace",
               "settings": {}, "resume": {}, "state": "imported", "created_at": now, "updated_at": now}
    async with hub.engine.begin() as conn:
        await conn.execute(accounts.insert().values(**account))
    s1 = dict(platform="slack", account_id=account["id"], chat_name="Design Review", title="Logo deadline",
              description="Finalize the logo", importance="high", urgency="high", categories=["Branding", "Meetings"],
              people=["Alice Smith", "Bob"], my_tasks=[task("do it")], mentions=["msg_1"], as_of=now - HOUR)
    t2 = dict(platform="telegram", chat_name="家庭群", title="周末聚餐", description="谁来订餐厅？", importance="medium",
              urgency="low", categories=["Other"], people=["小王"], waiting_for_others=[task("do it")], as_of=now - 48 * HOUR)
    d3 = dict(platform="discord", chat_id="C-INVEST", chat_name="Investors", title="Funding round",
              description="Term sheet from Acme", importance="low", urgency="medium", categories=["Funding"],
              people=["carol"], next_actions=["reply to Acme"], as_of=now - 240 * HOUR)
    ids = {}
    for name, fields in (("s1", s1), ("t2", t2), ("d3", d3)):
        ids[name] = (await insert_insight(hub, uid, **fields))["id"]
    # Another person's insight that matches every condition below: it must never appear.
    await insert_insight(hub, other["user"]["id"], **{**s1, "account_id": account["id"], "chat_id": "C-INVEST",
                                                      "chat_name": "Design Review 家庭群 Investors",
                                                      "categories": ["Branding", "Funding", "Other"],
                                                      "people": ["Alice Smith", "Bob", "carol", "小王"],
                                                      "next_actions": ["reply"], "waiting_for_others": [task()]})
    yield World(user, ids, account, other)


def cond(kind: str, **fields: Any) -> dict[str, Any]:
    return {"kind": kind, **fields}


CASES: list[tuple[str, dict[str, Any], set[str]]] = [
    ("importance", {"conditions": [cond("importance", values=["High"])]}, {"s1"}),
    ("importance labels", {"conditions": [cond("importance", values=["Important", "low"])]}, {"s1", "d3"}),
    ("urgency", {"conditions": [cond("urgency", values=["Immediate"])]}, {"s1"}),
    ("urgency medium", {"conditions": [cond("urgency", values=["Within 24 hours"])]}, {"d3"}),
    ("urgency low", {"conditions": [cond("urgency", values=["not urgent"])]}, {"t2"}),
    ("platform", {"conditions": [cond("platform", values=["Telegram"])]}, {"t2"}),
    ("platforms", {"conditions": [cond("platform", values=["slack", "discord"])]}, {"s1", "d3"}),
    ("account name", {"conditions": [cond("account", values=["acme workspace"])]}, {"s1"}),
    ("account external id", {"conditions": [cond("account", values=["T0DESIGN"])]}, {"s1"}),
    ("category", {"conditions": [cond("category", values=["branding"])]}, {"s1"}),
    ("categories", {"conditions": [cond("category", values=["Funding", "other"])]}, {"t2", "d3"}),
    ("people", {"conditions": [cond("people", values=["alice"])]}, {"s1"}),
    ("people any", {"conditions": [cond("people", values=["alice", "carol"])]}, {"s1", "d3"}),
    ("people all", {"conditions": [cond("people", values=["alice", "bob"], match="all")]}, {"s1"}),
    ("people all none", {"conditions": [cond("people", values=["alice", "carol"], match="all")]}, set()),
    ("people case", {"conditions": [cond("people", values=["alice"], caseSensitive=True)]}, set()),
    ("people case hit", {"conditions": [cond("people", values=["Alice"], caseSensitive=True)]}, {"s1"}),
    ("people chinese", {"conditions": [cond("people", values=["小王"])]}, {"t2"}),
    ("groups", {"conditions": [cond("groups", values=["design"])]}, {"s1"}),
    ("groups chinese", {"conditions": [cond("groups", values=["家庭"])]}, {"t2"}),
    ("groups chat id", {"conditions": [cond("groups", values=["C-INVEST"])]}, {"d3"}),
    ("groups all", {"conditions": [cond("groups", values=["design", "review"], match="all")]}, {"s1"}),
    ("groups all none", {"conditions": [cond("groups", values=["design", "investors"], match="all")]}, set()),
    ("keyword title", {"conditions": [cond("keyword", values=["LOGO"])]}, {"s1"}),
    ("keyword description", {"conditions": [cond("keyword", values=["acme"])]}, {"d3"}),
    ("keyword title only", {"conditions": [cond("keyword", values=["term sheet"], fields=["title"])]}, set()),
    ("keyword chinese", {"conditions": [cond("keyword", values=["餐厅"])]}, {"t2"}),
    ("keyword details", {"conditions": [cond("keyword", values=["reply"], fields=["details"])]}, {"d3"}),
    ("keyword tasks", {"conditions": [cond("keyword", values=["do it"], fields=["details"])]}, {"s1", "t2"}),
    ("keyword not json keys", {"conditions": [cond("keyword", values=["sourceMessageIds"], fields=["details"])]}, set()),
    ("keyword sources", {"conditions": [cond("keyword", values=["telegram"], fields=["sources"])]}, {"t2"}),
    ("keyword categories", {"conditions": [cond("keyword", values=["brand"], fields=["insight_keywords"])]}, {"s1"}),
    ("keyword people", {"conditions": [cond("keyword", values=["bob"], fields=["people"])]}, {"s1"}),
    ("keyword groups", {"conditions": [cond("keyword", values=["investors"], fields=["groups"])]}, {"d3"}),
    ("keyword all", {"conditions": [cond("keyword", values=["logo", "sheet"], match="all")]}, set()),
    ("keyword any", {"conditions": [cond("keyword", values=["logo", "sheet"])]}, {"s1", "d3"}),
    ("mentions_me", {"conditions": [MENTIONS_ME]}, {"s1"}),
    ("time_window 24h", {"conditions": [cond("time_window", withinHours=24)]}, {"s1"}),
    ("time_window 72h", {"conditions": [cond("time_window", withinHours=72)]}, {"s1", "t2"}),
    ("time_window 30d", {"conditions": [cond("time_window", withinHours=720)]}, {"s1", "t2", "d3"}),
    ("has_tasks", {"conditions": [{"kind": "has_tasks"}]}, {"s1", "t2"}),
    ("has_tasks next", {"conditions": [cond("has_tasks", values=["nextActions"])]}, {"d3"}),
    ("has_tasks mine", {"conditions": [cond("has_tasks", values=["myTasks"])]}, {"s1"}),
    ("match any", {"match": "any", "conditions": [cond("platform", values=["telegram"]), cond("importance", values=["high"])]},
     {"s1", "t2"}),
    ("match all", {"match": "all", "conditions": [cond("platform", values=["telegram"]), cond("importance", values=["high"])]},
     set()),
    ("match all hit", {"conditions": [cond("platform", values=["slack"]), cond("importance", values=["high"]), MENTIONS_ME]},
     {"s1"}),
]


@pytest.mark.parametrize(("label", "flt", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_filter_kinds_in_the_database(world: World, client: httpx.AsyncClient, label: str, flt: dict, expected: set) -> None:
    r = await client.post("/api/insight-tabs/preview", headers=world.user["headers"], json={"filter": flt})
    assert r.status_code == 200, r.text
    got = {name for name, i in world.ids.items() if i in {x["id"] for x in r.json()["insights"]}}
    assert got == expected
    assert r.json()["total"] == len(expected) == len(r.json()["insights"])  # the other person's never counted


async def test_every_kind_is_covered() -> None:
    from ai.insights.filters import KINDS

    assert {flt["conditions"][0]["kind"] for _, flt, _ in CASES} == set(KINDS)


async def test_a_saved_tab_lists_its_insights(world: World, client: httpx.AsyncClient) -> None:
    h = world.user["headers"]
    tab = await make_tab(client, world.user, "Recent", {"match": "all", "conditions": [cond("time_window", withinHours=72)]})
    r = await client.get(f"/api/insight-tabs/{tab['id']}/insights?limit=1", headers=h)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["tab"]["id"] == tab["id"] and body["total"] == 2 and body["limit"] == 1
    assert [i["id"] for i in body["insights"]] == [world.ids["s1"]]  # newest activity first
    page2 = (await client.get(f"/api/insight-tabs/{tab['id']}/insights?limit=1&offset=1", headers=h)).json()
    assert [i["id"] for i in page2["insights"]] == [world.ids["t2"]]
    foreign = await client.get(f"/api/insight-tabs/{tab['id']}/insights", headers=world.other["headers"])
    assert foreign.status_code == 404 and foreign.json()["code"] == "tab_not_found"


# --- CRUD, reorder, bad input, isolation ------------------------------------------------------

async def test_tab_crud(hub: Any, client: httpx.AsyncClient, user: dict) -> None:
    h = user["headers"]
    assert (await client.get("/api/insight-tabs", headers=h)).json() == {"tabs": []}
    flt = {"match": "any", "conditions": [cond("importance", values=["Important"]), cond("platform", values=["Slack"])]}
    a = await make_tab(client, user, "  Work  ", flt)
    assert a["name"] == "Work" and a["enabled"] is True and a["type"] == "custom" and a["sortOrder"] == 0
    assert a["filter"]["match"] == "any" and a["filter"]["conditions"][0] == {"kind": "importance", "values": ["Important"]}
    b = await make_tab(client, user, "Later")
    assert b["sortOrder"] == 1
    r = await client.put(f"/api/insight-tabs/{a['id']}", headers=h, json={"enabled": False, "name": "Job"})
    assert r.status_code == 200 and r.json()["tab"]["enabled"] is False and r.json()["tab"]["name"] == "Job"
    assert r.json()["tab"]["filter"] == a["filter"]  # untouched
    r = await client.put(f"/api/insight-tabs/{a['id']}", headers=h, json={"filter": {"conditions": [MENTIONS_ME]}})
    assert r.json()["tab"]["filter"] == {"match": "all", "conditions": [MENTIONS_ME]}
    tabs = (await client.get("/api/insight-tabs", headers=h)).json()["tabs"]
    assert [t["name"] for t in tabs] == ["Job", "Later"]
    r = await client.delete(f"/api/insight-tabs/{b['id']}", headers=h)
    assert r.status_code == 200 and r.json() == {"success": True}
    assert (await client.delete(f"/api/insight-tabs/{b['id']}", headers=h)).status_code == 404
    assert [t["id"] for t in (await client.get("/api/insight-tabs", headers=h)).json()["tabs"]] == [a["id"]]
    assert (await client.get("/api/insight-tabs")).status_code == 401


BAD_FILTERS: list[tuple[Any, str]] = [
    ({"match": "all", "conditions": [{"kind": "topic", "values": ["x"]}]}, "filter.conditions.0"),
    ({"conditions": [MENTIONS_ME, {"kind": "time_window", "withinHours": 0}]}, "filter.conditions.1.time_window.withinHours"),
    ({"conditions": [{"kind": "time_window", "withinHours": 721}]}, "time_window.withinHours"),
    ({"conditions": [{"kind": "importance", "values": ["bogus"]}]}, "filter.conditions.0.importance.values"),
    ({"conditions": [{"kind": "urgency", "values": ["yesterday"]}]}, "filter.conditions.0.urgency.values"),
    ({"conditions": []}, "filter.conditions"),
    ({"conditions": [{"kind": "mentions_me", "values": ["me"]}]}, "filter.conditions.0.mentions_me.values"),
    ({"match": "some", "conditions": [MENTIONS_ME]}, "filter.match"),
    ({"conditions": [{"kind": "platform", "values": []}]}, "filter.conditions.0.platform.values"),
    ({"conditions": [{"kind": "keyword", "values": ["x"], "fields": ["body"]}]}, "filter.conditions.0.keyword.fields"),
    ({"conditions": [{"kind": "has_tasks", "values": ["chores"]}]}, "filter.conditions.0.has_tasks.values"),
    ({"conditions": [{"kind": "people", "values": ["x"], "match": "most"}]}, "filter.conditions.0.people.match"),
    ({"conditions": [{"kind": "category", "values": ["x" * 121]}]}, "filter.conditions.0.category.values"),
    ({"conditions": [MENTIONS_ME] * 13}, "filter.conditions"),
    ("mentions_me", "filter"),
    (None, "filter"),
]


async def test_bad_filters_are_400_naming_the_condition_and_store_nothing(hub: Any, client: httpx.AsyncClient, user: dict) -> None:
    h, uid = user["headers"], user["user"]["id"]
    kept = await make_tab(client, user, "Kept")
    for flt, where in BAD_FILTERS:
        for method, path, body in (
            ("POST", "/api/insight-tabs", {"name": "Bad", "filter": flt}),
            ("PUT", f"/api/insight-tabs/{kept['id']}", {"filter": flt}),
            ("POST", "/api/insight-tabs/preview", {"filter": flt}),
        ):
            r = await client.request(method, path, headers=h, json=body)
            assert r.status_code == 400, (flt, path, r.text)
            err = r.json()
            assert err["code"] == "invalid_input" and where in err["cause"], (flt, err)
    for body in ({"name": "", "filter": {"conditions": [MENTIONS_ME]}}, {"filter": {"conditions": [MENTIONS_ME]}}, {"name": "x"}):
        assert (await client.post("/api/insight-tabs", headers=h, json=body)).status_code == 400
    assert (await client.put(f"/api/insight-tabs/{kept['id']}", headers=h, json={})).status_code == 400
    assert await tab_count(hub, uid) == 1
    tabs = (await client.get("/api/insight-tabs", headers=h)).json()["tabs"]
    assert tabs == [kept]


async def test_reorder_seed_post_and_openloomi_put(hub: Any, client: httpx.AsyncClient, user: dict) -> None:
    h = user["headers"]
    a, b, c = [await make_tab(client, user, name) for name in ("A", "B", "C")]
    r = await client.post("/api/insight-tabs/reorder", headers=h, json={"tabIds": [c["id"], a["id"], b["id"]]})
    assert r.status_code == 200 and [t["name"] for t in r.json()["tabs"]] == ["C", "A", "B"]
    r = await client.put("/api/insight-tabs/reorder", headers=h, json={"tabIds": [b["id"]]})
    assert r.status_code == 200 and r.json()["success"] is True
    assert [t["name"] for t in (await client.get("/api/insight-tabs", headers=h)).json()["tabs"]] == ["B", "C", "A"]
    assert [t["sortOrder"] for t in (await client.get("/api/insight-tabs", headers=h)).json()["tabs"]] == [0, 1, 2]
    other = await register(client)
    theirs = await make_tab(client, other, "Theirs")
    for body, status in (({"tabIds": [a["id"], theirs["id"]]}, 404), ({"tabIds": [a["id"], a["id"]]}, 400),
                         ({"tabIds": "A"}, 400), ({}, 400)):
        r = await client.post("/api/insight-tabs/reorder", headers=h, json=body)
        assert r.status_code == status, (body, r.text)
    assert [t["name"] for t in (await client.get("/api/insight-tabs", headers=h)).json()["tabs"]] == ["B", "C", "A"]
    assert [t["id"] for t in (await client.get("/api/insight-tabs", headers=other["headers"])).json()["tabs"]] == [theirs["id"]]


async def test_other_peoples_tabs_are_404(hub: Any, client: httpx.AsyncClient, user: dict) -> None:
    other = await register(client)
    theirs = await make_tab(client, other, "Private")
    h = user["headers"]
    for method, path, body in (
        ("PUT", f"/api/insight-tabs/{theirs['id']}", {"name": "Mine now"}),
        ("DELETE", f"/api/insight-tabs/{theirs['id']}", None),
        ("GET", f"/api/insight-tabs/{theirs['id']}/insights", None),
    ):
        r = await client.request(method, path, headers=h, json=body)
        assert r.status_code == 404 and r.json()["code"] == "tab_not_found", (path, r.text)
    assert "Private" not in (await client.get("/api/insight-tabs", headers=h)).text
    assert (await client.get("/api/insight-tabs", headers=other["headers"])).json()["tabs"] == [theirs]
