"""Provider sign-in never lands in an account by email alone (issue 7, item 4).

The attack: register victim@gmail.com with a password before the victim ever uses the hub; the
victim's later Google sign-in used to land in that account, whose password the attacker knows.
Now a provider identity (provider + its user id, table user_identities) is bound to an account
only by creating it, or by its signed-in owner asking to link. Runs against the loopback fake
of GitHub and Google (tests/fakes/oauth_login.py), on both databases.
"""

from __future__ import annotations

import httpx
import sqlalchemy as sa

from api.auth import COOKIE
from store.schema import sessions, user_identities
from store.users import create_user
from tests.api.test_oauth_login import (  # noqa: F401 - fixtures
    assert_error,
    browser,
    callback,
    desktop,
    email,
    fake,
    poll,
    site,
    start,
    user_count,
    users_with,
)
from tests.conftest import register
from tests.e2e.harness import RunningHub
from tests.fakes.oauth_login import FakeOAuthLogin, github_user, google_user


async def identities(site: RunningHub, user_id: str) -> list[tuple[str, str]]:
    async with site.hub.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(user_identities.c.provider, user_identities.c.provider_user_id).where(user_identities.c.user_id == user_id)
        )
        return [tuple(r) for r in rows]


async def session_count(site: RunningHub, user_id: str) -> int:
    async with site.hub.engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(sessions).where(sessions.c.user_id == user_id)
        return int((await conn.execute(query)).scalar_one())


async def link(http: httpx.AsyncClient, fake: FakeOAuthLogin, provider: str, person: dict, headers: dict) -> httpx.Response:
    r = await http.post(f"/api/remote-auth/oauth/{provider}", json={"link": True}, headers=headers)
    assert r.status_code == 200, r.text
    url, state = r.json()["url"], r.json()["state"]
    code = fake.authorize(url, person)
    return await http.post(f"/api/remote-auth/oauth/{provider}/exchange", json={"code": code, "state": state}, headers=headers)


async def exchange(http: httpx.AsyncClient, fake: FakeOAuthLogin, provider: str, person: dict) -> httpx.Response:
    url, state = await start(http, provider)
    code = fake.authorize(url, person)
    r = await http.post(f"/api/remote-auth/oauth/{provider}/exchange", json={"code": code, "state": state})
    http.cookies.clear()
    return r


async def test_a_pre_registered_email_does_not_capture_the_victims_sign_in(
    site: RunningHub, fake: FakeOAuthLogin, desktop, browser
) -> None:
    squatter = await register(desktop)  # the attacker registers the victim's address first
    victim = google_user(squatter["email"], name="Victim")
    before, sessions_before = await user_count(site), await session_count(site, squatter["user"]["id"])

    url, state = await start(desktop, "google")
    r = await callback(browser, "google", fake.authorize(url, victim), state, accept="application/json")
    assert_error(r, 409, "account_exists")
    assert "link google" in r.json()["cause"] and COOKIE not in r.cookies
    assert_error(await poll(desktop, "google", state), 409, "account_exists")  # the desktop hears it too
    assert_error(await exchange(desktop, fake, "google", victim), 409, "account_exists")

    assert await user_count(site) == before
    assert await session_count(site, squatter["user"]["id"]) == sessions_before  # nobody signed in to it
    assert await identities(site, squatter["user"]["id"]) == []


async def test_the_signed_in_owner_links_a_provider_then_signs_in_with_it(
    site: RunningHub, fake: FakeOAuthLogin, desktop
) -> None:
    me = await register(desktop)
    person = github_user("linker", email=me["email"], name="Someone Else")
    assert_error(await exchange(desktop, fake, "github", person), 409, "account_exists")

    r = await link(desktop, fake, "github", person, me["headers"])
    assert r.status_code == 200, r.text
    assert r.json()["user"]["id"] == me["user"]["id"] and r.json()["user"]["name"] == "Test"  # our profile wins
    assert r.json()["user"]["avatarUrl"] == "https://avatars.githubusercontent.com/u/linker"  # a missing one is filled
    desktop.cookies.clear()
    assert await identities(site, me["user"]["id"]) == [("github", str(person["id"]))]

    r = await exchange(desktop, fake, "github", person)  # now a plain sign-in lands here
    assert r.status_code == 200 and r.json()["user"]["id"] == me["user"]["id"]
    r = await desktop.post("/api/remote-auth/login", json={"email": me["email"], "password": me["password"]})
    assert r.status_code == 200  # the password still works
    desktop.cookies.clear()


async def test_identity_is_the_provider_id_not_the_email(site: RunningHub, fake: FakeOAuthLogin, desktop) -> None:
    first, changed = email(), email()
    person = github_user("mover", email=first)
    created = await exchange(desktop, fake, "github", person)
    assert created.status_code == 200
    uid = created.json()["user"]["id"]
    # the person changes their email at GitHub: still the same hub user
    moved = await exchange(desktop, fake, "github", {**person, "email": changed})
    assert moved.status_code == 200 and moved.json()["user"]["id"] == uid
    # another GitHub account showing the first email does not get in
    assert_error(await exchange(desktop, fake, "github", github_user("other", email=first)), 409, "account_exists")
    # nor does a Google account with it, until the owner links it
    goo = google_user(first)
    assert_error(await exchange(desktop, fake, "google", goo), 409, "account_exists")
    headers = {"Authorization": f"Bearer {created.json()['token']}"}
    assert (await link(desktop, fake, "google", goo, headers)).status_code == 200
    desktop.cookies.clear()
    assert (await exchange(desktop, fake, "google", goo)).json()["user"]["id"] == uid
    assert len(await users_with(site, first)) == 1


