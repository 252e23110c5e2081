"""The isolation matrix: another person's ids are a 404, never a 403 that confirms they
exist, and never their data.

Every route with an id in its path is discovered from the app (`routes.walk`); each id
parameter must map to a kind of object user A can own (KINDS below), so a route added with a
new kind of id fails `test_every_id_parameter_has_a_kind` until someone adds a maker for it.
User A makes one object of every kind (carrying a marker word), user B calls every id route
with A's ids and every method, and must get 404 with neither the marker nor A's ids in the
body. Afterwards A reads each object again: unchanged.

Accounts and sign-in flows are made through the store and Redis rather than a platform's
sign-in (their API paths need a platform; the conformance suite drives those); everything
else through the API.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

import httpx
import sqlalchemy as sa

from store import accounts as account_store
from store.model import AccountSpec
from store.schema import messages
from tests.conftest import register
from tests.insights.test_brief import insert_insight
from tests.security.routes import params, walk
from tests.security.test_unauthenticated import PUBLIC

# path parameters that name a shared thing, not something a person owns
NOT_OWNED = {"platform": "a platform name", "provider": "a sign-in provider", "model": "the shared model catalogue"}
# id parameter -> kind of object
KINDS = {
    "account_id": "account", "login_id": "login", "insightId": "insight", "tabId": "tab", "documentId": "document",
    "file_id": "ai_file", "id": "file", "taskId": "upload", "path": "workspace_file", "skillId": "skill",
    "characterId": "character", "chatId": "chat",
}
ID_ROUTES = [(m, p) for m, p, _ in walk() if (m, p) not in PUBLIC and set(params(p)) - set(NOT_OWNED)]
# catch-all routes take any path, not an id of anything: /api/ai/v1/{path} is the OpenAI-compatible 404
CATCH_ALL = {("DELETE", "/api/ai/v1/{path}"), ("GET", "/api/ai/v1/{path}"), ("PATCH", "/api/ai/v1/{path}"),
             ("POST", "/api/ai/v1/{path}"), ("PUT", "/api/ai/v1/{path}")}
# a valid body for writes, so B's request reaches the ownership check rather than a 400
BODIES: dict[str, Any] = {
    "/api/insight-tabs/{tabId}": {"name": "B was here"},
    "/api/insights/{insightId}/brief-category": {"category": "urgent"},
    "/api/workspace/skills/{skillId}": {"description": "B was here"},
    "/api/chat/characters/{characterId}": {"name": "B was here"},
    "/api/chat/{chatId}": {"title": "B was here"},
    "/api/chat/{chatId}/messages": {"content": "B was here"},
    "/api/chat/{chatId}/send": {"content": "B was here"},
    "/api/workspace/file/{path}": {"content": "B was here"},
}


@dataclass
class Owned:
    """A's objects: path values by parameter, and how A reads each back."""

    marker: str
    insight_chat: str = ""
    values: dict[str, str] = field(default_factory=dict)
    reads: dict[str, str] = field(default_factory=dict)  # kind -> a GET path that shows it to A


async def _check(r: httpx.Response, status: int = 200) -> dict[str, Any]:
    assert r.status_code in (status, 201), r.text
    return r.json()


