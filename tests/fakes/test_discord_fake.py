"""FakeDiscord, driven by the whole of discord.py (Client, its gateway loop, its models and its
HTTP client): if these pass, connector tests built on the fake see the wire behaviour
discord.py sees in production - HELLO/heartbeats, READY/GUILD_CREATE, RESUME with replay after
op 7 or a dropped socket, op 9, zlib-stream compression, paging, 429s."""

from __future__ import annotations

import asyncio
import json
import zlib
from typing import Any, AsyncIterator

import aiohttp
import discord
import httpx
import pytest
import yarl
from discord.gateway import DiscordWebSocket

from tests.fakes.discord import FakeDiscord, snowflake_ms
from tests.waiting import wait_until

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(heartbeat_interval_ms=150) as server:
        yield server


@pytest.fixture
def world(fake: FakeDiscord) -> dict[str, str]:
    guild = fake.add_guild("Loomi HQ")
    return {"guild": guild, "general": fake.add_channel(guild, "general"), "alice": fake.add_user("alice"),
            "bob": fake.add_user("bob")}


class _RecordingClient(discord.Client):
    """discord.Client that keeps every event it dispatches (ConnectionState holds the bound
    `dispatch` from construction, so recording must be a method, not a patch)."""

    events: list[tuple[str, Any]]

    def dispatch(self, event: str, /, *args: Any, **kwargs: Any) -> None:
        self.events.append((event, args[0] if args else None))
        super().dispatch(event, *args, **kwargs)


