"""Integrations module: connected accounts, OAuth, listener set-up and platform webhooks.

Generic over platforms: each route asks the platform's connector for an ability
(OAuthSetup, CredentialSetup, LoginFlow, WebhookReceiver, WebhookVerifier) and answers 404
when it has none, so a new platform needs no code here.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from typing import Any, Iterator

import aiohttp
import httpx
from pydantic import Field
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from api.auth import Principal, authenticate, hub_of, principal_from_token
from api.endpoint import endpoint, query_dict, read_json
from api.errors import ApiError, bad_request, not_found
from api.responses import json
from api.routes.messages import iso
from api.schemas import Body
from api.webhook_accounts import webhook_accounts
from config.platforms import PLATFORMS
from connectors import oauth
from connectors.base import (
    Account,
    AccountSpec,
    AccountState,
    CredentialSetup,
    Disconnecter,
    Envelope,
    LoginFlow,
    LoginStep,
    NeedsReauth,
    NotConfigured,
    OAuthSetup,
    PlatformUnavailable,
    RateLimited,
    SetupContext,
    WebhookReceiver,
    WebhookRejected,
    WebhookReply,
    WebhookRequest,
    WebhookVerifier,
)
from connectors.registry import has_connector
from loomi.hub import Hub
from store import accounts as account_store
from workers import keys
from workers.jobs import enqueue, jobs_pool
from workers.stream import append
from workers.supervisor import accounts_changed


log = logging.getLogger("loomi.integrations")


def connector_for(hub: Hub, platform: str, ability: type | tuple[type, ...]) -> Any:
    if not has_connector(platform):
        raise not_found(f"Unknown or unsupported platform '{platform}'", "unknown_platform")
    connector = hub.connector(platform)
    if not isinstance(connector, ability):
        raise not_found(f"'{platform}' does not support this", "not_supported")
    return connector


# account settings a client may see: how it listens, and the URL to paste into the platform's
# console (a connector stores it as a template over `{accountId}`, unknown until the row exists)
PUBLIC_SETTINGS = ("mode", "webhookUrl")


def public_settings(row: dict[str, Any]) -> dict[str, Any]:
    shown = {k: v for k, v in (row["settings"] or {}).items() if k in PUBLIC_SETTINGS}
    return {k: v.replace("{accountId}", row["id"]) if isinstance(v, str) else v for k, v in shown.items()}


async def account_json(hub: Hub, row: dict[str, Any]) -> dict[str, Any]:
    """The live status from Redis over the row's copy; the row alone while Redis is away (the
    supervisor writes both), so the list still answers during an outage."""
    try:
        status = {k.decode(): v.decode() for k, v in (await hub.redis.hgetall(keys.status(row["id"]))).items()}
    except RedisError:
        status = {}
    last_event = int(status["last_event_at"]) if status.get("last_event_at") else row["last_event_at"]
    return {
        "id": row["id"],
        "platform": row["platform"],
        "name": row["name"],
        "externalId": row["external_id"],
        "enabled": bool(row["enabled"]),
        "state": status.get("state") or row["state"],
        "stateDetail": status.get("detail") or row["state_detail"],
        "worker": status.get("worker"),
        "lastEventAt": iso(last_event),
        "lagMs": int(status["lag_ms"]) if status.get("lag_ms") else row["lag_ms"],
        "settings": public_settings(row),
        "createdAt": iso(row["created_at"]),
    }


async def connected(hub: Hub, user_id: str, platform: str, spec: AccountSpec) -> dict[str, Any]:
    """Store the account, then ask for its history: the supervisor starts the listener itself."""
    async with hub.engine.begin() as conn:
        row = await account_store.upsert_account(conn, hub.vault, user_id, platform, spec)
    await hub.redis.delete(keys.status(row["id"]))
    await accounts_changed(hub)
    webhook_accounts(hub).forget()  # other processes see the version move (api/webhook_accounts.py)
    await enqueue(jobs_pool(hub), "backfill", row["id"], "history", job_id=f"history:{row['id']}:{int(time.time())}")
    return row


@endpoint()
async def list_accounts(request: Request, user: Principal):
    """The caller's connected accounts with listener state, last event and lag."""
    hub = hub_of(request)
    async with hub.engine.connect() as conn:
        rows = await account_store.list_rows(conn, user.id)
    return {"accounts": [await account_json(hub, row) for row in rows]}


