"""send, history backfill and the OAuth2 install against FakeDiscord, through discord.py's HTTP
client: replies, threads, 429s waited out or handed on, paging both ways, guild boundaries."""

from __future__ import annotations

import time

import httpx
import pytest

from connectors.base import Account, ChangeKind, Envelope, NeedsReauth, NotConfigured, Outbound, RateLimited
from connectors.discord.client import snowflake_ms
from connectors.discord.connector import DiscordConnector
from tests.connectors.discord.conftest import discord_settings, make_account
from tests.fakes.discord import FakeDiscord


async def test_send_plain_reply_and_into_a_thread(fake: FakeDiscord, world: dict[str, str],
                                                  connector: DiscordConnector, account: Account) -> None:
    general = world["general"]
    original = fake.post_message(general, world["alice"], "question")
    sent = await connector.send(account, Outbound(chat_id=general, text="hello @everyone"))
    assert fake.sent[-1]["content"] == "hello @everyone" and sent.native_id == fake.sent[-1]["id"]
    assert (sent.chat_id, sent.sent_at) == (general, snowflake_ms(sent.native_id))
    reply = await connector.send(account, Outbound(chat_id=general, text="answer", reply_to_id=original))
    assert fake.sent[-1]["message_reference"]["message_id"] == original and reply.raw["type"] == 19
    gone = await connector.send(account, Outbound(chat_id=general, text="to nothing", reply_to_id="123"))
    assert gone.native_id == fake.sent[-1]["id"] and "message_reference" not in fake.sent[-1]
    thread = fake.add_thread(general, "topic")
    in_thread = await connector.send(account, Outbound(chat_id=general, thread_id=thread, text="in the thread"))
    assert in_thread.chat_id == thread and fake.sent[-1]["channel_id"] == thread

    # the echo normalizes to the same chat and id, marked as ours
    echo = Envelope("discord", account.id, "x", 0, {"t": "MESSAGE_CREATE", "d": fake._gateway_message(fake.sent[-1])})
    (change,) = connector.normalize(echo, account)
    assert (change.chat_id, change.native_id, change.message.is_self) == (thread, in_thread.native_id, True)
    assert fake.calls["GET /users/@me"] == 1  # one logged-in client for every send


async def test_send_waits_out_short_429s_and_hands_on_long_ones(fake: FakeDiscord, world: dict[str, str],
                                                                connector: DiscordConnector, account: Account) -> None:
    fake.rate_limit_next(2, retry_after=0.25)
    started = time.monotonic()
    await connector.send(account, Outbound(chat_id=world["general"], text="patient"))
    assert time.monotonic() - started >= 0.5 and len(fake.rate_limited) == 2
    assert [m["content"] for m in fake.sent] == ["patient"]

    fake.rate_limit_next(1, retry_after=45.0)
    with pytest.raises(RateLimited) as err:
        await connector.send(account, Outbound(chat_id=world["general"], text="later"))
    assert err.value.retry_after == 45.0 and [m["content"] for m in fake.sent] == ["patient"]


async def test_bucket_headers_pace_a_burst(fake: FakeDiscord, world: dict[str, str],
                                           connector: DiscordConnector, account: Account) -> None:
    """With X-RateLimit-Remaining reaching 0, discord.py waits for the reset before the next
    call instead of drawing a 429."""
    fake.bucket_limit = 3
    for i in range(7):
        await connector.send(account, Outbound(chat_id=world["general"], text=f"burst {i}"))
    assert len(fake.sent) == 7 and fake.rate_limited == []


async def test_an_account_only_reaches_its_own_guild(fake: FakeDiscord, world: dict[str, str],
                                                     connector: DiscordConnector, account: Account) -> None:
    other = fake.add_guild("Someone else's")
    foreign = fake.add_channel(other, "secret")
    fake.add_history_only(foreign, world["bob"], "not yours")
    with pytest.raises(ValueError, match="not in this account's guild"):
        await connector.send(account, Outbound(chat_id=foreign, text="leak"))
    with pytest.raises(ValueError, match="not in this account's guild"):
        await connector.backfill(account, foreign, None, None)
    assert fake.sent == [] and fake.calls["GET /channels/{channel_id}/messages"] == 0
    assert foreign not in await connector.list_chats(account)


