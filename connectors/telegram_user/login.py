"""Sign in as the person: phone -> the code Telegram sends -> the 2FA password when set.

Each step runs on a Telethon client rebuilt from the StringSession kept in the login state
(sealed by the route in Redis for 10 minutes), so any API process can take the next step.
A wrong code or password asks again; an expired code ends the flow. At `done` the account's
credentials are that session (the vault encrypts it), which is the login itself.
"""

from __future__ import annotations

import re
from typing import Any

from telethon import TelegramClient, errors

from connectors.base import AccountSpec, LoginStep, NeedsReauth, SetupContext
from connectors.telegram_user import client as tg
from connectors.telegram_user.settings import TelegramUserSettings

PHONE = re.compile(r"^\+?[0-9][0-9 ()-]{5,20}$")
PHONE_STEP = LoginStep("fields", "Enter the phone number of your Telegram account", fields=["phone"])
CODE_STEP = LoginStep("fields", "Enter the login code Telegram sent to your app", fields=["code"])
PASSWORD_STEP = LoginStep("fields", "This account has two-step verification: enter its password", fields=["password"])


def _step(template: LoginStep, state: dict[str, Any], message: str | None = None) -> LoginStep:
    return LoginStep(template.kind, message or template.message, list(template.fields), state=state)


def _phone(fields: dict[str, Any]) -> str:
    phone = fields.get("phone") or fields.get("phoneNumber")
    if not isinstance(phone, str) or not PHONE.match(phone.strip()):
        raise ValueError("phone is required: the account's number in international format, e.g. +4915112345678")
    return re.sub(r"[ ()-]", "", phone.strip())


async def _done(client: TelegramClient, phone: str) -> LoginStep:
    me = await client.get_me()
    name = f"@{me.username}" if me.username else " ".join(filter(None, (me.first_name, me.last_name))) or phone
    spec = AccountSpec(external_id=str(me.id), name=name,
                       credentials={"session": client.session.save(), "phone": phone})
    return LoginStep("done", f"Signed in as {name}", spec=spec)


async def _send_code(settings: TelegramUserSettings, phone: str) -> LoginStep:
    client = tg.new_client(settings)
    try:
        await client.connect()
        sent = await client.send_code_request(phone)
    except (errors.PhoneNumberInvalidError, errors.PhoneNumberUnoccupiedError) as err:
        raise ValueError(f"Telegram does not accept this phone number: {type(err).__name__}") from None
    except (errors.PhoneNumberBannedError, errors.ApiIdInvalidError) as err:
        raise NeedsReauth(f"Telegram refused: {type(err).__name__}") from None
    except errors.RPCError as err:
        raise tg.refusal(err) from None
    finally:
        session = client.session.save()
        await client.disconnect()
    return _step(CODE_STEP, {"stage": "code", "phone": phone, "phone_code_hash": sent.phone_code_hash, "session": session})


async def login_start(settings: TelegramUserSettings, fields: dict[str, Any], setup: SetupContext) -> LoginStep:
    """`{phone}` sends the code at once; without it the first step asks for the phone."""
    tg.app_credentials(settings)  # NotConfigured before anything else
    if not fields.get("phone") and not fields.get("phoneNumber"):
        return _step(PHONE_STEP, {"stage": "phone"})
    return await _send_code(settings, _phone(fields))


async def login_next(settings: TelegramUserSettings, state: dict[str, Any], fields: dict[str, Any],
                     setup: SetupContext) -> LoginStep:
    stage = state.get("stage")
    template = {"phone": PHONE_STEP, "code": CODE_STEP}.get(stage, PASSWORD_STEP)
    wanted = template.fields[0]
    value = fields.get(wanted)
    if not fields:  # the client polls: nothing changes until the person submits
        return _step(template, state)
    if stage == "phone":
        return await _send_code(settings, _phone(fields))
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{wanted} is required")
    client = tg.new_client(settings, state["session"])
    try:
        await client.connect()
        if stage == "code":
            await client.sign_in(state["phone"], value.strip(), phone_code_hash=state["phone_code_hash"])
        else:
            await client.sign_in(password=value)
        return await _done(client, state["phone"])
    except errors.SessionPasswordNeededError:
        return _step(PASSWORD_STEP, {**state, "stage": "password", "session": client.session.save()})
    except errors.PhoneCodeInvalidError:
        return _step(CODE_STEP, state, "That code is not right; enter the code again")
    except errors.PasswordHashInvalidError:
        return _step(PASSWORD_STEP, state, "That password is not right; try again")
    except (errors.PhoneCodeExpiredError, errors.PhoneCodeEmptyError):
        return LoginStep("failed", "The code expired; start again")
    except errors.RPCError as err:
        raise tg.refusal(err) from None
    finally:
        await client.disconnect()
