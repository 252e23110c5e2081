"""Signing in with GitHub and Google against a loopback fake of both, on both databases.

The session-wide `hub` fixture has no OAuth apps configured, so these tests run their own hub
(tests/e2e/harness.py) pointed at tests/fakes/oauth_login.py. Its Redis db is its own and is
never flushed: every key these tests touch is named by a fresh random state.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any, AsyncIterator
from urllib.parse import parse_qs, urlparse

import httpx
import orjson
import pytest
import sqlalchemy as sa

from api.auth import COOKIE
from store.schema import sessions, users
from tests.conftest import redis_url_for, register
from tests.e2e.harness import RunningHub, e2e_env, fresh_database, running_hub
from tests.fakes.oauth_login import FakeOAuthLogin, github_user, google_user

REDIS_DB = {"sqlite": 9, "postgresql": 10}


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeOAuthLogin]:
    async with FakeOAuthLogin() as running:
        yield running


@pytest.fixture(scope="module")
async def site(backend: str, fake: FakeOAuthLogin, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningHub]:
    tmp = tmp_path_factory.mktemp("oauth-login")
    async with fresh_database(backend, tmp) as db:
        env = e2e_env(backend, tmp, db, redis_url=redis_url_for(backend, REDIS_DB[backend]), **fake.env())
        async with running_hub(env, worker=False, flush=False) as running:
            yield running


@pytest.fixture
async def desktop(site: RunningHub) -> AsyncIterator[httpx.AsyncClient]:
    """The desktop app: starts the flow and polls; never sees the callback."""
    async with httpx.AsyncClient(base_url=site.url, timeout=30) as http:
        yield http


@pytest.fixture
async def browser(site: RunningHub) -> AsyncIterator[httpx.AsyncClient]:
    """The person's browser, where the provider redirects to."""
    async with httpx.AsyncClient(base_url=site.url, timeout=30) as http:
        yield http


def email() -> str:
    return f"p{secrets.token_hex(5)}@example.com"


async def start(http: httpx.AsyncClient, provider: str) -> tuple[str, str]:
    r = await http.post(f"/api/remote-auth/oauth/{provider}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"url", "state"}
    return body["url"], body["state"]


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}


async def callback(http: httpx.AsyncClient, provider: str, code: str, state: str, **headers: str) -> httpx.Response:
    return await http.get(f"/api/auth/callback/{provider}", params={"code": code, "state": state}, headers=headers)


async def poll(http: httpx.AsyncClient, provider: str, state: str) -> httpx.Response:
    return await http.post(f"/api/auth/poll-{provider}", json={"state": state})


async def users_with(site: RunningHub, address: str) -> list[dict[str, Any]]:
    async with site.hub.engine.connect() as conn:
        rows = (await conn.execute(users.select().where(users.c.email == address.lower()))).mappings().all()
    return [dict(r) for r in rows]


async def user_count(site: RunningHub) -> int:
    async with site.hub.engine.connect() as conn:
        return int((await conn.execute(sa.select(sa.func.count()).select_from(users))).scalar_one())


def assert_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["code"] == code and isinstance(body["error"], str) and set(body) <= {"error", "code", "cause"}


async def test_github_desktop_flow(site: RunningHub, fake: FakeOAuthLogin, desktop, browser, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    address = email()
    url, state = await start(desktop, "github")
    params = query(url)
    assert url.startswith(f"{fake.base_url}/login/oauth/authorize?")
    assert params["redirect_uri"] == f"{site.url}/api/auth/callback/github"
    assert params["state"] == state and params["client_id"] == "gh-client"
    assert set(params["scope"].split()) == {"read:user", "user:email"} and "code_challenge" not in params

    assert (await poll(desktop, "github", state)).json() == {"status": "pending"}
    code = fake.authorize(url, github_user("octo", email=address, name="Octo Cat"))
    r = await callback(browser, "github", code, state)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "Signed in" in r.text and "you can close this window" in r.text
    assert COOKIE not in r.cookies  # this browser did not start the flow: the desktop polls

    record = await site.hub.redis.get(f"loomi:oauth-login:{state}")
    assert record is not None and orjson.loads(record)["status"] == "complete"
    assert b"token" not in record and b"eyJ" not in record  # ids only: the token is minted on collection

    r = await poll(desktop, "github", state)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "complete" and body["user"]["email"] == address and body["user"]["name"] == "Octo Cat"
    assert body["user"]["avatarUrl"] == "https://avatars.githubusercontent.com/u/octo"
    async with httpx.AsyncClient(base_url=site.url) as elsewhere:  # no cookie: the bearer token alone
        me = await elsewhere.get("/api/remote-auth/user", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.status_code == 200 and me.json()["email"] == address

    assert_error(await poll(desktop, "github", state), 400, "invalid_state")  # collected once
    assert_error(await callback(browser, "github", code, state), 400, "invalid_state")  # replay
    assert_error(await poll(desktop, "github", state), 400, "invalid_state")

    [user] = await users_with(site, address)
    assert user["name"] == "Octo Cat"
    assert user["password_hash"] is None
    r = await desktop.post("/api/remote-auth/login", json={"email": address, "password": "anything at all"})
    assert r.status_code == 401  # an OAuth-only user has no password to guess
    async with site.hub.engine.connect() as conn:
        stored = repr((await conn.execute(sessions.select().where(sessions.c.user_id == user["id"]))).mappings().all())
    provider_tokens = [t for t, (p, u, _) in fake.tokens.items() if u.get("login") == "octo"]
    assert provider_tokens and body["token"] not in stored
    hub_logs = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))
    assert f"signed in with github: user {user['id']}" in hub_logs  # the server's own logs were captured
    for secret in [body["token"], *provider_tokens]:
        assert secret not in hub_logs and secret not in repr(user)


