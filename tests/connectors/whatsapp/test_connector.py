"""The connector against the Graph API fake: registering a number, sending (text, replies,
rate limits), a revoked token, and the idle listener."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from config.settings import PlatformSettings
from connectors.base import AccountState, NeedsReauth, Outbound, RateLimited, SetupContext
from connectors.whatsapp.connector import WhatsAppConnector
from tests.connectors.whatsapp.conftest import ALICE, APP_SECRET, NUMBER_ID, TOKEN, VERIFY, account
from tests.fakes.whatsapp import FakeGraph
from tests.waiting import wait_until

SETUP = SetupContext(user_id="user-1", public_url="https://hub.example.com")
FIELDS = {"phoneNumberId": NUMBER_ID, "accessToken": TOKEN, "appSecret": APP_SECRET, "verifyToken": VERIFY}


async def test_connect_reads_the_number_and_keeps_the_webhook_url(settings: PlatformSettings) -> None:
    spec = await WhatsAppConnector(settings).connect(FIELDS, SETUP)
    assert spec.external_id == NUMBER_ID and spec.name == "Loomi Test (+1 555-000-1234)"
    assert spec.credentials == {"access_token": TOKEN, "app_secret": APP_SECRET, "verify_token": VERIFY}
    assert spec.settings["webhookUrl"] == "https://hub.example.com/api/whatsapp/webhook/{accountId}"


async def test_a_bad_token_is_rejected_with_metas_message(settings: PlatformSettings) -> None:
    with pytest.raises(NeedsReauth, match="Error validating access token"):
        await WhatsAppConnector(settings).connect({**FIELDS, "accessToken": "EAAwrong-token-xxxxxxxx"}, SETUP)
    with pytest.raises(NeedsReauth, match="does not exist"):
        await WhatsAppConnector(settings).connect({**FIELDS, "phoneNumberId": "123456789"}, SETUP)


@pytest.mark.parametrize("fields", [
    {k: v for k, v in FIELDS.items() if k != "appSecret"},
    {k: v for k, v in FIELDS.items() if k != "verifyToken"},
    {**FIELDS, "phoneNumberId": "+1 555 000 1234"},
    {**FIELDS, "accessToken": ""},
])
async def test_missing_or_malformed_fields_are_value_errors(settings: PlatformSettings, graph: FakeGraph, fields: dict) -> None:
    with pytest.raises(ValueError):
        await WhatsAppConnector(settings).connect(fields, SETUP)
    assert graph.calls["number"] == 0


async def test_send_text_and_a_reply(settings: PlatformSettings, graph: FakeGraph) -> None:
    connector = WhatsAppConnector(settings)
    sent = await connector.send(account(), Outbound(chat_id=ALICE, text="hello from the hub"))
    reply = await connector.send(account(), Outbound(chat_id=ALICE, text="re", reply_to_id="wamid.parent"))
    assert sent.native_id.startswith("wamid.") and sent.chat_id == ALICE and sent.native_id != reply.native_id
    assert graph.sent[0] == {"messaging_product": "whatsapp", "recipient_type": "individual", "to": ALICE,
                             "type": "text", "text": {"body": "hello from the hub"}, "id": sent.native_id}
    assert graph.sent[1]["context"] == {"message_id": "wamid.parent"}
    assert sent.raw["response"]["messages"][0]["id"] == sent.native_id


async def test_send_refuses_a_chat_id_that_is_not_a_wa_id(settings: PlatformSettings, graph: FakeGraph) -> None:
    with pytest.raises(ValueError, match="wa_id"):
        await WhatsAppConnector(settings).send(account(), Outbound(chat_id="+1 (650) 555-1234", text="x"))
    assert graph.calls["messages"] == 0


@pytest.mark.parametrize("status,code", [(429, 130429), (400, 131056), (400, 80007)])
async def test_rate_limits_within_the_budget_are_waited_out(settings: PlatformSettings, graph: FakeGraph,
                                                             status: int, code: int, monkeypatch: pytest.MonkeyPatch) -> None:
    graph.fail_next(1, status=status, code=code, message=f"(#{code}) limit")
    connector = WhatsAppConnector(settings, send_retry_budget=60)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # the wait is Meta's window (up to 60 s): record it, do not spend it
        waits.append(seconds)

    monkeypatch.setattr("connectors.whatsapp.outbound.sleep", sleep)
    sent = await connector.send(account(), Outbound(chat_id=ALICE, text="after the limit"))
    assert sent.native_id and [s["text"]["body"] for s in graph.sent] == ["after the limit"]
    assert waits == [{130429: 2.0, 131056: 6.0, 80007: 60.0}[code]]


async def test_beyond_the_budget_rate_limited_goes_to_the_caller(settings: PlatformSettings, graph: FakeGraph) -> None:
    graph.fail_next(1, code=131056)
    with pytest.raises(RateLimited) as err:
        await WhatsAppConnector(settings, send_retry_budget=1).send(account(), Outbound(chat_id=ALICE, text="x"))
    assert err.value.retry_after == 6.0 and graph.sent == []


async def test_a_revoked_token_is_needs_reauth_on_send_and_in_the_listener(settings: PlatformSettings, graph: FakeGraph) -> None:
    graph.revoke(NUMBER_ID)
    connector = WhatsAppConnector(settings)
    with pytest.raises(NeedsReauth, match="Session has expired"):
        await connector.send(account(), Outbound(chat_id=ALICE, text="x"))
    with pytest.raises(NeedsReauth):
        await connector.listen(Ctx())


class Ctx:
    def __init__(self) -> None:
        self.account = account()
        self.resume: dict[str, Any] = {}
        self.states: list[AccountState] = []

    async def emit(self, envelopes: list, resume: dict | None = None) -> None:
        raise AssertionError("a webhook platform's listener emits nothing")

    async def report(self, state: AccountState, detail: str | None = None) -> None:
        self.states.append(state)

    async def reconnected(self) -> None: ...


async def test_the_listener_reports_connected_and_idles(settings: PlatformSettings, graph: FakeGraph) -> None:
    ctx = Ctx()
    task = asyncio.create_task(WhatsAppConnector(settings, recheck_seconds=0.05).listen(ctx))
    await wait_until(lambda: graph.calls["number"] >= 2 and ctx.states)
    assert not task.done() and set(ctx.states) == {AccountState.CONNECTED} and graph.calls["number"] >= 2
    graph.revoke(NUMBER_ID)  # revoked while listening: noticed at the next check
    with pytest.raises(NeedsReauth):
        await asyncio.wait_for(task, 2)