@endpoint()
async def delete_account(request: Request, user: Principal):
    """Disconnect: forget the credentials and stop the listener. Stored messages stay."""
    hub = hub_of(request)
    account_id = request.path_params["account_id"]
    async with hub.engine.connect() as conn:
        row = await account_store.get_row(conn, account_id)
    if row is None or row["user_id"] != user.id:
        raise not_found("No such account", "account_not_found")
    if row["credentials"] and has_connector(row["platform"]):
        connector = hub.connector(row["platform"])
        if isinstance(connector, Disconnecter):
            try:
                await connector.disconnect(account_store.to_account(row, hub.vault))
            except Exception as err:  # noqa: BLE001 - the platform may be down; we disconnect anyway
                log.warning("%s: platform clean-up on disconnect failed: %s", account_id, type(err).__name__)
    async with hub.engine.begin() as conn:
        await account_store.disconnect(conn, account_id)
    await accounts_changed(hub)
    webhook_accounts(hub).forget()  # its webhooks are refused from now on, not after the cache's check
    await hub.redis.hset(keys.status(account_id), mapping={"state": AccountState.STOPPED.value, "detail": "disconnected"})
    return {"success": True, "id": account_id}


# ---- OAuth ----------------------------------------------------------------------------------


def _oauth_platform(request: Request) -> tuple[Any, Any, Any]:
    hub = hub_of(request)
    name = request.path_params["platform"].lower()
    connector = connector_for(hub, name, OAuthSetup)
    settings = hub.settings.platform(name)
    if not settings.oauth_configured:
        raise ApiError(
            400,
            f"{name} OAuth is not configured",
            "provider_not_configured",
            f"set LOOMI_{name.upper()}_CLIENT_ID and LOOMI_{name.upper()}_CLIENT_SECRET",
        )
    return PLATFORMS[name], settings, connector


def redirect_uri(request: Request, platform: str) -> str:
    hub = hub_of(request)
    configured = hub.settings.platform(platform).redirect_uri
    if configured:
        return configured
    base = hub.settings.public_url or f"{request.url.scheme}://{request.url.netloc}"
    return f"{base.rstrip('/')}/api/{platform}/callback"


@endpoint()
async def oauth_start(request: Request, user: Principal):
    """Start OAuth: 302 to the authorize URL, or `{url, state}` for `Accept: application/json`."""
    platform, settings, connector = _oauth_platform(request)
    with platform_refusals(platform.name):
        extra = connector.authorize_params()
    url, state = await oauth.start(
        hub_of(request).redis,
        platform,
        settings,
        user_id=user.id,
        redirect_uri=redirect_uri(request, platform.name),
        extra=extra,
    )
    if "application/json" in request.headers.get("accept", ""):
        return {"url": url, "state": state}
    return RedirectResponse(url, status_code=302)


class ExchangeQuery(Body):
    code: str = Field(min_length=1, max_length=2048)
    state: str = Field(min_length=1, max_length=256)


async def _exchange(request: Request, query: ExchangeQuery, user_id: str | None) -> dict[str, Any]:
    hub = hub_of(request)
    platform, settings, connector = _oauth_platform(request)
    with platform_refusals(platform.name):
        flow = await oauth.consume_state(hub.redis, query.state, platform.name, user_id)
        token = await oauth.exchange_code(platform, settings, flow, query.code)
        spec = await connector.account_from_token(token)
    row = await connected(hub, flow.user_id, platform.name, spec)
    return {"success": True, "account": await account_json(hub, row)}


@endpoint(query=ExchangeQuery)
async def oauth_exchange(request: Request, user: Principal, query: ExchangeQuery):
    """Exchange the code for a connected account (state must be the caller's)."""
    return await _exchange(request, query, user.id)


@endpoint(query=ExchangeQuery, auth=False)
async def oauth_callback(request: Request, query: ExchangeQuery):
    """The platform's redirect: the state says whose account this is."""
    return await _exchange(request, query, None)