async def test_the_browser_that_started_gets_the_session_cookie(site: RunningHub, fake: FakeOAuthLogin, browser) -> None:
    address = email()
    fake.sign_in_as("github", github_user("webby", email=address))
    url, state = await start(browser, "github")
    r = await browser.get(url, follow_redirects=True)  # provider's consent, then its 302 to the hub
    assert r.status_code == 200 and str(r.url).startswith(f"{site.url}/api/auth/callback/github?")
    assert COOKIE in browser.cookies
    me = await browser.get("/api/remote-auth/user")
    assert me.status_code == 200 and me.json()["email"] == address
    assert (await poll(browser, "github", state)).json()["status"] == "complete"


async def test_google_with_pkce_checked_by_the_provider(site: RunningHub, fake: FakeOAuthLogin, desktop, browser) -> None:
    address = email()
    url, state = await start(desktop, "google")
    params = query(url)
    assert url.startswith(f"{fake.base_url}/o/oauth2/v2/auth?")
    assert params["code_challenge_method"] == "S256" and len(params["code_challenge"]) == 43
    assert params["redirect_uri"] == f"{site.url}/api/auth/callback/google"
    checked = fake.pkce_checked
    code = fake.authorize(url, google_user(address, name="Goo Gle"))
    r = await callback(browser, "google", code, state, accept="application/json")
    assert r.status_code == 200, r.text
    assert fake.pkce_checked == checked + 1
    assert fake.token_requests[-1]["code_verifier"]
    assert r.json()["user"]["email"] == address and r.json()["user"]["name"] == "Goo Gle"
    polled = (await poll(desktop, "google", state)).json()
    assert polled["status"] == "complete" and polled["user"]["id"] == r.json()["user"]["id"]
    me = await desktop.get("/api/remote-auth/user", headers={"Authorization": f"Bearer {polled['token']}"})
    assert me.json()["email"] == address


async def test_a_wrong_pkce_verifier_is_refused_by_the_provider(site: RunningHub, fake: FakeOAuthLogin, desktop, browser) -> None:
    address = email()
    url, state = await start(desktop, "google")
    key = f"loomi:oauth-state:{state}"
    flow = orjson.loads(await site.hub.redis.get(key))
    await site.hub.redis.set(key, orjson.dumps({**flow, "verifier": "x" * 64}), keepttl=True)
    code = fake.authorize(url, google_user(address))
    r = await callback(browser, "google", code, state, accept="application/json")
    assert_error(r, 400, "token_rejected")
    assert "invalid_grant" in r.json()["cause"]
    assert await users_with(site, address) == []
    assert_error(await poll(desktop, "google", state), 400, "token_rejected")  # the poller learns why


async def test_exchange_route_for_clients_that_catch_the_redirect(site: RunningHub, fake: FakeOAuthLogin, desktop) -> None:
    for provider in ("github", "google"):
        address = email()
        person = github_user("ex", email=address) if provider == "github" else google_user(address)
        url, state = await start(desktop, provider)
        code = fake.authorize(url, person)
        r = await desktop.post(f"/api/remote-auth/oauth/{provider}/exchange", json={"code": code, "state": state})
        assert r.status_code == 200, r.text
        assert set(r.json()) == {"user", "token"} and r.json()["user"]["email"] == address
        assert COOKIE in r.cookies
        desktop.cookies.clear()
        me = await desktop.get("/api/remote-auth/user", headers={"Authorization": f"Bearer {r.json()['token']}"})
        assert me.json()["email"] == address
        assert_error(await poll(desktop, provider, state), 400, "invalid_state")  # nothing left to poll
        r = await desktop.post(f"/api/remote-auth/oauth/{provider}/exchange", json={"code": code, "state": state})
        assert_error(r, 400, "invalid_state")
        assert len(await users_with(site, address)) == 1


async def test_private_github_email_comes_from_user_emails(site: RunningHub, fake: FakeOAuthLogin, desktop, browser) -> None:
    primary, other = email(), email()
    person = github_user(
        "hidden",
        email=None,
        emails=[
            {"email": other, "primary": False, "verified": True, "visibility": None},
            {"email": primary, "primary": True, "verified": True, "visibility": "private"},
        ],
    )
    url, state = await start(desktop, "github")
    code = fake.authorize(url, person)
    r = await callback(browser, "github", code, state, accept="application/json")
    assert r.status_code == 200, r.text
    assert r.json()["user"]["email"] == primary and r.json()["user"]["name"] == "hidden"  # no name: the login
    assert await users_with(site, other) == []


