"""listen_app() against FakeDiscord's gateway, with discord.py's real DiscordWebSocket."""

from __future__ import annotations

import asyncio
import pytest

from connectors.base import Account, AccountState, ChangeKind, ChatType, NeedsReauth, NotConfigured, WebhookEvent
from connectors.discord.connector import DiscordConnector
from tests.connectors.discord.conftest import RecordingAppContext, discord_settings
from tests.fakes.discord import FakeDiscord
from tests.waiting import wait_until


class Listening:
    """Runs connector.listen_app(ctx) as the supervisor would: a task, cancelled to stop."""

    def __init__(self, connector: DiscordConnector, ctx: RecordingAppContext) -> None:
        self.connector, self.ctx = connector, ctx
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Listening:
        self.task = asyncio.create_task(self.connector.listen_app(self.ctx))
        await wait_until(lambda: AccountState.CONNECTED in self.ctx.states() or self.task.done(), timeout=10)
        if self.task.done():
            self.task.result()  # raises what the listener raised
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


def texts(ctx: RecordingAppContext) -> list[str]:
    return [e.payload["d"]["content"] for e in ctx.of("MESSAGE_CREATE")]


async def test_messages_edits_deletes_reactions_threads_and_chats(
        fake: FakeDiscord, world: dict[str, str], connector: DiscordConnector, account: Account) -> None:
    ctx = RecordingAppContext()
    other = fake.add_guild("Not ours")
    fake.add_channel(other, "elsewhere")
    async with Listening(connector, ctx):
        assert ctx.states()[:2] == [AccountState.CONNECTING, AccountState.CONNECTED]
        assert ctx.resume["session_id"] and ctx.resume["resume_url"] == fake.resume_gateway_url
        (guild_create,) = [e for e in ctx.of("GUILD_CREATE") if e.external_id == world["guild"]]
        assert set(guild_create.payload["d"]) == {"id", "name", "channels", "threads"}  # members etc. dropped

        general = world["general"]
        first = fake.post_message(general, world["alice"], f"hi <@{fake.client_id}>", mentions=[fake.client_id],
                                  attachments=[{"filename": "a.png", "size": 5, "content_type": "image/png"}])
        reply = fake.post_message(general, world["bob"], "answer", reply_to=first)
        thread = fake.add_thread(general, "a topic")
        in_thread = fake.post_message(thread, world["alice"], "inside the thread")
        fake.edit_message(general, first, "hi, edited")
        fake.react(general, reply, world["alice"], "👍")
        fake.react(general, reply, world["alice"], "👍", added=False)
        fake.rename_channel(general, "lobby")
        fake.delete_message(general, reply)
        fake.post_message(fake.add_channel(other, "x"), world["bob"], "someone else's guild")
        await wait_until(lambda: ctx.of("MESSAGE_DELETE"))

    ours = [e for e in ctx.emitted if e.external_id == world["guild"]]
    assert {e.external_id for e in ctx.emitted} == {world["guild"], other}  # routed by guild id
    changes = [c for env in ctx.envelopes(account) for c in connector.normalize(env, account)]
    upserts = {c.native_id: c.message for c in changes if c.kind is ChangeKind.UPSERT}
    assert upserts[first].mentions == [fake.client_id] and upserts[first].attachments[0].name == "a.png"
    assert upserts[reply].reply_to_id == first and upserts[in_thread].chat_id == thread
    (edit,) = [c for c in changes if c.kind is ChangeKind.EDIT]
    assert (edit.native_id, edit.message.text) == (first, "hi, edited")
    reactions = [(c.native_id, c.reaction.emoji, c.reaction.added) for c in changes if c.kind is ChangeKind.REACTION]
    assert reactions == [(reply, "👍", True), (reply, "👍", False)]
    chats = {(c.chat_id, c.chat.name, c.chat.type) for c in changes if c.kind is ChangeKind.CHAT}
    assert {(general, "lobby", ChatType.CHANNEL), (thread, "a topic", ChatType.THREAD)} <= chats
    assert [(c.kind, c.native_id) for c in changes if c.kind is ChangeKind.DELETE] == [(ChangeKind.DELETE, reply)]
    ids = [e.delivery_id for e in ours]
    assert len(ids) == len(set(ids)) and f"MESSAGE_CREATE:{first}" in ids
    assert ctx.resume["seq"] == max(e.payload["s"] for e in ctx.emitted)