# ---- credential set-up and login flows -------------------------------------------------------

LOGIN_TTL_SECONDS = 600


def _login_key(login_id: str) -> str:
    return f"loomi:login:{login_id}"


def setup_context(request: Request, user: Principal) -> SetupContext:
    hub = hub_of(request)
    base = hub.settings.public_url or f"{request.url.scheme}://{request.url.netloc}"
    return SetupContext(user_id=user.id, public_url=base.rstrip("/"))


@contextlib.contextmanager
def platform_refusals(platform: str) -> Iterator[None]:
    """Turn a connector's refusals into the seed's errors: credentials refused 400, an app
    setting missing 503 naming it, rate limited 429, bad fields 400, platform unreachable 502."""
    try:
        yield
    except oauth.OAuthError as err:
        raise bad_request(str(err), err.code) from None
    except NeedsReauth as err:
        raise ApiError(400, f"{platform} rejected the credentials", "credentials_rejected", str(err)) from None
    except NotConfigured as err:
        raise ApiError(503, f"{platform} is not configured on this hub", "platform_not_configured", err.variable) from None
    except RateLimited as err:
        raise ApiError(429, f"{platform} is rate limiting us", "rate_limited", f"retry after {err.retry_after:.0f} s") from None
    except ValueError as err:
        raise bad_request(str(err), "invalid_input") from None
    except (PlatformUnavailable, httpx.TransportError, aiohttp.ClientConnectionError, ConnectionError, TimeoutError) as err:
        raise ApiError(502, f"{platform} could not be reached", "platform_unreachable", type(err).__name__) from None


async def _platform_call(platform: str, call: Any) -> Any:
    with platform_refusals(platform):
        return await call


async def _account_answer(hub: Hub, user: Principal, platform: str, spec: AccountSpec) -> dict[str, Any]:
    async with hub.engine.connect() as conn:
        mine = await account_store.list_rows(conn, user.id, enabled_only=True)
    before = any(r["platform"] == platform and r["external_id"] == spec.external_id for r in mine)
    row = await connected(hub, user.id, platform, spec)
    status = "already_running" if before else "started"
    return {
        "success": True,
        "status": status,
        "message": f"{platform} listener {status.replace('_', ' ')}",
        "account": await account_json(hub, row),
    }


async def _step_answer(hub: Hub, user: Principal, platform: str, login_id: str, step: LoginStep) -> dict[str, Any]:
    """Show a login step; keep the connector's state sealed for the next call; at `done`,
    create the account."""
    if step.kind not in LoginStep.KINDS:
        raise RuntimeError(f"{platform} returned an unknown login step {step.kind!r}")
    key = _login_key(login_id)
    if step.kind == "done":
        assert step.spec is not None, "a done step carries the account"
        await hub.redis.delete(key)
        return {**await _account_answer(hub, user, platform, step.spec), "loginId": login_id, "step": {"kind": "done"}}
    if step.kind == "failed":
        await hub.redis.delete(key)
    else:
        sealed = hub.vault.encrypt({"user_id": user.id, "platform": platform, "state": step.state}, bound_to=key)
        await hub.redis.set(key, sealed, ex=LOGIN_TTL_SECONDS)
    shown = {"kind": step.kind, "message": step.message, "fields": step.fields, "qrcodeUrl": step.qr_url}
    return {"success": step.kind != "failed", "loginId": login_id, "step": shown, "qrcodeUrl": step.qr_url}


@endpoint()
async def listener_init(request: Request, user: Principal):
    """Connect with pasted credentials (`/api/{platform}/listener/init`), or start the
    platform's login flow (a QR code to scan…) when it has one."""
    hub = hub_of(request)
    platform = request.path_params["platform"].lower()
    connector = connector_for(hub, platform, (CredentialSetup, LoginFlow))
    fields = await read_json(request)
    if fields is None:
        fields = {}
    if not isinstance(fields, dict):
        raise bad_request("Request body must be a JSON object")
    setup = setup_context(request, user)
    if isinstance(connector, LoginFlow):
        step = await _platform_call(platform, connector.login_start(fields, setup))
        return await _step_answer(hub, user, platform, secrets.token_urlsafe(16), step)
    spec = await _platform_call(platform, connector.connect(fields, setup))
    return await _account_answer(hub, user, platform, spec)