@pytest.mark.parametrize("provider", ["github", "google"])
async def test_unverified_email_is_refused(site: RunningHub, fake: FakeOAuthLogin, desktop, browser, provider: str) -> None:
    address = email()
    if provider == "github":
        person = github_user("unverified", email=None, emails=[{"email": address, "primary": True, "verified": False}])
    else:
        person = google_user(address, verified=False)
    before = await user_count(site)
    url, state = await start(desktop, provider)
    r = await callback(browser, provider, fake.authorize(url, person), state)
    assert_error(r, 403, "email_unverified")
    assert COOKIE not in r.cookies
    assert_error(await poll(desktop, provider, state), 403, "email_unverified")
    assert_error(await poll(desktop, provider, state), 400, "invalid_state")
    url, state = await start(desktop, provider)
    code = fake.authorize(url, person)
    r = await desktop.post(f"/api/remote-auth/oauth/{provider}/exchange", json={"code": code, "state": state})
    assert_error(r, 403, "email_unverified")
    assert await users_with(site, address) == [] and await user_count(site) == before


async def test_forged_replayed_and_crossed_states_create_nothing(
    site: RunningHub, fake: FakeOAuthLogin, desktop, browser
) -> None:
    address = email()
    person = github_user("forger", email=address)
    before = await user_count(site)
    url, state = await start(desktop, "github")
    code = fake.authorize(url, person)
    forged = secrets.token_urlsafe(32)
    assert_error(await callback(browser, "github", code, forged), 400, "invalid_state")
    assert_error(await poll(desktop, "github", forged), 400, "invalid_state")
    r = await desktop.post("/api/remote-auth/oauth/github/exchange", json={"code": code, "state": forged})
    assert_error(r, 400, "invalid_state")
    r = await desktop.post("/api/remote-auth/oauth/github/exchange", json={"code": code})
    assert_error(r, 400, "invalid_state")
    assert_error(await browser.get("/api/auth/callback/github", params={"code": code}), 400, "invalid_state")
    assert await site.hub.redis.get(f"loomi:oauth-login:{forged}") is None  # forged states leave no trace

    assert_error(await poll(desktop, "google", state), 400, "invalid_state")  # another provider's state
    assert (await poll(desktop, "github", state)).json() == {"status": "pending"}
    assert_error(await callback(browser, "google", code, state), 400, "invalid_state")  # crossed: burnt
    assert_error(await callback(browser, "github", code, state), 400, "invalid_state")
    assert_error(await poll(desktop, "github", state), 400, "invalid_state")  # the poller hears it, once
    assert_error(await poll(desktop, "github", state), 400, "invalid_state")
    assert await users_with(site, address) == [] and await user_count(site) == before


async def test_provider_refusals(site: RunningHub, fake: FakeOAuthLogin, desktop, browser) -> None:
    address = email()
    url, state = await start(desktop, "github")
    fake.authorize(url, github_user("nope", email=address))
    assert_error(await callback(browser, "github", "not-a-real-code", state), 400, "token_rejected")
    assert_error(await poll(desktop, "github", state), 400, "token_rejected")

    fake.deny, fake.signed_in["google"] = True, google_user(address)
    try:
        url, state = await start(browser, "google")
        r = await browser.get(url, follow_redirects=True)
    finally:
        fake.deny = False
    assert_error(r, 400, "oauth_denied")
    assert r.json()["cause"] == "access_denied"
    assert_error(await poll(desktop, "google", state), 400, "oauth_denied")
    assert await users_with(site, address) == []


@pytest.mark.parametrize(
    "method,path",
    [
        ("POST", "/api/auth/poll-{p}"),
        ("POST", "/api/remote-auth/oauth/{p}"),
        ("POST", "/api/remote-auth/oauth/{p}/exchange"),
        ("GET", "/api/auth/callback/{p}?code=c&state=s"),
    ],
)
async def test_unknown_providers_are_404_on_a_configured_hub(site: RunningHub, desktop, method: str, path: str) -> None:
    for name in ("myspace", "slack"):  # slack exists, but is a chat platform, not a sign-in
        r = await desktop.request(method, path.format(p=name), json={"code": "c", "state": "s"} if method == "POST" else None)
        assert_error(r, 404, "unknown_provider")


async def test_callback_of_an_unconfigured_provider(client: httpx.AsyncClient) -> None:
    r = await client.get("/api/auth/callback/google", params={"code": "c", "state": "s"})
    assert_error(r, 400, "provider_not_configured")
    assert "LOOMI_GOOGLE_CLIENT_ID" in r.json()["cause"]
    assert_error(await client.get("/api/auth/callback/myspace", params={"code": "c", "state": "s"}), 404, "unknown_provider")