async def test_sequence_is_acked_only_after_emit(fake: FakeDiscord, world: dict[str, str],
                                                 connector: DiscordConnector) -> None:
    """Discord's ack is the sequence number in heartbeats and RESUME: while an event is being
    emitted (slowly), no heartbeat may carry its `s`."""
    during: list[tuple[int, list[int | None]]] = []

    async def slow(events: list[WebhookEvent]) -> None:
        if events and events[0].payload["t"] == "MESSAGE_CREATE":
            start = len(fake.heartbeats)
            await asyncio.sleep(0.5)  # five heartbeat intervals
            during.append((events[0].payload["s"], fake.heartbeats[start:]))

    ctx = RecordingAppContext(on_emit=slow)
    async with Listening(connector, ctx):
        fake.post_message(world["general"], world["alice"], "slow")
        await wait_until(lambda: during, timeout=5)
        await wait_until(lambda: fake.heartbeats and fake.heartbeats[-1] == during[0][0], timeout=3)
    ((seq, beats),) = during
    assert len(beats) >= 2 and all(b is not None and b < seq for b in beats)


async def test_a_failed_emit_is_replayed_after_a_restart(fake: FakeDiscord, world: dict[str, str],
                                                         connector: DiscordConnector) -> None:
    """The emit fails (lease lost, Redis gone): the listener dies without acking; the next run
    RESUMEs from the saved state and Discord replays the event."""

    class LeaseLostStandIn(Exception):
        pass

    def fail_messages(events: list[WebhookEvent]) -> None:
        if any(e.payload["t"] == "MESSAGE_CREATE" for e in events):
            raise LeaseLostStandIn()

    ctx = RecordingAppContext(on_emit=fail_messages)
    async with Listening(connector, ctx) as running:
        lost = fake.post_message(world["general"], world["alice"], "must not be lost")
        with pytest.raises(LeaseLostStandIn):
            await asyncio.wait_for(asyncio.shield(running.task), 5)
    saved = dict(ctx.resume)
    assert texts(ctx) == []

    ctx2 = RecordingAppContext(resume=saved)
    async with Listening(connector, ctx2):
        await wait_until(lambda: texts(ctx2) == ["must not be lost"])
        assert fake.resumes[-1][:2] == (saved["session_id"], saved["seq"]) and len(fake.identifies) == 1
        assert ctx2.of("MESSAGE_CREATE")[0].delivery_id == f"MESSAGE_CREATE:{lost}"
        assert ctx2.count("reconnected") == 0  # resumed: nothing to recover


async def test_drop_and_op7_resume_without_loss_or_duplicates(fake: FakeDiscord, world: dict[str, str],
                                                             connector: DiscordConnector) -> None:
    ctx = RecordingAppContext()
    async with Listening(connector, ctx):
        fake.post_message(world["general"], world["alice"], "before")
        await wait_until(lambda: texts(ctx) == ["before"])
        fake.drop_connections()
        for i in range(5):
            fake.post_message(world["general"], world["alice"], f"during {i}")
        await wait_until(lambda: len(fake.resumes) == 1 and fake.connected == 1, timeout=10)
        fake.send_reconnect()
        fake.post_message(world["general"], world["alice"], "around op 7")
        await wait_until(lambda: len(fake.resumes) == 2 and fake.connected == 1, timeout=10)
        fake.post_message(world["general"], world["alice"], "after")
        await wait_until(lambda: "after" in texts(ctx))
    assert texts(ctx) == ["before", *(f"during {i}" for i in range(5)), "around op 7", "after"]
    assert [path for _, _, path in fake.resumes] == ["/resume-gateway", "/resume-gateway"]
    assert len(fake.identifies) == 1 and ctx.count("reconnected") == 0
    assert ctx.states().count(AccountState.CONNECTED) >= 3  # READY, then each RESUMED


