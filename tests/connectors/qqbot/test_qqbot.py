"""The QQ connector against FakeQQ (tests/fakes/qqbot.py): the gateway with resume, passive
replies, credentials, rate limits; normalize on dispatches shaped like QQ's docs."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

import pytest

from config.settings import load_settings
from connectors.base import (
    Account,
    AccountState,
    ChangeKind,
    ChatType,
    Envelope,
    NeedsReauth,
    Outbound,
    RateLimited,
    SetupContext,
)
from connectors.qqbot.connector import QQBotConnector
from connectors.qqbot.inbound import normalize
from tests.fakes.qqbot import FakeQQ, qq_time
from tests.waiting import wait_until

APP, SECRET, BOT = "102000001", "qq-app-secret-0123456789", "bot-openid-1"
GROUP, MEMBER, USER = "GROUPOPENID1", "MEMBEROPENID1", "USEROPENID1"
SETUP = SetupContext(user_id="user-1", public_url="https://hub.example")


@pytest.fixture
async def qq() -> AsyncIterator[FakeQQ]:
    async with FakeQQ(heartbeat_interval_ms=200) as fake:
        fake.add_app(APP, SECRET, bot_id=BOT, username="loomi-qq")
        yield fake


@pytest.fixture
def connector(qq: FakeQQ) -> QQBotConnector:
    settings = load_settings({"LOOMI_QQBOT_BASE_URL": qq.base_url, "LOOMI_QQBOT_TOKEN_URL": qq.token_url}).platform("qqbot")
    return QQBotConnector(settings, retry_delay=0.05)  # type: ignore[arg-type]


def account(secret: str = SECRET) -> Account:
    return Account("acc-qq-1", "user-1", "qqbot", BOT, "loomi-qq", {"app_id": APP, "app_secret": secret})


@dataclass
class Recording:
    """A ListenContext standing in for the supervisor: records emits, resume and states."""

    account: Account
    resume: dict[str, Any] = field(default_factory=dict)
    envelopes: list[Envelope] = field(default_factory=list)
    states: list[AccountState] = field(default_factory=list)

    async def emit(self, envelopes: list[Envelope], resume: dict[str, Any] | None = None) -> None:
        self.envelopes += envelopes
        if resume is not None:
            self.resume = resume

    async def report(self, state: AccountState, detail: str | None = None) -> None:
        self.states.append(state)

    async def reconnected(self) -> None:
        pass

    def texts(self) -> list[str]:
        return [e.payload["d"]["content"].strip() for e in self.envelopes]  # QQ keeps a space after the @bot


@contextlib.asynccontextmanager
async def listening(connector: QQBotConnector, ctx: Recording) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(connector.listen(ctx))
    try:
        await wait_until(lambda: AccountState.CONNECTED in ctx.states or task.done())
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


# ---------------------------------------------------------------------- normalize


def frame(kind: str, d: dict[str, Any], s: int = 1) -> Envelope:
    return Envelope("qqbot", "acc-qq-1", f"{kind}:{d.get('id')}", 0, {"op": 0, "s": s, "t": kind, "id": "ev", "d": d})


def test_group_at_message() -> None:
    (change,) = normalize(frame("GROUP_AT_MESSAGE_CREATE", {
        "id": "ROBOT1.0_a", "content": " hello there", "timestamp": "2024-05-06T13:37:18+08:00",
        "group_openid": GROUP, "author": {"member_openid": MEMBER},
        "attachments": [{"content_type": "image/png", "filename": "a.png", "url": "//multimedia.nt.qq.com/a.png", "size": 42}],
        "message_reference": {"message_id": "ROBOT1.0_parent"}}), account())
    m = change.message
    assert (change.kind, change.chat_id, change.native_id) == (ChangeKind.UPSERT, f"group:{GROUP}", "ROBOT1.0_a")
    assert (m.chat_type, m.sender_id, m.text, m.mentions, m.reply_to_id) == (
        ChatType.GROUP, MEMBER, "hello there", [BOT], "ROBOT1.0_parent")
    assert m.sent_at == 1714973838000 and m.is_self is False
    assert (m.attachments[0].url, m.attachments[0].content_type, m.attachments[0].size) == (
        "https://multimedia.nt.qq.com/a.png", "image/png", 42)


def test_c2c_message_and_bot_joining_a_group() -> None:
    (change,) = normalize(frame("C2C_MESSAGE_CREATE", {"id": "ROBOT1.0_b", "content": "hi", "timestamp": qq_time(),
                                                         "author": {"user_openid": USER}}), account())
    assert (change.chat_id, change.message.chat_type, change.message.mentions) == (f"user:{USER}", ChatType.DM, [])
    (joined,) = normalize(frame("GROUP_ADD_ROBOT", {"group_openid": GROUP, "op_member_openid": MEMBER}), account())
    assert (joined.kind, joined.chat_id, joined.chat.type) == (ChangeKind.CHAT, f"group:{GROUP}", ChatType.GROUP)
    assert normalize(frame("FRIEND_ADD", {"openid": USER}), account()) == []


@pytest.mark.parametrize("payload", [
    None, [], {"op": 1}, {"op": 0, "t": 5},
    {"op": 0, "t": "C2C_MESSAGE_CREATE", "d": {"content": "no id", "author": {"user_openid": USER}}},
    {"op": 0, "t": "C2C_MESSAGE_CREATE", "d": {"id": "x", "content": "no time", "author": {"user_openid": USER}}},
    {"op": 0, "t": "GROUP_AT_MESSAGE_CREATE", "d": {"id": "x", "timestamp": qq_time(), "author": {}}},
])
def test_unreadable_dispatches_raise_value_error(payload: Any) -> None:
    with pytest.raises(ValueError):
        normalize(Envelope("qqbot", "a", "d", 0, payload), account())


# ---------------------------------------------------------------------- connect


async def test_connect_checks_the_app_id_and_secret(qq: FakeQQ, connector: QQBotConnector) -> None:
    spec = await connector.connect({"appId": APP, "appSecret": f" {SECRET} "}, SETUP)
    assert (spec.external_id, spec.name, spec.credentials) == (BOT, "loomi-qq", {"app_id": APP, "app_secret": SECRET})
    with pytest.raises(NeedsReauth) as err:
        await connector.connect({"appId": APP, "appSecret": "wrong"}, SETUP)
    assert "invalid appid or secret" in str(err.value) and "wrong" not in str(err.value)
    for fields in ({}, {"appId": APP}, {"appId": "", "appSecret": SECRET}, {"appId": 1, "appSecret": SECRET}):
        with pytest.raises(ValueError):
            await connector.connect(fields, SETUP)


# ---------------------------------------------------------------------- the gateway


async def test_messages_are_emitted_with_their_resume_position(qq: FakeQQ, connector: QQBotConnector) -> None:
    ctx = Recording(account())
    async with listening(connector, ctx):
        ids = [await qq.post_group(APP, GROUP, MEMBER, f"m{i}") for i in range(3)]
        ids.append(await qq.post_c2c(APP, USER, "direct"))
        await wait_until(lambda: len(ctx.envelopes) == 4)
        await asyncio.sleep(0.5)  # heartbeats flow and are acked
    assert ctx.texts() == ["m0", "m1", "m2", "direct"]
    assert [e.delivery_id.split(":", 1)[1] for e in ctx.envelopes] == ids
    session = next(iter(qq.sessions))
    assert ctx.resume == {"session_id": session, "seq": ctx.envelopes[-1].payload["s"]}
    assert qq.identifies == 1 and qq.heartbeats >= 1


async def test_a_drop_resumes_and_replays_what_was_missed_once(qq: FakeQQ, connector: QQBotConnector) -> None:
    ctx = Recording(account())
    async with listening(connector, ctx):
        await qq.post_group(APP, GROUP, MEMBER, "before")
        await wait_until(lambda: len(ctx.envelopes) == 1)
        await qq.drop_connections()
        for i in range(3):
            await qq.post_group(APP, GROUP, MEMBER, f"during {i}")  # kept for the session's RESUME
        await wait_until(lambda: len(ctx.envelopes) == 4)
        await qq.send_reconnect()  # op 7: resume again, nothing new, nothing repeated
        await wait_until(lambda: len(qq.resumes) == 2)
        await qq.post_group(APP, GROUP, MEMBER, "after")
        await wait_until(lambda: len(ctx.envelopes) == 5)
    assert ctx.texts() == ["before", "during 0", "during 1", "during 2", "after"]
    assert qq.identifies == 1 and [seq for _, seq in qq.resumes][0] == ctx.envelopes[0].payload["s"]


async def test_a_restart_resumes_from_the_saved_position(qq: FakeQQ, connector: QQBotConnector) -> None:
    first = Recording(account())
    async with listening(connector, first):
        await qq.post_c2c(APP, USER, "one")
        await wait_until(lambda: len(first.envelopes) == 1)
    await qq.post_c2c(APP, USER, "while no listener ran")
    second = Recording(account(), resume=dict(first.resume))  # what the supervisor hands a new worker
    async with listening(connector, second):
        await wait_until(lambda: len(second.envelopes) == 1)
    assert second.texts() == ["while no listener ran"] and qq.identifies == 1


async def test_an_invalid_session_identifies_again(qq: FakeQQ, connector: QQBotConnector) -> None:
    ctx = Recording(account(), resume={"session_id": "gone", "seq": 7})
    async with listening(connector, ctx):
        await qq.post_c2c(APP, USER, "fresh session")
        await wait_until(lambda: len(ctx.envelopes) == 1)
    assert qq.identifies == 1 and ctx.resume["session_id"] in qq.sessions


async def test_a_rejected_secret_is_needs_reauth(qq: FakeQQ, connector: QQBotConnector) -> None:
    with pytest.raises(NeedsReauth):
        await connector.listen(Recording(account(secret="revoked")))  # type: ignore[arg-type]


# ---------------------------------------------------------------------- send


async def test_send_answers_the_newest_inbound_message(qq: FakeQQ, connector: QQBotConnector) -> None:
    ctx = Recording(account())
    async with listening(connector, ctx):
        asked = await qq.post_group(APP, GROUP, MEMBER, "what time?")
        await wait_until(lambda: len(ctx.envelopes) == 1)
    last = ctx.envelopes[0].payload
    sent = await connector.send(account(), Outbound(chat_id=f"group:{GROUP}", text="noon", last_inbound=last))
    second = await connector.send(account(), Outbound(chat_id=f"group:{GROUP}", text="or one", last_inbound=last))
    first_body, second_body = qq.sent[0]["body"], qq.sent[1]["body"]
    assert qq.sent[0]["path"] == f"/v2/groups/{GROUP}/messages" and first_body["msg_id"] == asked
    assert first_body["content"] == "noon" and first_body["msg_seq"] != second_body["msg_seq"]
    assert sent.native_id.startswith("SENT_") and sent.chat_id == f"group:{GROUP}" and second.native_id != sent.native_id
    direct = await connector.send(account(), Outbound(chat_id=f"user:{USER}", text="unprompted"))
    assert qq.sent[2]["path"] == f"/v2/users/{USER}/messages" and "msg_id" not in qq.sent[2]["body"]
    with pytest.raises(ValueError):
        await connector.send(account(), Outbound(chat_id="channel:1", text="?"))
    assert direct.native_id


async def test_send_raises_rate_limited_with_the_retry_after(qq: FakeQQ, connector: QQBotConnector) -> None:
    qq.rate_limit_next(1)
    with pytest.raises(RateLimited) as err:
        await connector.send(account(), Outbound(chat_id=f"user:{USER}", text="too fast"))
    assert err.value.retry_after == 1 and qq.sent == []
    await connector.send(account(), Outbound(chat_id=f"user:{USER}", text="later"))
    assert qq.sent_texts() == ["later"]
