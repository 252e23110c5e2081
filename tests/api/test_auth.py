"""Auth module end to end over HTTP, on both databases."""

from __future__ import annotations

import base64
import json

import httpx
import pytest
import sqlalchemy as sa

from api.auth import COOKIE
from store.schema import sessions, users
from tests.conftest import register


async def test_register_login_and_current_user(client: httpx.AsyncClient) -> None:
    created = await register(client)
    login = await client.post("/api/remote-auth/login", json={"email": created["email"].upper(), "password": created["password"]})
    assert login.status_code == 200
    body = login.json()
    assert body["user"] == {**created["user"]}
    assert set(body["user"]) >= {"id", "email", "name"}
    assert COOKIE in login.cookies
    parts = body["token"].split(".")
    assert len(parts) == 3
    header = json.loads(base64.urlsafe_b64decode(parts[0] + "=="))
    payload = json.loads(base64.b64decode(parts[1]))  # plain base64 on purpose: the seed's `base64 -d`
    assert header["alg"] == "HS256"
    assert payload["sub"] == created["user"]["id"] and payload["email"] == created["email"]
    assert payload["exp"] - payload["iat"] == 90 * 86400

    client.cookies.clear()
    me = await client.get("/api/remote-auth/user", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200 and me.json()["email"] == created["email"]
    # the session cookie alone authenticates too
    cookie_me = await client.get("/api/remote-auth/user", cookies={COOKIE: body["token"]})
    assert cookie_me.json()["id"] == created["user"]["id"]


async def test_unauthenticated_and_forged_tokens_get_401(client: httpx.AsyncClient, user: dict) -> None:
    assert (await client.get("/api/remote-auth/user")).status_code == 401
    header, payload, sig = user["token"].split(".")
    forged_payload = base64.urlsafe_b64encode(json.dumps({"sub": "user_x", "sid": "s", "iat": 1, "exp": 9999999999}).encode()).decode().rstrip("=")
    for bad in (f"{header}.{forged_payload}.{sig}", "not-a-jwt", user["token"][:-2] + "xx"):
        r = await client.get("/api/remote-auth/user", headers={"Authorization": f"Bearer {bad}"})
        assert r.status_code == 401
        assert r.json() == {"error": "Not authenticated", "code": "unauthorized", "cause": "missing, expired or revoked token"}


async def test_refresh_returns_a_working_token(client: httpx.AsyncClient, user: dict) -> None:
    r = await client.post("/api/remote-auth/refresh", headers=user["headers"])
    assert r.status_code == 200 and r.json()["success"] is True
    fresh = r.json()["token"]
    client.cookies.clear()
    assert (await client.get("/api/remote-auth/user", headers={"Authorization": f"Bearer {fresh}"})).status_code == 200


async def test_update_user_and_bad_input_changes_nothing(client: httpx.AsyncClient, user: dict) -> None:
    r = await client.put("/api/remote-auth/user", headers=user["headers"], json={"name": "Ada", "avatarUrl": "https://x.test/a.png"})
    assert r.status_code == 200 and r.json()["name"] == "Ada" and r.json()["avatarUrl"] == "https://x.test/a.png"
    for bad in ({"name": ""}, {"avatarUrl": "javascript:alert(1)"}, {}, {"name": "x" * 201}):
        r = await client.put("/api/remote-auth/user", headers=user["headers"], json=bad)
        assert r.status_code == 400, bad
        assert r.json()["code"] == "invalid_input" and "error" in r.json()
    r = await client.put("/api/remote-auth/user", headers=user["headers"], content=b"{not json")
    assert r.status_code == 400 and r.json()["code"] == "invalid_json"
    me = await client.get("/api/remote-auth/user", headers=user["headers"])
    assert me.json()["name"] == "Ada" and me.json()["avatarUrl"] == "https://x.test/a.png"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"email": "no-at-sign", "password": "long enough password"},
        {"email": "a@b.c", "password": "short"},
        {"email": "a@b.c"},
        {"email": 5, "password": "long enough password"},
        ["a list"],
    ],
)
async def test_register_rejects_bad_input_and_stores_nothing(client: httpx.AsyncClient, hub, body) -> None:
    async with hub.engine.connect() as conn:
        before = (await conn.execute(sa.select(sa.func.count()).select_from(users))).scalar()
    r = await client.post("/api/remote-auth/register", json=body)
    assert r.status_code == 400
    assert set(r.json()) <= {"error", "code", "cause"} and r.json()["code"] == "invalid_input"
    assert "long enough password" not in r.text  # values are never echoed
    async with hub.engine.connect() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(users))).scalar() == before