async def test_backfill_pages_back_and_recovers_gaps_forward(fake: FakeDiscord, world: dict[str, str],
                                                             connector: DiscordConnector, account: Account) -> None:
    general = world["general"]
    fake.add_channel(world["guild"], "voice", kind=2)
    news = fake.add_channel(world["guild"], "news", kind=5)
    old = [fake.add_history_only(general, world["alice"], f"old {i}") for i in range(230)]
    thread = fake.add_thread(general, "a topic")
    in_thread = fake.add_history_only(thread, world["bob"], "said in the thread")
    assert await connector.list_chats(account) == [general, news, thread]
    (threaded,) = (await connector.backfill(account, thread, None, None)).envelopes
    assert threaded.payload["d"]["id"] == in_thread

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await connector.backfill(account, general, cursor, None)
        pages += 1
        seen += [e.payload["d"]["id"] for e in page.envelopes]
        cursor = page.cursor
        if cursor is None:
            break
    assert pages == 3 and sorted(seen, key=int) == old and len(seen) == len(set(seen))
    env = page.envelopes[0]
    assert (env.source, env.delivery_id, env.payload["d"]["guild_id"]) == ("backfill", f"MESSAGE_CREATE:{env.payload['d']['id']}", world["guild"])
    (change,) = connector.normalize(env, account)
    assert change.kind is ChangeKind.UPSERT and change.message.text.startswith("old ")

    # gap recovery: everything from the newest stored message's millisecond on, walking forward;
    # a message sharing that millisecond is not lost
    since = snowflake_ms(old[-1])
    time.sleep(0.002)
    missed = [fake.add_history_only(general, world["alice"], f"missed {i}") for i in range(120)]
    same_ms = [m["id"] for m in fake.history(general) if snowflake_ms(m["id"]) == since]
    got: list[str] = []
    cursor = None
    while True:
        page = await connector.backfill(account, general, cursor, str(since))
        got += [e.payload["d"]["id"] for e in page.envelopes]
        cursor = page.cursor
        if cursor is None:
            break
    assert sorted(got, key=int) == sorted(set(same_ms) | set(missed), key=int)


async def test_oauth_install_makes_the_guild_the_account(fake: FakeDiscord, world: dict[str, str],
                                                         connector: DiscordConnector) -> None:
    params = connector.authorize_params()
    assert params == {"permissions": str(1024 | 2048 | 65536 | 64), "integration_type": "0"}
    guild = fake.add_guild("Installed", bot_member=False)
    fake.add_oauth_code("c1", guild, redirect_uri="http://hub/cb")
    async with httpx.AsyncClient() as http:
        token = (await http.post(fake.base_url + "/oauth2/token", auth=(fake.client_id, fake.client_secret),
                                 data={"grant_type": "authorization_code", "code": "c1", "redirect_uri": "http://hub/cb"})).json()
    spec = await connector.account_from_token(token)
    assert (spec.external_id, spec.name, spec.settings) == (guild, "Installed", {"guild_name": "Installed"})
    assert spec.credentials["bot_user_id"] == fake.client_id and spec.credentials["installer_id"].isdigit()
    assert spec.expires_at is None and "access_token" not in spec.credentials  # nothing to refresh or leak

    # `guild` missing but the callback's guild_id passed through: still works
    assert (await connector.account_from_token({"scope": "bot", "guild_id": guild})).external_id == guild
    with pytest.raises(ValueError, match="no guild"):
        await connector.account_from_token({"access_token": "x", "scope": "identify guilds"})
    outside = fake.add_guild("Bot never joined", bot_member=False)
    with pytest.raises(NeedsReauth, match="not in guild"):
        await connector.account_from_token({"guild": {"id": outside}})


async def test_missing_app_settings_are_named(fake: FakeDiscord, world: dict[str, str]) -> None:
    no_bot = DiscordConnector(discord_settings(fake, LOOMI_DISCORD_BOT_TOKEN=""))
    with pytest.raises(NotConfigured) as err:
        no_bot.authorize_params()
    assert err.value.variable == "LOOMI_DISCORD_BOT_TOKEN"
    with pytest.raises(NotConfigured):
        await no_bot.send(make_account(fake, world["guild"]), Outbound(chat_id=world["general"], text="x"))
    no_client = DiscordConnector(discord_settings(fake, LOOMI_DISCORD_CLIENT_ID=""))
    with pytest.raises(NotConfigured) as err:
        no_client.authorize_params()
    assert err.value.variable == "LOOMI_DISCORD_CLIENT_ID"
    revoked = DiscordConnector(discord_settings(fake, LOOMI_DISCORD_BOT_TOKEN="revoked"))
    with pytest.raises(NeedsReauth):
        await revoked.send(make_account(fake, world["guild"]), Outbound(chat_id=world["general"], text="x"))