async def _login_state(hub: Hub, user: Principal, platform: str, login_id: str) -> dict[str, Any]:
    sealed = await hub.redis.get(_login_key(login_id))
    if sealed is None:
        raise not_found("No such sign-in, or it expired; start again", "login_not_found")
    opened = hub.vault.decrypt(sealed.decode(), bound_to=_login_key(login_id))
    if opened.get("user_id") != user.id or opened.get("platform") != platform:
        raise not_found("No such sign-in, or it expired; start again", "login_not_found")
    return opened["state"]


@endpoint()
async def login_step(request: Request, user: Principal):
    """Poll a login flow (GET) or submit the fields its last step asked for (POST)."""
    hub = hub_of(request)
    platform = request.path_params["platform"].lower()
    connector = connector_for(hub, platform, LoginFlow)
    login_id = request.path_params["login_id"]
    state = await _login_state(hub, user, platform, login_id)
    fields: Any = {}
    if request.method == "POST":
        fields = await read_json(request) or {}
        if not isinstance(fields, dict):
            raise bad_request("Request body must be a JSON object")
    step = await _platform_call(platform, connector.login_next(state, fields, setup_context(request, user)))
    return await _step_answer(hub, user, platform, login_id, step)


# ---- webhooks ---------------------------------------------------------------------------------


def _webhook_request(request: Request, body: bytes) -> WebhookRequest:
    return WebhookRequest(headers={k.lower(): v for k, v in request.headers.items()}, body=body, query=query_dict(request))


async def _queue(hub: Hub, platform: str, events: list[tuple[str, Any]]) -> None:
    now = int(time.time() * 1000)
    envelopes = [Envelope(platform, account_id, ev.delivery_id, now, ev.payload, "webhook") for account_id, ev in events]
    await append(hub.redis, envelopes)


def _reply(reply: WebhookReply) -> Response:
    if reply.text is not None:
        return PlainTextResponse(reply.text, reply.status, media_type=reply.content_type)
    return json(reply.body or {"ok": True}, reply.status)


def _checked(check: Any, webhook: WebhookRequest) -> WebhookReply:
    try:
        return check(webhook)
    except WebhookRejected as err:
        raise ApiError(err.status, "Webhook rejected", "webhook_rejected", err.reason) from None


_ABLE: dict[tuple[type, type], bool] = {}


def _webhook_connector(hub: Hub, platform: str, ability: type) -> Any:
    """`connector_for` for the webhook routes, with the ability check remembered per connector
    class: isinstance against a runtime-checkable Protocol walks its members every time (~10 µs,
    on every delivery)."""
    if not has_connector(platform):
        raise not_found(f"Unknown or unsupported platform '{platform}'", "unknown_platform")
    connector = hub.connector(platform)
    able = _ABLE.get((type(connector), ability))
    if able is None:
        able = _ABLE[(type(connector), ability)] = isinstance(connector, ability)
    if not able:
        raise not_found(f"'{platform}' does not support this", "not_supported")
    return connector


async def platform_events(request: Request) -> Response:
    """Account-less webhooks (Slack Events API): verify, queue for every account the event
    names by external id, then answer. Which accounts those are comes from this process's
    cache (api/webhook_accounts.py, filled through the (platform, external_id) index), so an
    ack reads no database."""
    hub = hub_of(request)
    platform = request.path_params["platform"].lower()
    receiver = _webhook_connector(hub, platform, WebhookReceiver)
    reply = _checked(receiver.handle_webhook, _webhook_request(request, await request.body()))
    if reply.events:
        external_ids = sorted({ev.external_id for ev in reply.events if ev.external_id})
        routes = await webhook_accounts(hub).routes(platform, external_ids) if external_ids else {}
        routed = [(account_id, ev) for ev in reply.events for account_id in routes.get(ev.external_id or "", [])]
        await _queue(hub, platform, routed)
    return _reply(reply)


