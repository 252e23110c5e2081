"""No credential in any log line, from any library (issue 7, item 6).

Each platform's real path (its SDK against the fake platform server, the hub's API and worker)
runs with every logger at DEBUG into the hub's own log handler; then the captured log is
grepped for each secret the run used. A new connector adds itself to SCENARIOS: a function that
runs its path and returns the secrets it used.
"""

from __future__ import annotations

import contextlib
import io
import logging
import secrets
from pathlib import Path
from typing import Awaitable, Callable, Iterator
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loomi import logs
from tests.e2e.harness import RunningHub, e2e_env, fresh_database, running_hub
from tests.fakes.slack import FakeSlack
from tests.fakes.telegram import FakeTelegram
from tests.waiting import eventually

Scenario = Callable[[str, Path], Awaitable[list[str]]]
SCENARIOS: dict[str, Scenario] = {}


def scenario(platform: str) -> Callable[[Scenario], Scenario]:
    def add(fn: Scenario) -> Scenario:
        SCENARIOS[platform] = fn
        return fn

    return add


@contextlib.contextmanager
def captured_debug_log() -> Iterator[io.StringIO]:
    """Every logger at DEBUG through the hub's handler (the one `loomi serve` installs)."""
    out = io.StringIO()
    handler = logs.handler(out)
    root = logging.getLogger()
    saved = root.level, {name: logging.getLogger(name).level for name in logs.CHATTY}
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in logs.CHATTY:
        logging.getLogger(name).setLevel(logging.NOTSET)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        for name, level in saved[1].items():
            logging.getLogger(name).setLevel(level)


def _async(check: Callable[[], object]) -> Callable[[], Awaitable[object]]:
    async def run() -> object:
        return check()

    return run


def _secret_key() -> str:
    return "hub-key-" + secrets.token_urlsafe(24)


async def _user_secrets(hub: RunningHub, headers: dict[str, str]) -> list[str]:
    token = headers["Authorization"].split(" ", 1)[1]
    return [token, "e2e password 1"]


@scenario("telegram")
async def telegram(backend: str, tmp: Path) -> list[str]:
    token = f"{secrets.randbelow(10**9) + 10**8}:{secrets.token_urlsafe(26)}"
    key = _secret_key()
    async with FakeTelegram() as fake, fresh_database(backend, tmp) as db:
        fake.add_bot(token, int(token.split(":")[0]), "loomi_bot")
        env = e2e_env(backend, tmp, db, LOOMI_TELEGRAM_BASE_URL=fake.base_url, LOOMI_SECRET_KEY=key)
        async with running_hub(env) as hub:
            headers = await hub.login()
            for mode in ("polling", "webhook"):  # both ways of receiving, then sending
                r = await hub.client.post("/api/telegram/listener/init", json={"botToken": token, "mode": mode}, headers=headers)
                assert r.status_code == 200, r.text
                account_id = r.json()["account"]["id"]
                if mode == "webhook":
                    await eventually(_async(lambda: fake._bots[token].secret_token), what="webhook set")
                fake.post_message(token, 42, {"id": 501, "first_name": "Alice"}, f"hi over {mode}")
                await eventually(lambda: hub.with_text(headers, f"hi over {mode}"), what=f"{mode} message")
            webhook_secret = fake._bots[token].secret_token
            assert webhook_secret
            r = await hub.client.post("/api/messages", json={"accountId": account_id, "chatId": "42", "text": "from the hub"}, headers=headers)
            assert r.status_code == 201, r.text
            assert (await hub.client.delete(f"/api/integrations/accounts/{account_id}", headers=headers)).status_code == 200
            return [token, token.split(":")[1], webhook_secret, key, *await _user_secrets(hub, headers)]


@scenario("slack")
async def slack(backend: str, tmp: Path) -> list[str]:
    client_secret, signing_secret, key = secrets.token_hex(16), secrets.token_hex(16), _secret_key()
    bot_token = f"xoxb-{secrets.token_hex(4)}-{secrets.token_hex(12)}"
    app_token = f"xapp-1-A{secrets.token_hex(4)}-{secrets.token_hex(12)}"
    async with FakeSlack(bot_token=bot_token, app_token=app_token, verification_token=secrets.token_hex(12)) as fake, fresh_database(backend, tmp) as db:
        fake.add_user("UALICE", "alice")
        fake.add_channel("C1", "general")
        env = e2e_env(
            backend, tmp, db, LOOMI_SECRET_KEY=key, LOOMI_SLACK_BASE_URL=fake.base_url, LOOMI_SLACK_CLIENT_ID="111.222",
            LOOMI_SLACK_CLIENT_SECRET=client_secret, LOOMI_SLACK_SIGNING_SECRET=signing_secret, LOOMI_SLACK_APP_TOKEN=app_token,
        )
        async with running_hub(env) as hub:
            headers = await hub.login()
            r = await hub.client.get("/api/integrations/slack/oauth/start", headers={**headers, "Accept": "application/json"})
            params = {k: v[0] for k, v in parse_qs(urlparse(r.json()["url"]).query).items()}
            code = "code-" + secrets.token_hex(12)
            fake.add_oauth_code(code, "111.222", client_secret, params["redirect_uri"], fake.team_id, fake.team_name, bot_token, fake.bot_user_id, bot_id=fake.bot_id)
            done = await hub.client.get("/api/slack/callback", params={"code": code, "state": params["state"]})
            assert done.status_code == 200, done.text
            account_id = done.json()["account"]["id"]
            await eventually(lambda: hub.in_state(headers, "connected"), what="socket mode connected")
            fake.post_message("C1", "UALICE", "hi over socket mode")
            await eventually(lambda: hub.with_text(headers, "hi over socket mode"), what="socket mode message")
            fake.socket_mode = False
            fake.http_event_url, fake.signing_secret = f"{hub.url}/api/slack/events", signing_secret
            fake.post_message("C1", "UALICE", "hi over http")
            await eventually(lambda: hub.with_text(headers, "hi over http"), what="events api message")
            r = await hub.client.post("/api/messages", json={"accountId": account_id, "chatId": "C1", "text": "from the hub"}, headers=headers)
            assert r.status_code == 201, r.text
            return [bot_token, app_token, client_secret, signing_secret, code, params["state"], fake.verification_token, key, *await _user_secrets(hub, headers)]