async def test_invalid_session_identifies_again_and_asks_for_gap_recovery(
        fake: FakeDiscord, world: dict[str, str], connector: DiscordConnector) -> None:
    ctx = RecordingAppContext()
    async with Listening(connector, ctx):
        first_session = ctx.resume["session_id"]
        fake.invalidate_sessions(resumable=False)
        await wait_until(lambda: len(fake.identifies) == 2 and ctx.resume["session_id"] != first_session, timeout=10)
        assert ctx.count("reconnected") == 1  # a new session replays nothing: backfill must look
        fake.post_message(world["general"], world["alice"], "on the new session")
        await wait_until(lambda: texts(ctx) == ["on the new session"])
    # a stale saved session (expired while the hub was down): RESUME is refused, IDENTIFY follows
    stale = RecordingAppContext(resume={"session_id": "gone", "seq": 3, "resume_url": fake.resume_gateway_url})
    async with Listening(connector, stale):
        assert fake.resumes[-1][0] == "gone" and len(fake.identifies) == 3
        assert stale.count("reconnected") == 1


async def test_rejected_or_missing_bot_token(fake: FakeDiscord, world: dict[str, str],
                                             connector: DiscordConnector) -> None:
    ctx = RecordingAppContext()
    async with Listening(connector, ctx) as running:
        fake.close_connections(4004, "Authentication failed.")
        with pytest.raises(NeedsReauth, match="4004"):
            await asyncio.wait_for(asyncio.shield(running.task), 5)

    wrong = DiscordConnector(discord_settings(fake, LOOMI_DISCORD_BOT_TOKEN="revoked"))
    with pytest.raises(NeedsReauth, match="401"):
        await wrong.listen_app(RecordingAppContext())
    unset = DiscordConnector(discord_settings(fake, LOOMI_DISCORD_BOT_TOKEN=""))
    assert unset.app_configured() is False and connector.app_configured() is True
    with pytest.raises(NotConfigured) as err:
        await unset.listen_app(RecordingAppContext())
    assert err.value.variable == "LOOMI_DISCORD_BOT_TOKEN"


async def test_zlib_stream_is_used_and_heartbeats_flow(fake: FakeDiscord, world: dict[str, str],
                                                       connector: DiscordConnector) -> None:
    ctx = RecordingAppContext()
    async with Listening(connector, ctx):
        await wait_until(lambda: len(fake.heartbeats) >= 3, timeout=3)
        assert [q.get("compress") for q in fake.gateway_queries] == ["zlib-stream"]  # what discord.py asks
        (identify,) = fake.identifies
        assert identify["intents"] & (1 << 15) and identify["intents"] & (1 << 9)  # message content, guild messages
    assert fake.calls["GET /gateway/bot"] == 1 and fake.calls["GET /users/@me"] == 1


async def test_gateway_down_for_a_while_backs_off_then_resumes(fake: FakeDiscord, world: dict[str, str],
                                                              connector: DiscordConnector) -> None:
    ctx = RecordingAppContext()
    async with Listening(connector, ctx):
        await fake.stop()  # Discord unreachable: connections refused
        missed = [fake.post_message(world["general"], world["alice"], f"while down {i}") for i in range(3)]
        await asyncio.sleep(1.5)
        attempts = len([s for s in ctx.states() if s is AccountState.CONNECTING])
        assert 2 <= attempts <= 6, attempts  # retrying, with backoff rather than in a tight loop
        await fake.start()  # same port, same sessions
        await wait_until(lambda: len(texts(ctx)) == 3, timeout=10)
    assert [e.payload["d"]["id"] for e in ctx.of("MESSAGE_CREATE")] == missed
    assert len(fake.identifies) == 1 and len(fake.resumes) == 1


async def test_a_burst_already_received_is_emitted_together_in_order(fake: FakeDiscord, world: dict[str, str],
                                                                    connector: DiscordConnector) -> None:
    sizes: list[int] = []

    async def slow_first(events: list[WebhookEvent]) -> None:
        if events and events[0].payload["t"] == "MESSAGE_CREATE":
            sizes.append(len(events))
            if len(sizes) == 1:
                await asyncio.sleep(0.3)  # the rest of the burst piles up behind this write

    ctx = RecordingAppContext(on_emit=slow_first)
    async with Listening(connector, ctx):
        ids = [fake.post_message(world["general"], world["alice"], f"burst {i}") for i in range(30)]
        await wait_until(lambda: len(texts(ctx)) == 30, timeout=5)
    assert [e.payload["d"]["id"] for e in ctx.of("MESSAGE_CREATE")] == ids
    assert max(sizes) > 1 and len(sizes) < 30 and sum(sizes) == 30
    assert ctx.resume["seq"] == ctx.of("MESSAGE_CREATE")[-1].payload["s"]
