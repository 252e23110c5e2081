"""The login flow's steps, through Telethon's real `send_code_request` / `sign_in` (and its SRP
computation for the 2FA password) against FakeTelegram, which answers auth.sendCode,
auth.signIn (SESSION_PASSWORD_NEEDED, PHONE_CODE_INVALID, PHONE_CODE_EXPIRED),
account.getPassword and auth.checkPassword (the server half of SRP) in-process. What is
replaced: only Telethon's MTProto sender (no loopback MTProto server can exist here)."""

from __future__ import annotations

import pytest
from telethon.sessions import StringSession

from config.settings import load_settings
from connectors.base import NotConfigured, SetupContext
from connectors.telegram_user.connector import TelegramUserConnector
from tests.fakes.telegram_user import FakeTelegram

SETUP = SetupContext(user_id="u1", public_url="http://hub")


async def test_phone_code_and_2fa_password(world: FakeTelegram, connector: TelegramUserConnector) -> None:
    world.password = "correct horse"
    step = await connector.login_start({}, SETUP)
    assert (step.kind, step.fields) == ("fields", ["phone"])
    assert (await connector.login_next(step.state, {}, SETUP)).fields == ["phone"]  # a poll changes nothing
    step = await connector.login_next(step.state, {"phone": world.phone}, SETUP)
    assert (step.kind, step.fields) == ("fields", ["code"]) and step.state["phone_code_hash"]
    wrong = await connector.login_next(step.state, {"code": "00000"}, SETUP)
    assert wrong.fields == ["code"] and "not right" in wrong.message
    step = await connector.login_next(wrong.state, {"code": world.code}, SETUP)
    assert (step.kind, step.fields) == ("fields", ["password"])
    wrong = await connector.login_next(step.state, {"password": "wrong"}, SETUP)
    assert wrong.fields == ["password"] and "not right" in wrong.message
    done = await connector.login_next(wrong.state, {"password": "correct horse"}, SETUP)
    assert done.kind == "done" and done.spec is not None
    assert (done.spec.external_id, done.spec.name) == (str(world.me_id), "@loomi_me")
    assert done.spec.credentials["phone"] == world.phone
    assert world.requests.count("CheckPasswordRequest") == 2  # SRP checked by the fake, twice
    # the stored session is the login: a new client on it is signed in
    client = world.client_class()(StringSession(done.spec.credentials["session"]), 1, "x")
    await client.connect()
    assert await client.is_user_authorized() and (await client.get_me()).id == world.me_id
    await client.disconnect()


async def test_without_2fa_the_code_is_enough(world: FakeTelegram, connector: TelegramUserConnector) -> None:
    step = await connector.login_start({"phone": world.phone}, SETUP)
    done = await connector.login_next(step.state, {"code": world.code}, SETUP)
    assert done.kind == "done" and "CheckPasswordRequest" not in world.requests


async def test_an_expired_code_fails_and_bad_input_is_a_value_error(world: FakeTelegram,
                                                                     connector: TelegramUserConnector) -> None:
    step = await connector.login_start({"phone": world.phone}, SETUP)
    world.code_expired = True
    assert (await connector.login_next(step.state, {"code": world.code}, SETUP)).kind == "failed"
    with pytest.raises(ValueError, match="phone"):
        await connector.login_start({"phone": "call me"}, SETUP)
    with pytest.raises(ValueError, match="does not accept"):
        await connector.login_start({"phone": "+15559999999"}, SETUP)  # Telegram: PHONE_NUMBER_INVALID
    with pytest.raises(ValueError, match="code is required"):
        await connector.login_next(step.state, {"code": " "}, SETUP)


@pytest.mark.parametrize("env, variable", [({}, "LOOMI_TELEGRAM_USER_API_ID"),
                                           ({"LOOMI_TELEGRAM_USER_API_ID": "1"}, "LOOMI_TELEGRAM_USER_API_HASH")])
async def test_missing_app_credentials_are_not_configured(world: FakeTelegram, env: dict, variable: str) -> None:
    connector = TelegramUserConnector(load_settings(env).platform("telegram_user"))  # type: ignore[arg-type]
    with pytest.raises(NotConfigured) as err:
        await connector.login_start({"phone": world.phone}, SETUP)
    assert err.value.variable == variable and world.requests == []
