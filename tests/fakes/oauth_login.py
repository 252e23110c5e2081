"""A loopback GitHub and Google for "sign in with …": authorize, token endpoints and profiles.

One aiohttp server speaks both providers' wire formats, so the hub's real OAuth code
(connectors/oauth.py with httpx) and login modules are the clients under test:

- GitHub: ``GET /login/oauth/authorize`` (302 back with ``code`` and ``state``),
  ``POST /login/oauth/access_token`` (form; JSON answer with ``Accept: application/json``,
  else form-encoded; errors are HTTP 200 ``{"error": …}`` as GitHub does), ``GET /user``,
  ``GET /user/emails`` (needs the ``user:email`` scope).
- Google: ``GET /o/oauth2/v2/auth``, ``POST /token`` (form; PKCE S256 ``code_verifier`` checked
  against the ``code_challenge`` the authorize URL carried; errors are 400/401 JSON),
  ``GET /oauth2/v3/userinfo``.

A test "visits" an authorize URL with ``fake.authorize(url, user) -> code`` (or points a
browser-like client at the URL after ``fake.sign_in_as``). Codes are single use and live
10 minutes; client credentials may come as HTTP Basic or in the form, like the real ones.
Point the hub at it with ``fake.env()``.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

from aiohttp import web

__all__ = ["FakeOAuthLogin", "github_user", "google_user"]

Json = dict[str, Any]

PATHS = {"/login/oauth/authorize": "github", "/o/oauth2/v2/auth": "google"}
REQUIRED_SCOPES = {"github": {"read:user"}, "google": {"openid", "email"}}
CODE_TTL = 600


def github_user(
    login: str, *, email: str | None = None, emails: list[Json] | None = None, name: str | None = None, id: int | None = None
) -> Json:
    """A GitHub account: `email` is the public one (None = private); `emails` is /user/emails."""
    return {
        "id": id or secrets.randbelow(10**8),
        "login": login,
        "name": name,
        "email": email,
        "avatar_url": f"https://avatars.githubusercontent.com/u/{login}",
        "emails": emails if emails is not None else _public_only(email),
    }


def _public_only(email: str | None) -> list[Json]:
    return [{"email": email, "primary": True, "verified": True, "visibility": "public"}] if email else []


def google_user(email: str, *, verified: bool = True, name: str | None = "Google User", sub: str | None = None) -> Json:
    return {
        "sub": sub or str(secrets.randbelow(10**20)),
        "email": email,
        "email_verified": verified,
        "name": name,
        "picture": f"https://lh3.googleusercontent.com/a/{secrets.token_hex(4)}",
    }


@dataclass
class Grant:
    provider: str
    client_id: str
    redirect_uri: str
    scopes: set[str]
    user: Json
    challenge: str | None
    method: str | None
    expires_at: float


@dataclass
class FakeOAuthLogin:
    clients: dict[str, tuple[str, str]] = field(
        default_factory=lambda: {"github": ("gh-client", "gh-secret"), "google": ("g-client.apps", "g-secret")}
    )
    port: int = 0
    codes: dict[str, Grant] = field(default_factory=dict)
    tokens: dict[str, tuple[str, Json, set[str]]] = field(default_factory=dict)  # token -> provider, user, scopes
    authorize_requests: list[Json] = field(default_factory=list)
    token_requests: list[Json] = field(default_factory=list)  # form fields (secrets removed)
    pkce_checked: int = 0  # token requests whose code_verifier matched a challenge
    signed_in: dict[str, Json] = field(default_factory=dict)  # who the "browser" is, per provider
    deny: bool = False  # the person presses "Cancel" on the consent screen
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        b = self.base_url
        return {
            "LOOMI_GITHUB_CLIENT_ID": self.clients["github"][0],
            "LOOMI_GITHUB_CLIENT_SECRET": self.clients["github"][1],
            "LOOMI_GITHUB_AUTH_URL": f"{b}/login/oauth/authorize",
            "LOOMI_GITHUB_TOKEN_URL": f"{b}/login/oauth/access_token",
            "LOOMI_GITHUB_API_URL": b,
            "LOOMI_GOOGLE_CLIENT_ID": self.clients["google"][0],
            "LOOMI_GOOGLE_CLIENT_SECRET": self.clients["google"][1],
            "LOOMI_GOOGLE_AUTH_URL": f"{b}/o/oauth2/v2/auth",
            "LOOMI_GOOGLE_TOKEN_URL": f"{b}/token",
            "LOOMI_GOOGLE_API_URL": b,
        }

    # ---- the person at the consent screen ----------------------------------------------------

    def authorize(self, url: str, user: Json) -> str:
        """Sign `user` in at the authorize URL and approve: the code the provider would send back."""
        parsed = urlparse(url)
        if f"{parsed.scheme}://{parsed.netloc}" != self.base_url or parsed.path not in PATHS:
            raise AssertionError(f"not an authorize URL of this fake: {url}")
        provider = PATHS[parsed.path]
        params = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        self.authorize_requests.append({"provider": provider, **params})
        if params.get("client_id") != self.clients[provider][0]:
            raise AssertionError(f"{provider}: unknown client_id {params.get('client_id')!r}")
        if params.get("response_type") != "code" or not params.get("redirect_uri") or not params.get("state"):
            raise AssertionError(f"{provider}: authorize URL lacks response_type=code, redirect_uri or state")
        scopes = set(params.get("scope", "").split())
        if not REQUIRED_SCOPES[provider] <= scopes:
            raise AssertionError(f"{provider}: scopes {scopes} lack {REQUIRED_SCOPES[provider]}")
        challenge, method = params.get("code_challenge"), params.get("code_challenge_method")
        if challenge and method != "S256":
            raise AssertionError(f"{provider}: only S256 PKCE is accepted, got {method!r}")
        code = secrets.token_urlsafe(20)
        self.codes[code] = Grant(
            provider, params["client_id"], params["redirect_uri"], scopes, user, challenge, method, time.time() + CODE_TTL
        )
        return code

    def sign_in_as(self, provider: str, user: Json) -> None:
        """Who a browser following the authorize URL over HTTP is signed in as."""
        self.signed_in[provider] = user

    async def _authorize_page(self, request: web.Request) -> web.Response:
        provider = PATHS[request.path]
        params = dict(request.query)
        back = params.get("redirect_uri", "")
        if self.deny:
            raise web.HTTPFound(f"{back}?{urlencode({'error': 'access_denied', 'state': params.get('state', '')})}")
        if provider not in self.signed_in:
            return web.Response(status=401, text=f"nobody is signed in to {provider}")
        code = self.authorize(str(request.url), self.signed_in[provider])
        raise web.HTTPFound(f"{back}?{urlencode({'code': code, 'state': params['state']})}")

    # ---- token endpoints -----------------------------------------------------------------------

    async def _client_and_form(self, request: web.Request) -> tuple[str, str, dict[str, str]]:
        if not request.content_type.startswith("application/x-www-form-urlencoded"):
            raise web.HTTPUnsupportedMediaType(text="form body expected")
        form = {k: str(v) for k, v in (await request.post()).items()}
        client_id, secret = form.pop("client_id", ""), form.pop("client_secret", "")
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "basic":
            client_id, _, secret = base64.b64decode(value).decode().partition(":")
        self.token_requests.append(dict(form))
        return client_id, secret, form

    def _redeem(self, provider: str, client_id: str, form: dict[str, str]) -> tuple[Grant | None, str]:
        grant = self.codes.pop(form.get("code", ""), None)  # single use, even when it then fails
        if grant is None or grant.provider != provider or grant.expires_at < time.time():
            return None, "the code is unknown, expired or already used"
        if grant.client_id != client_id:
            return None, "the code was issued to another client"
        if form.get("redirect_uri") != grant.redirect_uri:
            return None, "redirect_uri does not match the authorize request"
        if grant.challenge:
            verifier = form.get("code_verifier", "")
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
            if not verifier or digest != grant.challenge:
                return None, "code_verifier does not match code_challenge"
            self.pkce_checked += 1
        elif "code_verifier" in form:
            return None, "code_verifier given but no code_challenge was"
        return grant, ""

    def _issue(self, prefix: str, grant: Grant) -> str:
        token = prefix + secrets.token_urlsafe(24)
        self.tokens[token] = (grant.provider, grant.user, grant.scopes)
        return token

    async def _github_token(self, request: web.Request) -> web.Response:
        client_id, secret, form = await self._client_and_form(request)
        if (client_id, secret) != self.clients["github"]:
            body: Json = {
                "error": "incorrect_client_credentials",
                "error_description": "The client_id and/or client_secret passed are incorrect.",
            }
        else:
            grant, problem = self._redeem("github", client_id, form)
            if grant is None:
                error = "redirect_uri_mismatch" if "redirect_uri" in problem else "bad_verification_code"
                body = {"error": error, "error_description": problem}
            else:
                token = self._issue("gho_", grant)
                body = {"access_token": token, "token_type": "bearer", "scope": ",".join(sorted(grant.scopes))}
        if "application/json" in request.headers.get("Accept", ""):
            return web.json_response(body)  # GitHub answers errors with 200 too
        return web.Response(text=urlencode(body), content_type="application/x-www-form-urlencoded")

    async def _google_token(self, request: web.Request) -> web.Response:
        client_id, secret, form = await self._client_and_form(request)
        if (client_id, secret) != self.clients["google"]:
            return web.json_response({"error": "invalid_client", "error_description": "Unauthorized"}, status=401)
        if form.get("grant_type") != "authorization_code":
            return web.json_response({"error": "unsupported_grant_type"}, status=400)
        grant, problem = self._redeem("google", client_id, form)
        if grant is None:
            return web.json_response({"error": "invalid_grant", "error_description": problem}, status=400)
        return web.json_response(
            {
                "access_token": self._issue("ya29.", grant),
                "expires_in": 3599,
                "token_type": "Bearer",
                "scope": " ".join(sorted(grant.scopes)),
                "id_token": "not.checked.here",
            }
        )

    # ---- profile APIs --------------------------------------------------------------------------

    def _bearer(self, request: web.Request, provider: str) -> tuple[Json, set[str]] | None:
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        found = self.tokens.get(value) if scheme.lower() in ("bearer", "token") else None
        if found is None or found[0] != provider:
            return None
        return found[1], found[2]

    async def _github_user(self, request: web.Request) -> web.Response:
        found = self._bearer(request, "github")
        if found is None:
            return web.json_response({"message": "Bad credentials", "status": "401"}, status=401)
        return web.json_response({k: v for k, v in found[0].items() if k != "emails"})

    async def _github_emails(self, request: web.Request) -> web.Response:
        found = self._bearer(request, "github")
        if found is None:
            return web.json_response({"message": "Bad credentials", "status": "401"}, status=401)
        if "user:email" not in found[1] and "user" not in found[1]:
            return web.json_response({"message": "Not Found", "status": "404"}, status=404)
        return web.json_response(found[0].get("emails", []))

    async def _google_userinfo(self, request: web.Request) -> web.Response:
        found = self._bearer(request, "google")
        if found is None:
            return web.json_response({"error": "invalid_request", "error_description": "Invalid Credentials"}, status=401)
        return web.json_response(found[0])

    # ---- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> "FakeOAuthLogin":
        app = web.Application()
        for path in PATHS:
            app.router.add_get(path, self._authorize_page)
        app.router.add_post("/login/oauth/access_token", self._github_token)
        app.router.add_get("/user", self._github_user)
        app.router.add_get("/user/emails", self._github_emails)
        app.router.add_post("/token", self._google_token)
        app.router.add_get("/oauth2/v3/userinfo", self._google_userinfo)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> "FakeOAuthLogin":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