async def make_world(client: httpx.AsyncClient, hub: Any, a: dict[str, Any]) -> Owned:
    h, mark = a["headers"], "zqmark" + secrets.token_hex(4)
    o = Owned(mark)
    uid = a["user"]["id"]
    async with hub.engine.begin() as conn:
        row = await account_store.upsert_account(conn, hub.vault, uid, "slack", AccountSpec(
            external_id="T" + secrets.token_hex(3), name=f"{mark} workspace", credentials={"token": "xoxb-" + mark}))
    o.values["account_id"] = row["id"]
    o.reads["account"] = "/api/integrations/accounts"
    login_id = secrets.token_urlsafe(16)
    key = f"loomi:login:{login_id}"
    await hub.redis.set(key, hub.vault.encrypt({"user_id": uid, "platform": "telegram_user", "state": {"m": mark}}, bound_to=key), ex=600)
    o.values["login_id"] = login_id
    insight = await insert_insight(hub, uid, title=f"{mark} insight")
    o.values["insightId"] = insight["id"]
    o.insight_chat = insight["chat_id"]
    o.reads["insight"] = f"/api/insights/{insight['id']}/brief-category"
    tab = (await _check(await client.post("/api/insight-tabs", headers=h, json={
        "name": mark, "filter": {"match": "all", "conditions": [{"kind": "mentions_me", "values": []}]}})))["tab"]
    o.values["tabId"] = tab["id"]
    o.reads["tab"] = "/api/insight-tabs"
    doc = (await _check(await client.post("/api/rag/upload", headers=h, files={"file": ("a.txt", f"{mark} document".encode(), "text/plain")})))["document"]
    o.values["documentId"] = doc["id"]
    o.reads["document"] = f"/api/rag/documents/{doc['id']}"
    ai_file = await _check(await client.post("/api/ai/v1/files", headers=h, data={"purpose": "assistants"},
                                             files={"file": ("n.txt", f"{mark} ai file".encode(), "text/plain")}))
    o.values["file_id"] = ai_file["id"]
    o.reads["ai_file"] = f"/api/ai/v1/files/{ai_file['id']}/content"
    up = await _check(await client.post("/api/files/upload", headers=h, files={"file": ("f.txt", f"{mark} file".encode(), "text/plain")}))
    file_id = (up.get("file") or up)["id"]
    o.values["id"] = file_id
    o.reads["file"] = f"/api/files/{file_id}"
    init = await _check(await client.post("/api/rag/upload/init", headers=h, json={"fileName": f"{mark}.txt", "size": 5, "sha256": "0" * 64}))
    o.values["taskId"] = init.get("uploadId") or init.get("taskId") or init["id"]
    o.reads["upload"] = f"/api/storage/sessions/{o.values['taskId']}"
    await _check(await client.put(f"/api/workspace/file/{mark}/notes.txt", headers=h, content=f"{mark} workspace".encode()))
    o.values["path"] = f"{mark}/notes.txt"
    o.reads["workspace_file"] = f"/api/workspace/file/{mark}/notes.txt"
    skill = (await _check(await client.post("/api/workspace/skills", headers=h, json={"name": mark, "description": mark, "content": "Do it."})))["skill"]
    o.values["skillId"] = skill["id"]
    o.reads["skill"] = f"/api/workspace/skills/{skill['id']}"
    character = await _check(await client.post("/api/chat/characters", headers=h, json={"name": mark, "systemPrompt": f"{mark} prompt"}))
    character = character.get("character", character)
    o.values["characterId"] = character["id"]
    o.reads["character"] = f"/api/chat/characters/{character['id']}"
    chat = await _check(await client.post("/api/chat", headers=h, json={"title": f"{mark} chat"}))
    chat = chat.get("chat", chat)
    o.values["chatId"] = chat["id"]
    await _check(await client.post(f"/api/chat/{chat['id']}/messages", headers=h, json={"content": f"{mark} said"}))
    o.reads["chat"] = f"/api/chat/{chat['id']}/messages"
    return o


def test_every_id_parameter_has_a_kind() -> None:
    """A new route with a new kind of id fails here until its maker is added to make_world."""
    unknown = sorted({(p, name) for _, p in ID_ROUTES for name in params(p) if name not in KINDS and name not in NOT_OWNED})
    assert not unknown, f"id parameters with no kind: {unknown}"
    assert len({m_p for m_p in ID_ROUTES if m_p not in CATCH_ALL}) >= 30


async def _snapshot(client: httpx.AsyncClient, a: dict[str, Any], o: Owned) -> dict[str, str]:
    shots = {}
    for kind, path in o.reads.items():
        r = await client.get(path, headers=a["headers"])
        assert r.status_code == 200, f"A cannot read its own {kind}: {r.status_code} {r.text[:200]}"
        shots[kind] = r.text
    return shots