async def test_an_identity_linked_elsewhere_cannot_be_taken(site: RunningHub, fake: FakeOAuthLogin, desktop) -> None:
    person = google_user(email())
    owner = (await exchange(desktop, fake, "google", person)).json()
    other = await register(desktop)
    r = await link(desktop, fake, "google", person, other["headers"])
    assert_error(r, 409, "identity_taken")
    desktop.cookies.clear()
    assert await identities(site, other["user"]["id"]) == []
    assert (await exchange(desktop, fake, "google", person)).json()["user"]["id"] == owner["user"]["id"]


async def test_linking_needs_a_signed_in_user_and_the_browser_that_started(
    site: RunningHub, fake: FakeOAuthLogin, desktop, browser
) -> None:
    r = await desktop.post("/api/remote-auth/oauth/google", json={"link": True})
    assert_error(r, 401, "unauthorized")
    me = await register(desktop)
    person = google_user(email())
    # an attacker starts a link for their own account and sends the URL to the victim
    r = await desktop.post("/api/remote-auth/oauth/google", json={"link": True}, headers=me["headers"])
    url, state = r.json()["url"], r.json()["state"]
    desktop.cookies.clear()
    r = await callback(browser, "google", fake.authorize(url, person), state, accept="application/json")
    assert_error(r, 400, "invalid_state")
    assert await identities(site, me["user"]["id"]) == []
    # finishing an exchange as someone else does not link either
    other = await register(desktop)
    r = await desktop.post("/api/remote-auth/oauth/google", json={"link": True}, headers=me["headers"])
    url, state = r.json()["url"], r.json()["state"]
    code = fake.authorize(url, person)
    r = await desktop.post("/api/remote-auth/oauth/google/exchange", json={"code": code, "state": state}, headers=other["headers"])
    assert_error(r, 400, "invalid_state")
    assert await identities(site, me["user"]["id"]) == [] and await identities(site, other["user"]["id"]) == []

    # the person's own browser, signed in by cookie, links from start to callback
    fake.sign_in_as("google", person)
    login = await browser.post("/api/remote-auth/login", json={"email": me["email"], "password": me["password"]})
    assert login.status_code == 200 and COOKIE in browser.cookies
    r = await browser.post("/api/remote-auth/oauth/google", json={"link": True})
    r = await browser.get(r.json()["url"], follow_redirects=True)
    assert r.status_code == 200, r.text
    assert await identities(site, me["user"]["id"]) == [("google", person["sub"])]
    browser.cookies.clear()


async def test_accounts_made_by_a_provider_before_identities_were_recorded(
    site: RunningHub, fake: FakeOAuthLogin, desktop
) -> None:
    """Migration 0004 starts with no identities: an account without a password (not the owner)
    can only have come from a provider sign-in, so its first sign-in after the upgrade binds it."""
    address = email()
    async with site.hub.engine.begin() as conn:
        legacy = await create_user(conn, email=address, name="Legacy", password_hash=None)
    person = google_user(address)
    r = await exchange(desktop, fake, "google", person)
    assert r.status_code == 200 and r.json()["user"]["id"] == legacy["id"]
    assert await identities(site, legacy["id"]) == [("google", person["sub"])]
    # bound now: another provider with the same email needs a link
    assert_error(await exchange(desktop, fake, "github", github_user("late", email=address)), 409, "account_exists")


async def test_email_change_needs_the_current_password(site: RunningHub, fake: FakeOAuthLogin, desktop) -> None:
    me = await register(desktop)
    new = email()
    put = lambda body, h=me["headers"]: desktop.put("/api/user/identity", json=body, headers=h)  # noqa: E731
    assert_error(await put({"email": new}), 400, "invalid_input")
    assert_error(await put({"email": new, "currentPassword": "wrong password"}), 403, "invalid_credentials")
    assert (await desktop.get("/api/user/identity", headers=me["headers"])).json()["email"] == me["email"]
    r = await put({"email": new, "currentPassword": me["password"]})
    assert r.status_code == 200 and r.json()["email"] == new
    # other fields need no password; the same email is not a change
    assert (await put({"bio": "hi", "email": new.upper()})).status_code == 200
    # an account with no password (made by a provider) sets one first
    made = (await exchange(desktop, fake, "github", github_user("nopw", email=email()))).json()
    r = await put({"email": email()}, {"Authorization": f"Bearer {made['token']}"})
    assert_error(r, 403, "password_required")


async def test_closed_registration_covers_provider_sign_up(backend: str, tmp_path) -> None:
    """LOOMI_REGISTRATION=invite: a provider sign-in may not create an account either."""
    from tests.e2e.harness import e2e_env, fresh_database, running_hub

    async with FakeOAuthLogin() as provider, fresh_database(backend, tmp_path) as db:
        env = e2e_env(backend, tmp_path, db, LOOMI_REGISTRATION="invite", **provider.env())
        async with running_hub(env, worker=False, flush=False) as closed:
            before = await user_count(closed)
            r = await exchange(closed.client, provider, "google", google_user(email()))
            assert_error(r, 403, "invite_required")
            assert await user_count(closed) == before