async def test_duplicate_email_is_rejected(client: httpx.AsyncClient, user: dict) -> None:
    r = await client.post("/api/remote-auth/register", json={"email": user["email"], "password": "another password"})
    assert r.status_code == 400 and r.json()["code"] == "email_taken"


async def test_repeated_failed_logins_answer_429(client: httpx.AsyncClient, user: dict) -> None:
    for _ in range(5):
        r = await client.post("/api/remote-auth/login", json={"email": user["email"], "password": "wrong password"})
        assert r.status_code == 401 and r.json()["code"] == "invalid_credentials"
    r = await client.post("/api/remote-auth/login", json={"email": user["email"], "password": user["password"]})
    assert r.status_code == 429 and r.json()["code"] == "rate_limited"
    assert int(r.headers["retry-after"]) > 0


async def test_unknown_email_and_wrong_password_look_the_same(client: httpx.AsyncClient, user: dict) -> None:
    a = await client.post("/api/remote-auth/login", json={"email": "nobody@example.com", "password": "whatever1"})
    b = await client.post("/api/remote-auth/login", json={"email": user["email"], "password": "whatever1"})
    assert a.status_code == b.status_code == 401 and a.json() == b.json()


async def test_set_token_and_clear_cookie_revokes_session(client: httpx.AsyncClient, user: dict) -> None:
    r = await client.post("/api/auth/set-token", json={"token": user["token"]})
    assert r.status_code == 200 and COOKIE in r.cookies
    assert (await client.get("/api/remote-auth/user")).status_code == 200  # via cookie
    r = await client.post("/api/auth/clear-auth-cookie", headers={"origin": str(client.base_url).rstrip("/")})  # as a browser sends it
    assert r.status_code == 200
    client.cookies.clear()
    assert (await client.get("/api/remote-auth/user", headers=user["headers"])).status_code == 401
    assert (await client.post("/api/auth/set-token", json={"token": "x" * 40})).status_code == 401


async def test_subscription(client: httpx.AsyncClient, user: dict) -> None:
    r = await client.get("/api/remote-auth/subscription", headers=user["headers"])
    assert r.status_code == 200 and r.json()["status"] == "active"


@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", "/api/auth/poll-{p}"),
        ("POST", "/api/remote-auth/oauth/{p}"),
        ("POST", "/api/remote-auth/oauth/{p}/exchange"),
    ],
)
async def test_oauth_login_providers_unknown_or_unconfigured(client: httpx.AsyncClient, method: str, path: str) -> None:
    body = {"code": "c", "state": "s"}
    r = await client.request(method, path.format(p="myspace"), json=body)
    assert r.status_code == 404 and r.json()["code"] == "unknown_provider"
    r = await client.request(method, path.format(p="github"), json=body)
    assert r.status_code == 400 and r.json()["code"] == "provider_not_configured"
    assert "LOOMI_GITHUB_CLIENT_ID" in r.json()["cause"]


async def test_passwords_and_tokens_are_not_stored_in_plain_text(client: httpx.AsyncClient, hub, user: dict) -> None:
    async with hub.engine.connect() as conn:
        row = (await conn.execute(users.select().where(users.c.id == user["user"]["id"]))).mappings().one()
        session_rows = (await conn.execute(sessions.select().where(sessions.c.user_id == user["user"]["id"]))).mappings().all()
    dumped = repr(dict(row)) + repr([dict(s) for s in session_rows])
    assert user["password"] not in dumped and user["token"] not in dumped
    assert row["password_hash"].startswith("$argon2id$")


async def test_unknown_route_and_method_use_error_format(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/nope")
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = await client.delete("/api/remote-auth/login")
    assert r.status_code == 405 and r.json()["code"] == "method_not_allowed"