def _driver_scenario(platform: str) -> Scenario:
    """Any other platform with a conformance driver: connect through its fake, receive a
    message, send one; the secrets are what the account seals and the app settings the driver
    configures (tests/security/secrets_used.py), the hub's key and the user's token."""

    async def run(backend: str, tmp: Path) -> list[str]:
        from store import accounts as account_store
        from tests.security.secrets_used import settings_secrets, values

        driver, key = DRIVERS[platform](), _secret_key()
        extra = await driver.start()
        try:
            async with fresh_database(backend, tmp) as db:
                async with running_hub(e2e_env(backend, tmp, db, LOOMI_SECRET_KEY=key, **extra)) as hub:
                    headers = await hub.login()
                    account_id = await driver.connect(hub, headers)
                    await eventually(lambda: hub.in_state(headers, "connected"), what=f"{platform} connected", timeout=60)
                    await driver.post_message(f"hi {platform}")
                    got = await eventually(lambda: hub.with_text(headers, f"hi {platform}"), what=f"{platform} message", timeout=60)
                    if "send" in driver.abilities:  # answer into the chat the message came from
                        r = await hub.client.post("/api/messages", json={"accountId": account_id, "chatId": got["chatId"], "text": "from the hub"}, headers=headers)
                        assert r.status_code == 201, r.text
                    async with hub.hub.engine.connect() as conn:
                        account = await account_store.load_account(conn, hub.hub.vault, account_id)
                    assert account is not None
                    return [*values(account.credentials), *settings_secrets(extra), key, *await _user_secrets(hub, headers)]
        finally:
            await driver.stop()

    return run


_FRAGMENTS = [
    "=", "?", "&", ":", " ", '"', "'", "/", "-", ".", "_", "x", "7", "0123456789", "abcdefghijklmnopqrstuvwxyz",
    "token", "Password", "client_secret", "api_key", "code", "state", "sig", "Authorization", "bearer ", "Basic ",
    "Bot ", "/bot", "xoxb-", "XAPP-", "sk-", "eyJ", "eyJhbGciOi", "123456", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    # one whole example of each shape, so each is drawn alone often
    "eyJhbGciOi.eyJzdWIiOi.c2ln", "xoxb-1-abc", "xapp-1-abc", "sk-abcdefghijklmnopqrst", "/bot12345:abcdefghij/",
    "12345:ABCDEFGHIJKLMNOPQRSTUVWX", "Bearer abcdefghijkl", "authorization: Bot abc", '"token": "v"', "'secret': 'v'",
    "token=v", "?code=1", "&sig=2",
]


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=24).map("".join))
def test_the_quick_check_skips_only_lines_no_pattern_would_change(line: str) -> None:
    """`redact` skips the patterns when `_TRIGGER` finds nothing (most lines): that must never
    leave something a pattern would have masked."""
    slow = line
    for pattern, replacement in logs._PATTERNS:
        slow = pattern.sub(replacement, slow)
    if not logs._TRIGGER.search(line):
        assert slow == line
    assert logs.redact(line) == logs._known.mask(slow)


from tests.conformance.test_conformance import DRIVERS  # noqa: E402 - after the hand-written scenarios above

for _platform in sorted(DRIVERS):
    if _platform not in SCENARIOS:
        scenario(_platform)(_driver_scenario(_platform))
# runs that make HTTP calls through httpx whose URLs or headers carry a credential to mask
MASKED_REQUESTS = {"telegram", "slack"}


@pytest.mark.parametrize("platform", sorted(SCENARIOS))
async def test_no_secret_in_the_debug_log_of_a_platform_run(platform: str, backend: str, tmp_path: Path) -> None:
    with captured_debug_log() as out:
        used = await SCENARIOS[platform](backend, tmp_path)
    text = out.getvalue()
    if platform in MASKED_REQUESTS:
        assert "HTTP Request:" in text and "[redacted]" in text, "the run logged no requests: nothing was tested"
    assert len(text.splitlines()) > 20 and len(used) >= 3, "the run logged nearly nothing: nothing was tested"
    leaked = [s for s in used if s in text]
    assert not leaked, f"{platform}: {len(leaked)} secret(s) in the log, e.g. line: " + next(
        line for line in text.splitlines() if any(s in line for s in leaked)
    )