async def _webhook_account(hub: Hub, request: Request, platform: str) -> Account:
    """The path's account, opened, from this process's cache (api/webhook_accounts.py)."""
    account = await webhook_accounts(hub).account(request.path_params["account_id"])
    if account is None or account.platform != platform:
        raise not_found("No such account", "account_not_found")
    return account


async def account_webhook(request: Request) -> Response:
    """Per-account webhooks (Telegram, WhatsApp…): the connector checks the account's secret.
    A GET is the platform checking the URL (WebhookVerifier)."""
    hub = hub_of(request)
    platform = request.path_params["platform"].lower()
    connector = _webhook_connector(hub, platform, WebhookVerifier if request.method == "GET" else WebhookReceiver)
    account = await _webhook_account(hub, request, platform)
    webhook = _webhook_request(request, await request.body())
    webhook.account = account
    if request.method == "GET":
        return _reply(_checked(connector.verify_webhook, webhook))
    reply = _checked(connector.handle_webhook, webhook)
    await _queue(hub, platform, [(account.id, ev) for ev in reply.events])
    return _reply(reply)


async def _query_token_user(request: Request) -> Principal:
    """openloomi's client sends GET `?userId&authToken`: that token counts like a bearer one."""
    try:
        return await authenticate(request)
    except ApiError:
        token = request.query_params.get("authToken")
        principal = await principal_from_token(hub_of(request), token) if token else None
        if principal is None:
            raise
        return principal


@endpoint(auth=False)
async def telegram_user_listener(request: Request):
    """`/api/telegram/user-listener/init` (openloomi's name): start the `telegram_user` login flow
    (phone -> code -> 2FA password); the next steps go to `/api/integrations/telegram_user/login/{loginId}`.
    With an account already signed in and no `phone` given, answers `already_running`."""
    user = await _query_token_user(request)
    if request.query_params.get("userId") not in (None, user.id):
        raise ApiError(403, "userId is not the signed-in user", "forbidden")
    hub = hub_of(request)
    fields: Any = {k: v for k, v in query_dict(request).items() if k not in ("userId", "authToken")}
    if request.method == "POST":
        body = await read_json(request)
        if body is not None and not isinstance(body, dict):
            raise bad_request("Request body must be a JSON object")
        fields.update(body or {})
    connector = connector_for(hub, "telegram_user", LoginFlow)
    if not fields.get("phone"):
        async with hub.engine.connect() as conn:
            mine = await account_store.list_rows(conn, user.id, enabled_only=True)
        row = next((r for r in mine if r["platform"] == "telegram_user" and r["credentials"]), None)
        if row is not None:
            return {"success": True, "status": "already_running", "message": "telegram_user listener already running",
                    "account": await account_json(hub, row)}
    step = await _platform_call("telegram_user", connector.login_start(fields, setup_context(request, user)))
    answer = await _step_answer(hub, user, "telegram_user", secrets.token_urlsafe(16), step)
    if "status" not in answer:
        answer["status"] = "login_required"
        answer["message"] = step.message
    return answer


routes = [
    Route("/api/integrations/accounts", list_accounts, methods=["GET"]),
    Route("/api/integrations/accounts/{account_id}", delete_account, methods=["DELETE"]),
    Route("/api/integrations/{platform}/oauth/start", oauth_start, methods=["GET"]),
    Route("/api/integrations/{platform}/oauth/exchange", oauth_exchange, methods=["GET"]),
    Route("/api/telegram/user-listener/init", telegram_user_listener, methods=["GET", "POST"]),
    Route("/api/{platform}/callback", oauth_callback, methods=["GET"]),
    Route("/api/integrations/{platform}/login/{login_id}", login_step, methods=["GET", "POST"]),
    Route("/api/{platform}/listener/init", listener_init, methods=["POST"]),
    Route("/api/{platform}/register-socket", listener_init, methods=["POST"]),  # openloomi's name (WhatsApp)
    Route("/api/{platform}/init-self-listener", listener_init, methods=["POST"]),  # openloomi's name (iMessage)
    Route("/api/{platform}/events", platform_events, methods=["POST"]),
    Route("/api/{platform}/webhook/{account_id}", account_webhook, methods=["GET", "POST"]),
]
