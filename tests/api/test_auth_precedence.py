"""Which credential wins, and cookie-authenticated writes a cross-site page could forge (issue 7, items 2 and 5)."""

from __future__ import annotations

import httpx

from api.auth import COOKIE
from tests.conftest import register


async def test_bearer_token_wins_over_a_session_cookie(client: httpx.AsyncClient) -> None:
    alice, bob = await register(client), await register(client)
    client.cookies.set(COOKIE, alice["token"])
    # Bob's token with Alice's cookie in the jar: Bob is calling
    me = await client.get("/api/remote-auth/user", headers=bob["headers"])
    assert me.status_code == 200 and me.json()["id"] == bob["user"]["id"]
    # a bad token is not rescued by the cookie
    bad = await client.get("/api/remote-auth/user", headers={"Authorization": "Bearer nope.nope.nope"})
    assert bad.status_code == 401
    # the cookie alone still works
    assert (await client.get("/api/remote-auth/user")).json()["id"] == alice["user"]["id"]
    client.cookies.clear()


async def _name(client: httpx.AsyncClient, user: dict) -> str:
    return (await client.get("/api/remote-auth/user", headers=user["headers"])).json()["name"]


async def test_cookie_write_needs_json_or_same_origin(client: httpx.AsyncClient, server) -> None:
    victim = await register(client)
    cookies = {COOKIE: victim["token"]}
    forged = b'{"name": "Evil"}'

    async def put(content_type: str | None, origin: str | None = None, **kw) -> httpx.Response:
        headers = {k: v for k, v in (("content-type", content_type), ("origin", origin)) if v is not None}
        request = client.build_request("PUT", "/api/remote-auth/user", content=forged, headers=headers, cookies=cookies, **kw)
        return await client.send(request)

    # what an HTML form on another site can send: refused, nothing changed
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        r = await put(content_type)
        assert r.status_code == 403, (content_type, r.text)
        assert r.json()["code"] == "cross_site_request" and {"error", "cause"} <= set(r.json())
    r = await put("application/json", origin="https://evil.example")
    assert r.status_code == 403 and r.json()["code"] == "cross_site_request"
    assert await _name(client, victim) == "Test"

    # JSON, or text from our own origin, goes through
    assert (await put("application/json; charset=utf-8")).status_code == 200
    assert await _name(client, victim) == "Evil"
    forged = b'{"name": "Same origin"}'
    assert (await put("text/plain", origin=server.url)).status_code == 200
    assert await _name(client, victim) == "Same origin"

    # a POST without a body (refresh, logout) is a write too
    assert (await client.post("/api/remote-auth/refresh", cookies=cookies)).status_code == 403
    assert (await client.post("/api/auth/clear-auth-cookie", cookies=cookies)).status_code == 403
    assert (await client.get("/api/remote-auth/user", cookies=cookies)).status_code == 200  # reads are unaffected
    assert (await client.post("/api/remote-auth/refresh", cookies=cookies, headers={"origin": server.url})).status_code == 200


async def test_bearer_writes_are_unaffected(client: httpx.AsyncClient) -> None:
    user = await register(client)
    r = await client.put(
        "/api/remote-auth/user", content=b'{"name": "Plain"}', headers={**user["headers"], "content-type": "text/plain", "origin": "https://elsewhere.example"}
    )
    assert r.status_code == 200 and r.json()["name"] == "Plain"
    assert (await client.post("/api/remote-auth/refresh", headers=user["headers"])).status_code == 200


async def test_multipart_only_on_upload_routes(client: httpx.AsyncClient) -> None:
    user = await register(client)
    cookies = {COOKIE: user["token"]}
    files = {"file": ("notes.txt", b"hello", "text/plain")}
    up = await client.send(client.build_request("POST", "/api/ai/v1/upload", files=files, cookies=cookies))
    assert up.status_code == 200, up.text
    fb = await client.send(client.build_request("POST", "/api/remote-feedback", files=files, cookies=cookies))
    assert fb.status_code == 403


def test_every_route_with_an_upload_limit_takes_cookie_multipart(hub) -> None:
    """Upload routes are the routes with a larger body limit: one list, so a new upload route
    cannot be forgotten by the cross-site check."""
    from api.app import body_limits, create_app

    app = create_app(hub)
    assert app.state.upload_paths == frozenset(body_limits(hub))
    assert {"/api/ai/v1/upload", "/api/ai/v1/audio/transcriptions", "/api/files/upload"} <= app.state.upload_paths
