"""The brief and tabs over insights the hub generated itself: conversations go in through the
import route, `POST /api/insights/generate` makes the insights, and the person's override and pin
survive the insight being regenerated from new messages. Both databases."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import httpx

from ai.insights.brief import categorize
from store.ids import now_ms
from tests.insights.conftest import load, msg


def millis(value: str | None) -> int | None:
    return None if value is None else int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)


def as_row(insight: dict[str, Any]) -> dict[str, Any]:
    """The API's insight back in column names: what the score reads."""
    return {
        "importance": insight["importance"], "urgency": insight["urgency"], "my_tasks": insight["myTasks"],
        "waiting_for_me": insight["waitingForMe"], "waiting_for_others": insight["waitingForOthers"],
        "is_unreplied": insight["isUnreplied"], "due_date": millis(insight["dueDate"]), "as_of": millis(insight["asOf"]),
    }


def conversations() -> list[dict]:
    g = dict(chat="C-eng", chat_type="group")
    return [
        msg(1, "Hey Sam, can you send me the Q3 deck by Thursday? It's urgent"),
        msg(2, "Also, are you free for lunch on Friday?"),
        msg(1, "Deploy is going out at 4pm", sender=("U-kim", "Kim"), **g),
        msg(2, "nice weather today", sender=("U-raj", "Raj"), **g),
    ]


async def generated(client: httpx.AsyncClient, user: dict) -> dict[str, dict]:
    r = await client.post("/api/insights/generate", json={}, headers=user["headers"])
    assert r.status_code == 200, r.text
    return {i["chatId"]: i for i in r.json()["insights"]}


async def test_brief_over_generated_insights(client: httpx.AsyncClient, user: dict) -> None:
    await load(client, user, conversations())
    made = await generated(client, user)
    assert set(made) == {"D-bob", "C-eng"}
    h = user["headers"]
    listed = (await client.get("/api/insights/brief-categories", headers=h)).json()["data"]
    by_id = {i["insightId"]: i for i in listed["items"]}
    assert set(by_id) == {made["D-bob"]["id"], made["C-eng"]["id"]}
    now = now_ms()
    for insight in made.values():
        expected = categorize(as_row(insight), now)  # the documented score, from the API's own fields
        item = by_id[insight["id"]]
        assert (item["score"], item["computedCategory"], item["category"]) == (expected.score, expected.category, expected.category)
    # The chat that asks something of the person ranks above the small talk.
    assert listed["items"][0]["insightId"] == made["D-bob"]["id"]
    assert by_id[made["D-bob"]["id"]]["score"] > by_id[made["C-eng"]["id"]]["score"]


async def test_overrides_and_pins_survive_regeneration(client: httpx.AsyncClient, user: dict) -> None:
    await load(client, user, conversations())
    made = await generated(client, user)
    h = user["headers"]
    dm, group = made["D-bob"]["id"], made["C-eng"]["id"]
    await client.post("/api/insights/brief-categories/sync", headers=h, json={"insightIds": [dm, group]})
    await client.post("/api/insights/brief-categories/overrides", headers=h, json={"overrides": {dm: "archive"}})
    await client.post("/api/insights/brief-categories/pinned", headers=h, json={"insightId": group, "category": "urgent"})
    # New messages: the insights are recomputed (same ids, upserted by dedupe key).
    await load(client, user, [msg(3, "Any news on the deck? The client is waiting, please reply today"),
                              msg(3, "@sam.doe please approve the release notes", sender=("U-kim", "Kim"), chat="C-eng",
                                  chat_type="group")])
    again = await generated(client, user)
    assert again["D-bob"]["id"] == dm and again["C-eng"]["id"] == group
    assert again["D-bob"]["updatedAt"] >= made["D-bob"]["updatedAt"]
    await client.post("/api/insights/brief-categories/sync", headers=h,
                      json={"insightIds": [dm, group], "categories": {dm: "urgent", group: "monitor"}})
    listed = (await client.get("/api/insights/brief-categories", headers=h)).json()["data"]
    assert listed["categories"][dm] == "archive" and listed["categories"][group] == "urgent"
    assert listed["pinnedIds"] == [group]
    over = (await client.post("/api/insights/brief-categories/overrides", headers=h, json={"insights": [again["D-bob"], again["C-eng"]]})).json()
    assert over["data"]["overrides"] == {dm: "archive", group: "urgent"}


async def test_tabs_over_generated_insights(client: httpx.AsyncClient, user: dict) -> None:
    await load(client, user, conversations())
    made = await generated(client, user)
    h = user["headers"]
    cases = [
        ({"conditions": [{"kind": "has_tasks"}]}, {c for c, i in made.items() if i["myTasks"] or i["waitingForMe"] or i["waitingForOthers"]}),
        ({"conditions": [{"kind": "groups", "values": ["c-eng"]}]}, {"C-eng"}),
        ({"conditions": [{"kind": "people", "values": ["kim"]}]}, {c for c, i in made.items() if any("kim" in p.lower() for p in i["people"])}),
        ({"conditions": [{"kind": "platform", "values": ["slack"]}, {"kind": "keyword", "values": ["deck"]}]},
         {c for c, i in made.items() if "deck" in (i["title"] + i["description"] + str(i["myTasks"]) + str(i["waitingForMe"])).lower()}),
    ]
    assert cases[0][1]  # the DM asks for the deck: some task was found
    for flt, expected in cases:
        tab = (await client.post("/api/insight-tabs", headers=h, json={"name": "t", "filter": flt})).json()["tab"]
        body = (await client.get(f"/api/insight-tabs/{tab['id']}/insights", headers=h)).json()
        assert {i["chatId"] for i in body["insights"]} == expected, flt
