"""User module and feedback, on both databases."""

from __future__ import annotations

import httpx
import sqlalchemy as sa

from store.schema import feedback
from tests.conftest import register


async def test_identity_roundtrip(client: httpx.AsyncClient, user: dict) -> None:
    r = await client.get("/api/user/identity", headers=user["headers"])
    assert r.status_code == 200 and r.json()["email"] == user["email"] and r.json()["hasPassword"] is True
    r = await client.put("/api/user/identity", headers=user["headers"], json={"timezone": "Europe/Paris", "name": "Grace", "bio": "hi"})
    assert r.status_code == 200
    again = (await client.get("/api/user/identity", headers=user["headers"])).json()
    assert again["timezone"] == "Europe/Paris" and again["name"] == "Grace" and again["bio"] == "hi"
    r = await client.put("/api/user/identity", headers=user["headers"], json={"language": "fr"})
    again = (await client.get("/api/user/identity", headers=user["headers"])).json()
    assert again["language"] == "fr" and again["timezone"] == "Europe/Paris"  # only given fields change


async def test_identity_bad_input_changes_nothing(client: httpx.AsyncClient, user: dict) -> None:
    other = await register(client)
    before = (await client.get("/api/user/identity", headers=user["headers"])).json()
    for bad in ({"email": "not an email"}, {"timezone": "x" * 65}, {}, {"email": other["email"]}):
        r = await client.put("/api/user/identity", headers=user["headers"], json=bad)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["code"] in ("invalid_input", "email_taken")
    assert (await client.get("/api/user/identity", headers=user["headers"])).json() == before


async def test_users_never_see_each_other(client: httpx.AsyncClient, user: dict) -> None:
    other = await register(client)
    await client.put("/api/user/identity", headers=other["headers"], json={"bio": "secret bio"})
    mine = await client.get("/api/user/identity", headers=user["headers"])
    assert mine.json()["id"] == user["user"]["id"] and mine.json()["bio"] != "secret bio"


async def test_password_change_revokes_older_tokens(client: httpx.AsyncClient, user: dict) -> None:
    second = await client.post("/api/remote-auth/login", json={"email": user["email"], "password": user["password"]})
    old_tokens = [user["token"], second.json()["token"]]
    client.cookies.clear()
    r = await client.put("/api/user/password", headers=user["headers"], json={"currentPassword": "wrong one!", "newPassword": "new password 123"})
    assert r.status_code == 403
    r = await client.put("/api/user/password", headers=user["headers"], json={"newPassword": "new password 123"})
    assert r.status_code == 400
    r = await client.put("/api/user/password", headers=user["headers"], json={"currentPassword": user["password"], "newPassword": "short"})
    assert r.status_code == 400
    r = await client.put("/api/user/password", headers=user["headers"], json={"currentPassword": user["password"], "newPassword": "new password 123"})
    assert r.status_code == 200
    fresh = r.json()["token"]
    client.cookies.clear()
    for token in old_tokens:
        assert (await client.get("/api/user/identity", headers={"Authorization": f"Bearer {token}"})).status_code == 401
    assert (await client.get("/api/user/identity", headers={"Authorization": f"Bearer {fresh}"})).status_code == 200
    old_login = await client.post("/api/remote-auth/login", json={"email": user["email"], "password": user["password"]})
    assert old_login.status_code == 401
    new_login = await client.post("/api/remote-auth/login", json={"email": user["email"], "password": "new password 123"})
    assert new_login.status_code == 200


async def test_entitlements(client: httpx.AsyncClient, user: dict) -> None:
    r = await client.get("/api/user/entitlements", headers=user["headers"])
    assert r.status_code == 200 and r.json()["features"]["ai"] is True


async def test_feedback_is_stored_for_the_caller(client: httpx.AsyncClient, hub, user: dict) -> None:
    r = await client.post("/api/remote-feedback", headers=user["headers"], json={"content": "Feedback message", "email": "user@example.com"})
    assert r.status_code == 200 and r.json()["success"] is True
    async with hub.engine.connect() as conn:
        row = (await conn.execute(feedback.select().where(feedback.c.id == r.json()["id"]))).mappings().one()
    assert row["user_id"] == user["user"]["id"] and row["content"] == "Feedback message"
    for bad in ({"content": ""}, {"email": "user@example.com"}, {"content": "x", "email": "bad"}):
        assert (await client.post("/api/remote-feedback", headers=user["headers"], json=bad)).status_code == 400
    assert (await client.post("/api/remote-feedback", json={"content": "anon"})).status_code == 401
    async with hub.engine.connect() as conn:
        count = (await conn.execute(sa.select(sa.func.count()).select_from(feedback).where(feedback.c.user_id == user["user"]["id"]))).scalar()
    assert count == 1


async def test_healthz_and_openapi(client: httpx.AsyncClient, backend: str) -> None:
    r = await client.get("/healthz")
    assert r.status_code == 200 and r.json()["ok"] is True
    assert r.json()["store"]["dialect"] == backend and r.json()["redis"]["ok"] is True
    spec = (await client.get("/openapi.json")).json()
    assert spec["openapi"].startswith("3.")
    login = spec["paths"]["/api/remote-auth/login"]["post"]
    body_ref = login["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    assert set(spec["components"]["schemas"][body_ref]["required"]) == {"email", "password"}
    assert "/api/user/identity" in spec["paths"] and {"get", "put"} <= set(spec["paths"]["/api/user/identity"])