# -- the filter itself ---------------------------------------------------------------------------


def _through_filter(logger: str, msg: object, *args: object, exc: bool = False) -> str:
    out = io.StringIO()
    handler = logs.handler(out)
    log = logging.getLogger(logger)
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        if exc:
            try:
                raise RuntimeError(*args)
            except RuntimeError:
                log.exception(msg)
        else:
            log.info(msg, *args)
    finally:
        log.removeHandler(handler)
        log.setLevel(logging.NOTSET)
    return out.getvalue()


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ("HTTP Request: POST http://127.0.0.1:9/bot123456:AAE2eTestTokenForTheLoopbackFakeXYZ/getUpdates", "AAE2eTestTokenForTheLoopbackFakeXYZ"),
        ("{'Authorization': 'Bearer xoxb-1-2-sEcReT'}", "sEcReT"),
        ("Authorization: Bearer opaque-token-value", "opaque-token-value"),
        ("Authorization: Bot discord.token.value", "discord.token.value"),
        ("POST /oauth.v2.access client_id=1&client_secret=shhh-1234&code=c0de", "shhh-1234"),
        ("GET /cb?code=c0deXYZ&state=st4te", "c0deXYZ"),
        ("https://x/?access_token=at-5678&token=tk-9012", "at-5678"),
        ("https://x/?access_token=at-5678&token=tk-9012", "tk-9012"),
        ('{"password": "hunter2hunter2", "code": "invalid_input"}', "hunter2hunter2"),
        ("wss://wss-primary.slack.com/link/?ticket=tick-et-1&app_id=A1", "tick-et-1"),
        ("app token xapp-1-A1-2-abcdef user token xoxp-9-8-secret", "xapp-1-A1-2-abcdef"),
        ("app token xapp-1-A1-2-abcdef user token xoxp-9-8-secret", "xoxp-9-8-secret"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJl here", "eyJzdWIiOiJ1In0"),
    ],
)
def test_credential_shapes_are_masked(line: str, secret: str) -> None:
    assert secret not in logs.redact(line)


def test_arguments_of_any_type_and_tracebacks_are_masked() -> None:
    url = httpx.URL("http://127.0.0.1:9/bot987654:ZZsecretpartofthebottoken12345/getMe")  # not a str
    logged = _through_filter("httpx", "HTTP Request: %s %s", "GET", url)
    assert "ZZsecretpartofthebottoken12345" not in logged and "getMe" in logged
    logged = _through_filter("loomi.test", "failed", "token=tb-abcdef in the error", exc=True)
    assert "tb-abcdef" not in logged and "RuntimeError" in logged
    logged = _through_filter("loomi.test", "%d%% done %s", 50, {"nested": ["xoxb-1-2-nestedsecret"]})
    assert "nestedsecret" not in logged and "50% done" in logged


def test_values_the_vault_opened_are_masked_whatever_their_shape() -> None:
    from store.crypto import Vault

    vault = Vault("vault-test-key-" + secrets.token_hex(8))
    shapeless = "plain" + secrets.token_hex(6)
    sealed = vault.encrypt({"password": shapeless, "team_id": "T0TEAM12345"}, "acct_1")
    assert vault.decrypt(sealed, "acct_1")["password"] == shapeless
    logged = _through_filter("some.library", "logged in with %s for team %s", shapeless, "T0TEAM12345")
    assert shapeless not in logged and "T0TEAM12345" in logged  # ids stay readable


def test_httpx_request_lines_are_quiet_unless_debug() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure("info")
        assert not logging.getLogger("httpx").isEnabledFor(logging.INFO)
        logs.configure("debug")
        assert logging.getLogger("httpx").isEnabledFor(logging.DEBUG)
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        for name in logs.CHATTY:
            logging.getLogger(name).setLevel(logging.NOTSET)


def test_thousands_of_known_values_mask_whole_values_only() -> None:
    many = ["many" + secrets.token_urlsafe(24) for _ in range(3000)]
    logs.remember_secrets({"tokens": many})
    prefix_only = many[0][:12]
    line = f"GET /x?y=1 sent {many[-1]} and {many[0]}tail, not {prefix_only}"
    masked = logs.redact(line)
    assert many[-1] not in masked and many[0] not in masked and prefix_only in masked and "tail" in masked


def test_a_remembered_value_that_is_also_a_key_hides_no_field() -> None:
    """Found by the full suite: once some credential's value was the word "password", masking
    known values first turned `"password": "…"` into `"[redacted]": "…"` and the field's
    value went out in clear. Shapes are masked first now."""
    from loomi.logs import redact, remember_secrets

    remember_secrets({"secret": "password"})
    line = redact('{"password": "hunter2hunter2", "code": "invalid_input"}')
    assert "hunter2hunter2" not in line and "invalid_input" in line