class Sdk:
    """A real discord.Client aimed at the fake (Route.BASE and the default gateway patched, as
    sdk-loopback.md measured), recording every event it dispatches."""

    def __init__(self, fake: FakeDiscord, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(discord.http.Route, "BASE", fake.base_url)
        monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", yarl.URL(fake.gateway_url))
        intents = discord.Intents.default()
        intents.message_content = True
        _RecordingClient.events = []
        self.client = _RecordingClient(intents=intents)
        self.events = self.client.events
        self.fake = fake
        self.task: asyncio.Task[None] | None = None

    def of(self, name: str) -> list[Any]:
        return [arg for event, arg in self.events if event == name]

    async def __aenter__(self) -> Sdk:
        self.task = asyncio.create_task(self.client.start(self.fake.bot_token))
        try:
            await wait_until(lambda: self.of("ready") or self.task.done(), timeout=10)
            assert not self.task.done(), self.task.exception()
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()
        assert self.task is not None
        await asyncio.gather(self.task, return_exceptions=True)


async def test_ready_guilds_heartbeats_and_messages(fake: FakeDiscord, world: dict[str, str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    async with Sdk(fake, monkeypatch) as sdk:
        client = sdk.client
        guild = client.get_guild(int(world["guild"]))
        assert guild is not None and guild.name == "Loomi HQ"
        assert [c.name for c in guild.text_channels] == ["general"]
        assert client.user is not None and str(client.user.id) == fake.client_id
        (identify,) = fake.identifies
        assert identify["intents"] == client.intents.value and "token" not in identify

        first = fake.post_message(world["general"], world["alice"], "hello <@%s>" % fake.client_id,
                                  mentions=[fake.client_id],
                                  attachments=[{"filename": "a.png", "size": 10, "content_type": "image/png"}])
        reply = fake.post_message(world["general"], world["bob"], "answer", reply_to=first)
        await wait_until(lambda: len(sdk.of("message")) == 2)
        one, two = sdk.of("message")
        assert (str(one.id), one.content, one.author.name) == (first, one.content, "alice")
        assert [u.id for u in one.mentions] == [client.user.id]
        assert one.attachments[0].filename == "a.png" and one.attachments[0].content_type == "image/png"
        assert str(two.id) == reply and two.reference is not None and str(two.reference.message_id) == first
        assert two.created_at.timestamp() * 1000 == pytest.approx(snowflake_ms(reply), abs=1)

        await wait_until(lambda: len([h for h in fake.heartbeats if h]) >= 2, timeout=3)
        assert max(h for h in fake.heartbeats if h) <= fake._sessions[next(iter(fake._sessions))].seq


async def test_edit_delete_reactions_and_channel_update(fake: FakeDiscord, world: dict[str, str],
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    async with Sdk(fake, monkeypatch) as sdk:
        msg_id = fake.post_message(world["general"], world["alice"], "typo")
        await wait_until(lambda: sdk.of("message"))
        fake.edit_message(world["general"], msg_id, "fixed")
        fake.react(world["general"], msg_id, world["bob"], "👍")
        fake.react(world["general"], msg_id, world["bob"], "👍", added=False)
        fake.rename_channel(world["general"], "lobby")
        fake.delete_message(world["general"], msg_id)
        await wait_until(lambda: sdk.of("raw_message_delete"))
        (edit,) = sdk.of("raw_message_edit")
        assert edit.data["content"] == "fixed" and edit.data["edited_timestamp"]
        (added,) = sdk.of("raw_reaction_add")
        (removed,) = sdk.of("raw_reaction_remove")
        assert str(added.emoji) == "👍" and added.user_id == int(world["bob"]) and removed.message_id == int(msg_id)
        before = sdk.of("guild_channel_update")[0]  # the channel as it was
        assert before.name == "general"
        assert sdk.client.get_channel(int(world["general"])).name == "lobby"
        assert sdk.of("raw_message_delete")[0].message_id == int(msg_id)


async def test_op7_and_dropped_socket_resume_with_replay(fake: FakeDiscord, world: dict[str, str],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    async with Sdk(fake, monkeypatch) as sdk:
        fake.send_reconnect()
        await wait_until(lambda: sdk.of("resumed"))
        (session_id, seq, path) = fake.resumes[0]
        assert path == "/resume-gateway" and seq is not None and len(fake.identifies) == 1

        fake.drop_connections()
        missed = [fake.post_message(world["general"], world["alice"], f"while away {i}") for i in range(3)]
        await wait_until(lambda: len(sdk.of("resumed")) == 2, timeout=10)
        after = fake.post_message(world["general"], world["alice"], "after")
        await wait_until(lambda: len(sdk.of("message")) == 4)
        assert [str(m.id) for m in sdk.of("message")] == [*missed, after]  # replayed once, in order
        assert len(fake.identifies) == 1 and {s for s, _, _ in fake.resumes} == {session_id}


async def test_invalid_session_forces_a_new_identify(fake: FakeDiscord, world: dict[str, str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    async with Sdk(fake, monkeypatch) as sdk:
        fake.invalidate_sessions(resumable=False)
        await wait_until(lambda: len(fake.identifies) == 2 and len(sdk.of("ready")) == 2, timeout=10)
        fake.post_message(world["general"], world["alice"], "new session")
        await wait_until(lambda: sdk.of("message"))
        assert len(fake._sessions) == 2 and sum(s.valid for s in fake._sessions.values()) == 1


async def test_history_send_reply_and_429(fake: FakeDiscord, world: dict[str, str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    ids = [fake.add_history_only(world["general"], world["alice"], f"old {i}") for i in range(130)]
    async with Sdk(fake, monkeypatch) as sdk:
        channel = sdk.client.get_channel(int(world["general"]))
        got = [m async for m in channel.history(limit=None)]
        assert [str(m.id) for m in got] == list(reversed(ids))  # newest first, over two pages
        assert fake.calls["GET /channels/{channel_id}/messages"] == 2
        window = [m async for m in channel.history(limit=5, after=discord.Object(int(ids[9])), oldest_first=True)]
        assert [str(m.id) for m in window] == ids[10:15]

        fake.rate_limit_next(2, retry_after=0.2)
        sent = await channel.send("from the bot", reference=discord.MessageReference(
            message_id=int(ids[0]), channel_id=channel.id))
        assert fake.rate_limited == ["POST /channels/{channel_id}/messages"] * 2
        assert fake.sent[-1]["content"] == "from the bot" and str(sent.id) == fake.sent[-1]["id"]
        assert fake.sent[-1]["message_reference"]["message_id"] == ids[0]
        await wait_until(lambda: any(m.id == sent.id for m in sdk.of("message")))  # the echo


async def test_bad_token_is_refused_over_rest_and_gateway(fake: FakeDiscord, world: dict[str, str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(discord.http.Route, "BASE", fake.base_url)
    client = discord.Client(intents=discord.Intents.default())
    with pytest.raises(discord.LoginFailure):
        await client.login("not-the-token")
    await client.close()
    async with aiohttp.ClientSession() as http, http.ws_connect(fake.gateway_url + "?v=10&encoding=json") as ws:
        hello = await ws.receive_json()
        assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] == 150
        await ws.send_json({"op": 2, "d": {"token": "wrong", "intents": 0, "properties": {}}})
        closing = await ws.receive()
        assert closing.type == aiohttp.WSMsgType.CLOSE and ws.close_code == 4004


async def test_zlib_stream_and_raw_resume_semantics(fake: FakeDiscord, world: dict[str, str]) -> None:
    url = fake.gateway_url + "?v=10&encoding=json&compress=zlib-stream"
    inflate = zlib.decompressobj()

    async def frame(ws: aiohttp.ClientWebSocketResponse) -> dict[str, Any]:
        msg = await ws.receive()
        assert msg.type == aiohttp.WSMsgType.BINARY and msg.data.endswith(b"\x00\x00\xff\xff")
        return json.loads(inflate.decompress(msg.data))

    async with aiohttp.ClientSession() as http:
        async with http.ws_connect(url) as ws:
            assert (await frame(ws))["op"] == 10
            await ws.send_json({"op": 2, "d": {"token": fake.bot_token, "intents": 0, "properties": {}}})
            ready = await frame(ws)
            assert ready["t"] == "READY" and ready["s"] == 1
            assert (await frame(ws))["t"] == "GUILD_CREATE"
            session = ready["d"]["session_id"]
        seen = [fake.post_message(world["general"], world["alice"], f"m{i}") for i in range(3)]
        async with http.ws_connect(fake.resume_gateway_url + "?v=10&encoding=json") as ws:
            await ws.receive_json()
            await ws.send_json({"op": 6, "d": {"token": fake.bot_token, "session_id": session, "seq": 3}})
            replay = [await ws.receive_json() for _ in range(3)]
            assert [f["d"]["id"] for f in replay[:2]] == seen[1:] and replay[2]["t"] == "RESUMED"
            assert [f["s"] for f in replay] == [4, 5, 6]
            await ws.send_json({"op": 6, "d": {"token": fake.bot_token, "session_id": session, "seq": 99}})
            await ws.receive()
            assert ws.close_code == 4007  # a sequence from the future
        async with http.ws_connect(fake.gateway_url + "?v=10&encoding=json") as ws:
            await ws.receive_json()
            await ws.send_json({"op": 6, "d": {"token": fake.bot_token, "session_id": "unknown", "seq": 1}})
            assert await ws.receive_json() == {"op": 9, "d": False}


async def test_oauth_code_exchange_joins_the_guild(fake: FakeDiscord, world: dict[str, str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    other = fake.add_guild("Elsewhere", bot_member=False)
    fake.add_channel(other, "random")
    fake.add_oauth_code("code-1", other, redirect_uri="http://hub/api/discord/callback")
    async with Sdk(fake, monkeypatch) as sdk, httpx.AsyncClient() as http:
        assert sdk.client.get_guild(int(other)) is None
        bad = await http.post(fake.base_url + "/oauth2/token", data={"grant_type": "authorization_code",
                              "code": "code-1", "redirect_uri": "http://hub/api/discord/callback"},
                              auth=(fake.client_id, "wrong"))
        assert bad.status_code == 401 and bad.json() == {"error": "invalid_client"}
        form = {"grant_type": "authorization_code", "code": "code-1", "redirect_uri": "http://hub/api/discord/callback"}
        ok = await http.post(fake.base_url + "/oauth2/token", data=form, auth=(fake.client_id, fake.client_secret))
        assert ok.status_code == 200 and ok.headers["content-type"] == "application/json"
        token = ok.json()
        assert token["guild"]["id"] == other and token["scope"] == "bot identify guilds"
        assert (await http.post(fake.base_url + "/oauth2/token", data=form,
                                auth=(fake.client_id, fake.client_secret))).json()["error"] == "invalid_grant"
        me = await http.get(fake.base_url + "/users/@me", headers={"Authorization": f"Bearer {token['access_token']}"})
        assert me.json()["username"] == "installer"
        await wait_until(lambda: sdk.of("guild_join"))
        assert sdk.client.get_guild(int(other)).name == "Elsewhere"