async def test_another_persons_ids_are_404_and_change_nothing(client: httpx.AsyncClient, hub: Any) -> None:
    a, b = await register(client), await register(client)
    o = await make_world(client, hub, a)
    assert set(o.values) == set(KINDS), set(KINDS) - set(o.values)
    login_before = await hub.redis.get(f"loomi:login:{o.values['login_id']}")
    before = await _snapshot(client, a, o)
    samples = {**o.values, "platform": "slack", "provider": "google", "model": "x"}
    samples_login = {**samples, "platform": "telegram_user"}
    failures: list[str] = []
    tried = 0
    for method, path in ID_ROUTES:
        if (method, path) in CATCH_ALL:
            continue
        if method == "PUT" and path == "/api/workspace/file/{path}":
            continue  # a PUT writes B's own workspace: checked below
        url = path
        for name in params(path):
            url = url.replace("{" + name + "}", (samples_login if "login_id" in path else samples)[name])
        kw: dict[str, Any] = {}
        if method in ("POST", "PUT", "PATCH"):
            kw["json"] = BODIES.get(path, {})
        client.cookies.clear()
        r = await client.request(method, url, headers=b["headers"], **kw)
        tried += 1
        leaked = [v for v in (o.marker, *o.values.values()) if v in r.text and v not in url]
        if r.status_code != 404 or leaked:
            failures.append(f"{method} {path} -> {r.status_code} {r.text[:160]} leaked={leaked}")
    assert not failures, "B reached A's objects:\n" + "\n".join(failures)
    # B's lists hold none of A's objects either
    for path in ["/api/integrations/accounts", "/api/insight-tabs", "/api/rag/documents", "/api/ai/v1/files", "/api/files/list",
                 "/api/storage/sessions", "/api/workspace/skills", "/api/chat/characters", "/api/chat", "/api/insights",
                 "/api/workspace/files"]:
        r = await client.get(path, headers=b["headers"])
        assert r.status_code == 200 and o.marker not in r.text, f"{path}: {r.status_code} {r.text[:200]}"
    # a workspace path is per person: B writing the same path writes B's own file, never A's
    r = await client.put(f"/api/workspace/file/{o.values['path']}", headers=b["headers"], content=b"B's own")
    assert r.status_code in (200, 201), r.text
    assert (await client.get(f"/api/workspace/file/{o.values['path']}", headers=b["headers"])).content == b"B's own"
    after = await _snapshot(client, a, o)
    assert after == before
    assert await hub.redis.get(f"loomi:login:{o.values['login_id']}") == login_before
    assert tried >= 30


async def test_ids_in_bodies_and_queries_are_404_or_empty(client: httpx.AsyncClient, hub: Any) -> None:
    """Ids that travel in a body or a query string: B naming A's is a 404, or finds nothing."""
    a, b = await register(client), await register(client)
    o = await make_world(client, hub, a)
    h = b["headers"]
    before = await _snapshot(client, a, o)
    saved = await client.post("/api/chat/save-messages", headers=h, json={"chatId": o.values["chatId"], "messages": [{"id": "m1", "role": "user", "content": "B"}]})
    assert saved.status_code == 404 and o.marker not in saved.text, saved.text
    with_character = await client.post("/api/chat", headers=h, json={"characterId": o.values["characterId"]})
    assert with_character.status_code == 404 and o.marker not in with_character.text, with_character.text
    send = await client.post("/api/messages", headers=h, json={"accountId": o.values["account_id"], "chatId": "C1", "text": "as A?"})
    assert send.status_code == 404 and o.marker not in send.text, send.text  # nothing sent through A's account
    category = await client.post("/api/insights/brief-categories/pinned", headers=h, json={"insightId": o.values["insightId"]})
    assert o.marker not in category.text and category.status_code in (200, 404), category.text
    synced = await client.post("/api/insights/brief-categories/sync", headers=h, json={"insightIds": [o.values["insightId"]]})
    assert o.marker not in synced.text and synced.status_code in (200, 404), synced.text
    reordered = await client.post("/api/insight-tabs/reorder", headers=h, json={"tabIds": [o.values["tabId"]]})
    assert o.marker not in reordered.text and reordered.status_code in (200, 400, 404), reordered.text
    preview = await client.post("/api/insight-tabs/preview", headers=h, json={"filter": {"match": "all", "conditions": [{"kind": "mentions_me", "values": []}]}})
    assert preview.status_code == 200 and o.marker not in preview.text, preview.text
    for path, query in [("/api/messages", {"accountId": o.values["account_id"]}), ("/api/chat-insights", {"chatId": o.insight_chat}),
                        ("/api/rag/search", {"query": o.marker}), ("/api/messages", {"q": o.marker})]:
        r = await client.get(path, headers=h, params=query)
        shown = r.text.replace(f'"{o.marker}"', "")  # the query echoed back is not a leak
        assert r.status_code in (200, 404) and o.marker not in shown, f"{path} {query}: {r.status_code} {r.text[:200]}"
    async with hub.engine.connect() as conn:
        sent = (await conn.execute(sa.select(sa.func.count()).select_from(messages).where(messages.c.account_id == o.values["account_id"]))).scalar_one()
    assert sent == 0
    mine = await client.get("/api/rag/search", headers=a["headers"], params={"query": o.marker})
    assert mine.status_code == 200 and o.marker in mine.text  # the search that found nothing for B does find it for A
    assert (await _snapshot(client, a, o)) == before
