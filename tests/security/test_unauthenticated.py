"""Every route refuses a caller without a valid token: 401 in the seed format `{error, code, cause}`.

The routes are walked from the app itself (`tests/security/routes.py`), so a route added
tomorrow is checked tomorrow. Only the deliberately public ones are skipped, and they are an
explicit list reviewed here, each with the reason it is public. Beyond "no token": a token
signed with another secret, a forged (`alg: none`, tampered payload) one, an expired one, one
whose session was revoked (logout) and one older than a password change are all refused.
"""

from __future__ import annotations

import base64
import time
from typing import Any

import httpx
import jwt
import orjson
import pytest

from loomi.tokens import _signing_key
from tests.conftest import register
from tests.security.routes import fill, walk

# (METHOD, path template) -> why it answers without a hub token. Reviewed: keep it short.
PUBLIC: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "liveness probe for load balancers",
    ("GET", "/openapi.json"): "the API description",
    ("POST", "/api/remote-auth/register"): "sign-up (closed or invite-only by LOOMI_REGISTRATION)",
    ("POST", "/api/remote-auth/login"): "sign-in (rate limited)",
    ("POST", "/api/auth/set-token"): "turns a token it is given into the session cookie; checks that token",
    ("POST", "/api/auth/clear-auth-cookie"): "logout: revokes the cookie's session when there is one",
    ("POST", "/api/remote-auth/oauth/{provider}"): "starts a Google/GitHub sign-in",
    ("POST", "/api/remote-auth/oauth/{provider}/exchange"): "finishes a Google/GitHub sign-in (one-time code)",
    ("POST", "/api/auth/poll-{provider}"): "desktop sign-in polls its one-time state",
    ("GET", "/api/auth/callback/{provider}"): "the sign-in provider's redirect (state checked)",
    ("GET", "/api/{platform}/callback"): "a platform's OAuth redirect (sealed state checked)",
    ("POST", "/api/{platform}/events"): "platform webhooks: authenticated by the platform's signature",
    ("GET", "/api/{platform}/webhook/{account_id}"): "platform webhook verification handshakes (signature/secret)",
    ("POST", "/api/{platform}/webhook/{account_id}"): "platform webhooks: authenticated by signature/secret",
    ("GET", "/api/ai/chat"): "what the AI gateway offers (no user data)",
    ("GET", "/metrics"): "Prometheus: LOOMI_METRICS_TOKEN when set, else loopback only (tests/ops)",
}
ROUTES = sorted({(method, path) for method, path, _ in walk()})
GUARDED = [pytest.param(m, p, id=f"{m} {p}") for m, p in ROUTES if (m, p) not in PUBLIC]
SAMPLE = {"platform": "telegram", "path": "notes/a.txt", "model": "gpt-4o-mini"}


def assert_401(response: httpx.Response, where: str) -> None:
    assert response.status_code == 401, f"{where} -> {response.status_code}: {response.text[:200]}"
    body = response.json()
    if where.split(" ", 1)[1].startswith("/api/ai/v1/"):  # OpenAI's error shape: what its SDKs read
        error = body["error"]
        assert isinstance(error["message"], str) and error["code"], where
        return
    assert set(body) == {"error", "code", "cause"} and body["code"] in ("unauthorized", "invalid_token"), f"{where}: {body}"
    assert isinstance(body["error"], str) and isinstance(body["cause"], str), where


def test_the_public_list_names_only_routes_that_exist() -> None:
    """A stale entry would hide nothing today but could silently exempt a route added later."""
    assert set(PUBLIC) <= set(ROUTES), set(PUBLIC) - set(ROUTES)
    assert len(GUARDED) > 100  # the walker found the app (sanity: it is not checking an empty list)


async def _request(client: httpx.AsyncClient, method: str, path: str, **kw: Any) -> httpx.Response:
    url = fill(path, SAMPLE)
    body = {} if method in ("POST", "PUT", "PATCH") else None
    return await client.request(method, url, json=body, **kw)


async def test_every_guarded_route_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    """All routes in one test (a test each would pay the fixtures a hundred times); every
    failure is listed."""
    failures = []
    for param in GUARDED:
        method, path = param.values
        client.cookies.clear()
        response = await _request(client, method, path)
        try:
            assert_401(response, f"{method} {path}")
        except (AssertionError, KeyError, ValueError) as err:
            failures.append(f"{method} {path}: {err}")
    assert not failures, "\n".join(failures)


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


def _bad_tokens(hub: Any, user: dict[str, Any]) -> dict[str, str]:
    good = user["token"]
    claims = jwt.decode(good, options={"verify_signature": False})
    header, payload, signature = good.split(".")
    now = int(time.time())
    secret = hub.settings.secret_key.get_secret_value()
    return {
        "other secret": jwt.encode(claims, _signing_key("not-the-hub-secret"), algorithm="HS256"),
        "raw secret as HMAC key": jwt.encode(claims, secret.encode(), algorithm="HS256"),
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "tampered payload": f"{header}.{_b64({**claims, 'sub': 'usr_someone_else'})}.{signature}",
        "expired": jwt.encode({**claims, "iat": now - 7200, "exp": now - 3600}, _signing_key(secret), algorithm="HS256"),
        "garbage": "not.a.jwt",
    }


GUARDED_SAMPLE = ["/api/remote-auth/user", "/api/messages", "/api/integrations/accounts", "/api/ai/v1/models"]


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the test secret is short on purpose
async def test_forged_expired_and_other_secret_tokens_are_401(client: httpx.AsyncClient, hub: Any) -> None:
    user = await register(client)
    assert (await client.get("/api/remote-auth/user", headers=user["headers"])).status_code == 200
    for name, token in _bad_tokens(hub, user).items():
        for path in GUARDED_SAMPLE:
            for header in ({"Authorization": f"Bearer {token}"}, {"X-Api-Key": token}):
                client.cookies.clear()
                assert_401(await client.get(path, headers=header), f"GET {path} ({name})")
        client.cookies.set("loomi_session", token)
        assert_401(await client.get("/api/messages"), f"GET /api/messages (cookie, {name})")
        client.cookies.clear()


async def test_a_revoked_session_is_401(client: httpx.AsyncClient) -> None:
    user = await register(client)
    other = await client.post("/api/remote-auth/login", json={"email": user["email"], "password": user["password"]})
    assert other.status_code == 200
    client.cookies.clear()
    client.cookies.set("loomi_session", user["token"])
    out = await client.post("/api/auth/clear-auth-cookie", json={})  # logout revokes this session only
    assert out.status_code == 200
    client.cookies.clear()
    for path in GUARDED_SAMPLE:
        assert_401(await client.get(path, headers=user["headers"]), f"GET {path} (logged out)")
    still = {"Authorization": f"Bearer {other.json()['token']}"}
    assert (await client.get("/api/remote-auth/user", headers=still)).status_code == 200


async def test_tokens_older_than_a_password_change_are_401(client: httpx.AsyncClient) -> None:
    user = await register(client)
    changed = await client.put("/api/user/password", headers=user["headers"],
                               json={"currentPassword": user["password"], "newPassword": "another horse battery"})
    assert changed.status_code == 200, changed.text
    client.cookies.clear()
    assert_401(await client.get("/api/remote-auth/user", headers=user["headers"]), "GET /api/remote-auth/user (old password)")
