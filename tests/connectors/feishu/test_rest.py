"""Send, backfill, chat list, set-up and rate limits through lark-oapi against the fake."""

from __future__ import annotations

import json
import time

import pytest

from connectors.base import ChangeKind, NeedsReauth, Outbound, RateLimited, SetupContext
from connectors.feishu.client import FeishuApi, _tokens
from connectors.feishu.connector import FeishuConnector
from tests.connectors.feishu.conftest import ALICE, APP, BOT, DM, GROUP, SECRET, make_account
from tests.fakes.feishu import FakeFeishu

SETUP = SetupContext(user_id="user-1", public_url="https://hub.example.com")


async def test_send_and_reply(fs: FakeFeishu, connector: FeishuConnector) -> None:
    account = make_account()
    sent = await connector.send(account, Outbound(chat_id=GROUP, text="hello from loomi"))
    parent = fs.post_message(GROUP, ALICE, "question")
    reply = await connector.send(account, Outbound(chat_id=GROUP, text="answer", reply_to_id=parent))
    assert [json.loads(m["body"]["content"])["text"] for m in fs.sent] == ["hello from loomi", "answer"]
    assert sent.native_id == fs.sent[0]["message_id"] and sent.chat_id == GROUP and sent.sent_at > 0
    assert reply.native_id == fs.sent[1]["message_id"] and fs.sent[1]["parent_id"] == parent and reply.thread_id == parent
    assert fs.calls[f"POST im/v1/messages/{parent}/reply"] == 1


async def test_rate_limit_is_waited_out_then_handed_on(fs: FakeFeishu, connector: FeishuConnector) -> None:
    account = make_account()
    await connector.send(account, Outbound(chat_id=GROUP, text="warm the token"))
    fs.rate_limit_next(1, reset=1)
    started = time.monotonic()
    await connector.send(account, Outbound(chat_id=GROUP, text="after the limit"))
    assert time.monotonic() - started >= 1.0 and len(fs.sent) == 2
    fs.rate_limit_next(1, reset=120)  # more than we wait in place: the caller defers the work
    with pytest.raises(RateLimited) as err:
        await connector.send(account, Outbound(chat_id=GROUP, text="deferred"))
    assert err.value.retry_after == 120 and len(fs.sent) == 2


async def test_list_chats_and_backfill_pages_oldest_first(fs: FakeFeishu, connector: FeishuConnector) -> None:
    account = make_account()
    ids = [fs.post_message(GROUP, ALICE, f"old {i}", push=False) for i in range(60)]
    fs.edit_message(ids[1], "old 1, edited")
    fs.recall_message(ids[2])
    assert await connector.list_chats(account) == [GROUP, DM]
    envelopes, cursor, pages = [], None, 0
    while True:
        page = await connector.backfill(account, GROUP, cursor, None)
        envelopes += page.envelopes
        pages += 1
        cursor = page.cursor
        if cursor is None:
            break
    assert pages == 2 and [e.delivery_id for e in envelopes] == ids
    assert all(e.source == "backfill" for e in envelopes)
    changes = [c for e in envelopes for c in connector.normalize(e, account)]
    assert [c.kind for c in changes[:5]] == [ChangeKind.UPSERT, ChangeKind.UPSERT, ChangeKind.EDIT,
                                            ChangeKind.DELETE, ChangeKind.UPSERT]
    assert changes[0].message.chat_name == "Team" and changes[2].message.text == "old 1, edited"


async def test_backfill_since_oldest_and_without_permission(fs: FakeFeishu, connector: FeishuConnector) -> None:
    account = make_account()
    fs.post_message(GROUP, ALICE, "before", push=False)
    fs._clock_ms += 5000  # the next messages are 5 s later
    after = [fs.post_message(GROUP, ALICE, f"after {i}", push=False) for i in range(2)]
    oldest = str(int(fs.history(GROUP)[1]["create_time"]) - 1000)
    page = await connector.backfill(account, GROUP, None, oldest)
    assert [e.delivery_id for e in page.envelopes] == after and page.cursor is None
    fs.history_allowed = False
    empty = await connector.backfill(account, GROUP, None, None)
    assert empty.envelopes == [] and empty.cursor is None


async def test_connect_checks_the_app_and_names_feishus_complaint(fs: FakeFeishu, connector: FeishuConnector) -> None:
    spec = await connector.connect({"appId": APP, "appSecret": SECRET, "verificationToken": "vt"}, SETUP)
    assert spec.external_id == APP and spec.name == "Loomi"
    assert spec.credentials == {"app_id": APP, "app_secret": SECRET, "bot_open_id": BOT, "verification_token": "vt"}
    assert spec.settings == {"mode": "websocket", "public_url": "https://hub.example.com"}
    with pytest.raises(NeedsReauth, match="app secret invalid"):
        await connector.connect({"appId": APP, "appSecret": "nope"}, SETUP)
    with pytest.raises(NeedsReauth, match="app_id not found"):
        await connector.connect({"appId": "cli_unknown", "appSecret": "x"}, SETUP)
    for bad in ({}, {"appId": APP}, {"appId": APP, "appSecret": 5}, {"appId": APP, "appSecret": "s", "mode": "poll"},
                {"appId": APP, "appSecret": SECRET, "mode": "webhook"}):
        with pytest.raises(ValueError):
            await connector.connect(bad, SETUP)


async def test_tokens_are_kept_per_app_and_secret(fs: FakeFeishu) -> None:
    """lark-oapi's own cache is keyed by app id alone: a changed secret must not ride on the old
    token, and two accounts of one app id with different secrets must not share one."""
    _tokens.clear()
    good = FeishuApi(fs.base_url, APP, SECRET)
    token = await good.token()
    assert await FeishuApi(fs.base_url, APP, SECRET).token() == token  # cached per (app, secret)
    with pytest.raises(NeedsReauth):
        await FeishuApi(fs.base_url, APP, "changed-secret").token()
    assert fs.calls["tenant_access_token"] == 2


async def test_a_revoked_token_is_fetched_again_once(fs: FakeFeishu, connector: FeishuConnector) -> None:
    account = make_account()
    await connector.send(account, Outbound(chat_id=GROUP, text="one"))
    fs._tokens.clear()  # Feishu forgot every token (expired early, app re-published…)
    await connector.send(account, Outbound(chat_id=GROUP, text="two"))
    assert len(fs.sent) == 2 and fs.calls["tenant_access_token"] >= 2
