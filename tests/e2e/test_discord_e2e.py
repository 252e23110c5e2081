"""Discord end to end: guilds installed through OAuth2 by several people, history backfill, one
bot gateway for the app routed by guild id, edits/deletes/reactions, a dropped socket and op 7
(RESUME with replay), an invalidated session (re-IDENTIFY, gap recovery from history), sends
with a 429 and their echo merged - discord.py against FakeDiscord, into GET /api/messages."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from connectors.discord.connector import DiscordConnector
from tests.e2e.harness import RunningHub, WorkerProcess, e2e_env, fresh_database, running_hub
from tests.fakes.discord import FakeDiscord
from tests.waiting import eventually


@pytest.fixture(autouse=True)
def fast_reidentify(monkeypatch: pytest.MonkeyPatch) -> None:
    """discord.py pauses 5 s before a re-IDENTIFY; shorten it for the test."""
    monkeypatch.setattr(DiscordConnector, "reidentify_delay", 0.1)


def _env(backend: str, tmp: Path, db: str, fake: FakeDiscord, **extra: str) -> dict[str, str]:
    return e2e_env(backend, tmp, db, LOOMI_DISCORD_BASE_URL=fake.base_url, LOOMI_DISCORD_CLIENT_ID=fake.client_id,
                   LOOMI_DISCORD_CLIENT_SECRET=fake.client_secret, LOOMI_DISCORD_BOT_TOKEN=fake.bot_token, **extra)


async def _install(hub: RunningHub, fake: FakeDiscord, headers: dict[str, str], guild: str, code: str) -> str:
    r = await hub.client.get("/api/integrations/discord/oauth/start", headers={**headers, "Accept": "application/json"})
    assert r.status_code == 200, r.text
    params = {k: v[0] for k, v in parse_qs(urlparse(r.json()["url"]).query).items()}
    assert params["client_id"] == fake.client_id and params["scope"] == "identify guilds bot"
    assert params["redirect_uri"].endswith("/api/discord/callback") and params["permissions"] == "68672"
    fake.add_oauth_code(code, guild, redirect_uri=params["redirect_uri"])
    bad = await hub.client.get("/api/discord/callback", params={"code": code, "state": "forged", "guild_id": guild})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_state"
    done = await hub.client.get("/api/discord/callback", params={"code": code, "state": params["state"], "guild_id": guild})
    assert done.status_code == 200, done.text
    account = done.json()["account"]
    assert (account["platform"], account["externalId"], account["name"]) == ("discord", guild, fake.guilds[guild]["name"])
    replay = await hub.client.get("/api/discord/callback", params={"code": code, "state": params["state"]})
    assert replay.status_code == 400
    return str(account["id"])


def _keys(got: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(m["chatId"], m["nativeId"]) for m in got}


async def test_discord_guilds_exactly_once_through_backfill_gateway_faults_and_sends(backend: str, tmp_path: Path) -> None:
    async with FakeDiscord(heartbeat_interval_ms=500) as fake, fresh_database(backend, tmp_path) as db:
        hq = fake.add_guild("Loomi HQ", bot_member=False)
        general, random = fake.add_channel(hq, "general"), fake.add_channel(hq, "random")
        side = fake.add_guild("Side project", bot_member=False)
        side_chat = fake.add_channel(side, "chat")
        alice, bob = fake.add_user("alice"), fake.add_user("bob")
        history = [(general, fake.add_history_only(general, alice, f"old {i}")) for i in range(12)]
        async with running_hub(_env(backend, tmp_path, db, fake)) as hub:
            owner, teammate, other = await hub.login(), await hub.login(), await hub.login()
            owner_account = await _install(hub, fake, owner, hq, "code-owner")
            await _install(hub, fake, teammate, hq, "code-teammate")  # two people, one guild
            await _install(hub, fake, other, side, "code-other")
            await eventually(lambda: hub.at_least(owner, 12), what="history backfilled")
            await eventually(lambda: hub.in_state(owner, "connected"), what="gateway connected")

            live: list[tuple[str, str]] = []
            for i in range(20):
                chat = random if i % 5 == 4 else general
                kw: dict[str, Any] = {}
                if i == 7:
                    kw["reply_to"] = live[0][1]
                if i == 8:
                    kw["attachments"] = [{"filename": "plan.pdf", "size": 4096, "content_type": "application/pdf"}]
                if i == 9:
                    kw["mentions"] = [bob]
                live.append((chat, fake.post_message(chat, alice, f"live {i}", **kw)))
            side_id = fake.post_message(side_chat, bob, "only for the side project")
            await eventually(lambda: hub.at_least(owner, 32), what="live messages")
            fake.edit_message(general, live[1][1], "live 1, edited")
            fake.delete_message(general, live[2][1])
            fake.react(general, live[3][1], bob, "🎉")

            fake.drop_connections()  # a network failure: RESUME replays what happened meanwhile
            during = [(general, fake.post_message(general, alice, f"during the drop {i}")) for i in range(4)]
            await eventually(lambda: _resumed(fake, 1), what="resumed after the drop")
            fake.send_reconnect()  # op 7
            around = (general, fake.post_message(general, alice, "around op 7"))
            await eventually(lambda: _resumed(fake, 2), what="resumed after op 7")
            fake.invalidate_sessions(resumable=False)  # op 9: the new session replays nothing…
            lost = (general, fake.post_message(general, alice, "only history has me"))
            await eventually(lambda: _identified(fake, 2), what="identified again")
            after = (general, fake.post_message(general, alice, "after everything"))

            async def settled() -> list[dict[str, Any]] | None:
                got = await hub.messages(owner)
                texts = {m["text"] for m in got}
                want = {"after everything", "only history has me", "around op 7", "live 1, edited"}
                return got if want <= texts and "live 2" not in texts else None

            got = await eventually(settled, timeout=40, what="faults recovered")  # …gap recovery does
            expected = set(history) | set(live) | set(during) | {around, lost, after}
            expected.discard(live[2])
            assert _keys(got) == expected and len(got) == len(expected)  # exactly once
            mate = await eventually(lambda: _exactly(hub, teammate, expected), what="the teammate's copy")
            assert len(mate) == len(expected)  # routed to both owners of the guild, once each
            other_got = await hub.messages(other)
            assert _keys(other_got) == {(side_chat, side_id)}  # and to nobody else

            by_id = {m["nativeId"]: m for m in got}
            # channel names come from GUILD_CREATE (CHAT changes); the store names the messages it
            # already holds, not ones that arrive later (core: see the report)
            assert {"general", "random"} <= {m["chatName"] for m in got}
            assert by_id[live[1][1]]["originalText"] == "live 1" and by_id[live[1][1]]["editedAt"]
            assert by_id[live[7][1]]["replyToId"] == live[0][1]
            assert by_id[live[8][1]]["attachments"][0]["name"] == "plan.pdf"
            assert by_id[live[9][1]]["mentions"] == [bob]
            assert [r["emoji"] for r in by_id[live[3][1]]["reactions"]] == ["🎉"]
            tombstones = [m for m in await hub.messages(owner, includeDeleted="true") if m["deletedAt"]]
            assert [m["nativeId"] for m in tombstones] == [live[2][1]]
            assert len(fake.identifies) == 2  # one gateway for the whole app, re-IDENTIFY only after op 9

            # send: a 429 is waited out, the row is recorded once, the gateway echo merges into it
            fake.rate_limit_next(1, retry_after=0.5, route="POST /channels/{channel_id}/messages")
            r = await hub.client.post("/api/messages", headers=owner, json={
                "accountId": owner_account, "chatId": general, "text": "hello from the hub", "replyToId": live[0][1]})
            assert r.status_code == 201, r.text
            sent = await eventually(lambda: _sent(hub, owner, "hello from the hub"), what="sent")
            assert sent["id"] == r.json()["id"] and sent["replyToId"] == live[0][1]
            assert fake.sent[-1]["content"] == "hello from the hub" and fake.rate_limited
            await asyncio.sleep(1.0)  # the echo has arrived and been ingested by now
            mine = [m for m in await hub.messages(owner) if m["text"] == "hello from the hub"]
            assert len(mine) == 1 and mine[0]["direction"] == "outbound" and mine[0]["nativeId"] == fake.sent[-1]["id"]

            # a channel of another guild is not the owner's to write to
            r = await hub.client.post("/api/messages", headers=owner, json={
                "accountId": owner_account, "chatId": side_chat, "text": "leak"})
            assert r.status_code == 502 and r.json()["status"] == "failed", r.text
            assert "not in this account's guild" in r.json()["error"]
            assert all(m["content"] != "leak" for m in fake.sent)

            accounts = (await hub.client.get("/api/integrations/accounts", headers=owner)).json()["accounts"]
            assert accounts[0]["state"] == "connected" and accounts[0]["externalId"] == hq


async def _resumed(fake: FakeDiscord, n: int) -> bool:
    return len(fake.resumes) >= n and fake.connected == 1


async def _identified(fake: FakeDiscord, n: int) -> bool:
    return len(fake.identifies) >= n and fake.connected == 1


async def _exactly(hub: RunningHub, headers: dict[str, str], expected: set[tuple[str, str]]) -> list[dict[str, Any]] | None:
    got = await hub.messages(headers)
    return got if _keys(got) == expected else None


async def _sent(hub: RunningHub, headers: dict[str, str], text: str) -> dict[str, Any] | None:
    found = [m for m in await hub.messages(headers) if m["text"] == text]
    return found[0] if found and found[0]["status"] == "sent" else None


async def test_kill_9_of_the_worker_holding_the_gateway_loses_and_duplicates_nothing(backend: str, tmp_path: Path) -> None:
    """Two `loomi worker` processes; the one holding the app's gateway is killed mid-stream. The
    survivor takes the lease, RESUMEs the session from the state saved with the last queued
    event, and Discord replays everything after it: every message stored exactly once."""
    async with FakeDiscord(heartbeat_interval_ms=1000) as fake, fresh_database(backend, tmp_path) as db:
        guild = fake.add_guild("Loomi HQ", bot_member=False)
        general, alice = fake.add_channel(guild, "general"), fake.add_user("alice")
        env = _env(backend, tmp_path, db, fake, LOOMI_LEASE_MS="10000", LOOMI_HEARTBEAT_SECONDS="2")
        async with running_hub(env, worker=False) as hub:
            headers = await hub.login()
            workers = [WorkerProcess(env, tmp_path / f"worker{i}.log").start() for i in range(2)]
            try:
                await _install(hub, fake, headers, guild, "code-1")
                holder = await eventually(lambda: _holder(hub, headers), timeout=60, what="a worker holds the gateway")
                sent = [fake.post_message(general, alice, f"before {i}") for i in range(100)]
                await eventually(lambda: hub.at_least(headers, 50), timeout=60, what="ingest under way")
                victim = next(w for w in workers if holder.endswith(f":{w.pid}"))
                killed_at = time.monotonic()
                victim.kill9()
                sent += [fake.post_message(general, alice, f"after {i}") for i in range(100)]
                survivor = next(w for w in workers if w is not victim)
                await eventually(lambda: _holder(hub, headers, f":{survivor.pid}"), timeout=30, what="takeover")
                takeover = time.monotonic() - killed_at
                await eventually(lambda: hub.at_least(headers, 200), timeout=60, what="all 200 messages")
                await asyncio.sleep(1.0)
                got = await hub.messages(headers)
                print(f"\ndiscord takeover after kill -9: {takeover:.1f} s, resumes {fake.resumes}")
                assert takeover < 15, takeover
                assert len(got) == 200 and {m["nativeId"] for m in got} == set(sent)
                assert len(fake.identifies) == 1 and len(fake.resumes) == 1  # resumed, not re-identified
            finally:
                for w in workers:
                    w.stop()


async def _holder(hub: RunningHub, headers: dict[str, str], suffix: str = "") -> str | None:
    account = await hub.first_account(headers)
    if account and account["state"] == "connected" and account["worker"] and account["worker"].endswith(suffix):
        return str(account["worker"])
    return None


async def test_a_hub_without_the_bot_token_names_the_variable(backend: str, tmp_path: Path) -> None:
    async with FakeDiscord() as fake, fresh_database(backend, tmp_path) as db:
        env = {k: v for k, v in _env(backend, tmp_path, db, fake).items() if k != "LOOMI_DISCORD_BOT_TOKEN"}
        async with running_hub(env, worker=False) as hub:
            headers = await hub.login()
            r = await hub.client.get("/api/integrations/discord/oauth/start", headers={**headers, "Accept": "application/json"})
            assert r.status_code == 503 and r.json()["code"] == "platform_not_configured"
            assert "LOOMI_DISCORD_BOT_TOKEN" in r.text
