"""Slack end to end: OAuth install, history backfill, Socket Mode events (threads, edits,
deletes, redeliveries, files), dropped connections with gap recovery, sends with their echo,
and the signed Events API webhook — slack_sdk against FakeSlack, into GET /api/messages."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from slack_sdk.signature import SignatureVerifier

from connectors.slack.connector import SlackConnector
from tests.e2e.harness import e2e_env, fresh_database, running_hub
from tests.waiting import eventually
from tests.fakes.slack import FakeSlack

CLIENT_ID, CLIENT_SECRET, SIGNING_SECRET = "111.222", "client-secret-xyz", "signing-secret-abc"


@pytest.fixture(autouse=True)
def fast_reconnects(monkeypatch: pytest.MonkeyPatch) -> None:
    """slack_sdk notices a dead socket on its ping interval (5 s); shorten it for the test."""
    monkeypatch.setattr(SlackConnector, "ping_interval", 0.2)


def _env(backend: str, tmp: Path, db: str, fake: FakeSlack) -> dict[str, str]:
    return e2e_env(
        backend,
        tmp,
        db,
        LOOMI_SLACK_BASE_URL=fake.base_url,
        LOOMI_SLACK_CLIENT_ID=CLIENT_ID,
        LOOMI_SLACK_CLIENT_SECRET=CLIENT_SECRET,
        LOOMI_SLACK_SIGNING_SECRET=SIGNING_SECRET,
        LOOMI_SLACK_APP_TOKEN=fake.app_token,
    )


async def _install(hub, fake: FakeSlack, headers: dict) -> str:
    r = await hub.client.get("/api/integrations/slack/oauth/start", headers={**headers, "Accept": "application/json"})
    assert r.status_code == 200, r.text
    url = urlparse(r.json()["url"])
    params = {k: v[0] for k, v in parse_qs(url.query).items()}
    assert params["client_id"] == CLIENT_ID and params["state"] == r.json()["state"]
    redirect = await hub.client.get("/api/integrations/slack/oauth/start", headers=headers, follow_redirects=False)
    assert redirect.status_code == 302 and redirect.headers["location"].startswith("https://slack.com/oauth/v2/authorize?")
    fake.add_oauth_code("code-1", CLIENT_ID, CLIENT_SECRET, params["redirect_uri"], fake.team_id, fake.team_name, fake.bot_token, fake.bot_user_id, bot_id=fake.bot_id)
    # a forged or replayed state is refused and creates nothing
    bad = await hub.client.get("/api/slack/callback", params={"code": "code-1", "state": "forged"})
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_state"
    done = await hub.client.get("/api/slack/callback", params={"code": "code-1", "state": params["state"]})
    assert done.status_code == 200, done.text
    replay = await hub.client.get("/api/slack/callback", params={"code": "code-1", "state": params["state"]})
    assert replay.status_code == 400
    return done.json()["account"]["id"]


async def test_slack_exactly_once_through_backfill_events_drops_and_sends(backend: str, tmp_path: Path) -> None:
    async with FakeSlack() as fake, fresh_database(backend, tmp_path) as db:
        fake.add_user("UALICE", "alice")
        fake.add_channel("C1", "general")
        fake.add_channel("D1", "alice", is_im=True, user="UALICE")
        history = [fake.add_history_only("C1", "UALICE", f"old {i}") for i in range(15)]
        async with running_hub(_env(backend, tmp_path, db, fake)) as hub:
            headers = await hub.login()
            account_id = await _install(hub, fake, headers)
            await eventually(lambda: hub.at_least(headers, 15), what="history backfilled")

            live = []
            for i in range(40):
                channel = "C1" if i % 4 else "D1"
                thread = live[0][1] if i % 9 == 8 else None
                live.append((channel, fake.post_message(channel, "UALICE", f"live {i}", thread_ts=thread)))
            files_ts = fake.post_message("C1", "UALICE", "", files=[{"id": "F1", "name": "report.pdf", "mimetype": "application/pdf", "size": 2048, "url_private": "https://files/report.pdf"}])
            await eventually(lambda: hub.at_least(headers, 56), what="live events")
            fake.redeliver(next(iter(fake.acked_event_ids)))
            fake.edit_message("C1", live[1][1], "live 1, edited")
            fake.delete_message("C1", live[2][1])

            # connections drop; messages whose events never arrive are recovered from history
            fake.drop_connections()
            missed = [fake.add_history_only("C1", "UALICE", f"missed {i}") for i in range(5)]
            await asyncio.sleep(0.6)
            after = fake.post_message("C1", "UALICE", "after the drop")

            async def settled():
                got = await hub.messages(headers)
                texts = {m["text"] for m in got}
                ok = {"after the drop", "live 1, edited", *(f"missed {i}" for i in range(5))} <= texts
                return got if ok and "live 2" not in texts else None

            got = await eventually(settled, timeout=30, what="edits, deletes and gap recovery")
            expected = {("C1", ts) for ts in history + missed + [files_ts, after]} | set(live)
            expected.discard(live[2])  # deleted: hidden from the list
            assert {(m["chatId"], m["nativeId"]) for m in got} == expected
            assert len(got) == len(expected)  # exactly once
            tombstones = [m for m in await hub.messages(headers, includeDeleted="true") if m["deletedAt"]]
            assert [(m["chatId"], m["nativeId"]) for m in tombstones] == [live[2]]
            edited = next(m for m in got if m["nativeId"] == live[1][1])
            assert edited["originalText"] == "live 1"
            reply = next(m for m in got if m["nativeId"] == live[8][1])
            assert reply["threadId"] == live[0][1]
            dm = next(m for m in got if m["chatId"] == "D1")
            assert dm["chatType"] == "dm"
            with_file = next(m for m in got if m["nativeId"] == files_ts)
            assert with_file["attachments"][0]["name"] == "report.pdf"

            # send: stored once as outbound; the echo event merges into it
            fake.fail_next("chat.postMessage", retry_after=1)
            r = await hub.client.post("/api/messages", json={"accountId": account_id, "chatId": "C1", "text": "hello from the hub", "replyToId": live[0][1]}, headers=headers)
            assert r.status_code == 201 and r.json()["status"] == "sent", r.text
            sent_ts = r.json()["nativeId"]
            await asyncio.sleep(1.0)  # let the echo arrive and be ingested
            mine = [m for m in await hub.messages(headers) if m["nativeId"] == sent_ts]
            assert len(mine) == 1 and mine[0]["id"] == r.json()["id"] and mine[0]["direction"] == "outbound"
            assert mine[0]["threadId"] == live[0][1]

            accounts = (await hub.client.get("/api/integrations/accounts", headers=headers)).json()["accounts"]
            assert accounts[0]["state"] == "connected" and accounts[0]["externalId"] == fake.team_id
            health = (await hub.client.get("/healthz")).json()
            assert health["ok"] and health["ingest"]["ok"]


async def test_events_api_webhook_verifies_signatures(backend: str, tmp_path: Path) -> None:
    async with FakeSlack() as fake, fresh_database(backend, tmp_path) as db:
        fake.add_channel("C1", "general")
        async with running_hub(_env(backend, tmp_path, db, fake)) as hub:
            headers = await hub.login()
            await _install(hub, fake, headers)
            url = f"{hub.url}/api/slack/events"
            challenge = await fake.deliver_http(url, SIGNING_SECRET, None)
            assert challenge[-1].status == 200
            fake.socket_mode = False
            fake.http_event_url, fake.signing_secret = url, SIGNING_SECRET
            ts = fake.post_message("C1", "UALICE", "over http")
            got = await eventually(lambda: hub.with_text(headers, "over http"), what="http event stored")
            assert got["nativeId"] == ts

            body = json.dumps({"type": "event_callback", "team_id": fake.team_id, "event_id": "EvForged", "event": {"type": "message", "channel": "C1", "user": "U1", "text": "forged", "ts": "1.000001"}})
            good = SignatureVerifier(SIGNING_SECRET).generate_signature(timestamp="1", body=body)
            forged = await hub.client.post("/api/slack/events", content=body, headers={"X-Slack-Request-Timestamp": "1", "X-Slack-Signature": good})
            assert forged.status_code == 401  # stale timestamp
            import time

            now = str(int(time.time()))
            wrong = SignatureVerifier("not-the-secret").generate_signature(timestamp=now, body=body)
            forged = await hub.client.post("/api/slack/events", content=body, headers={"X-Slack-Request-Timestamp": now, "X-Slack-Signature": wrong})
            assert forged.status_code == 401 and forged.json()["code"] == "webhook_rejected"
            await asyncio.sleep(0.5)
            assert all(m["text"] != "forged" for m in await hub.messages(headers))


async def test_slack_verification_token_is_not_stored(backend: str, tmp_path: Path) -> None:
    async with FakeSlack() as fake, fresh_database(backend, tmp_path) as db:
        fake.add_channel("C1", "general")
        async with running_hub(_env(backend, tmp_path, db, fake)) as hub:
            headers = await hub.login()
            await _install(hub, fake, headers)
            await eventually(lambda: hub.in_state(headers, "connected"), what="connected")
            fake.post_message("C1", "UALICE", "socket mode")
            url = f"{hub.url}/api/slack/events"
            fake.socket_mode = False
            fake.http_event_url, fake.signing_secret = url, SIGNING_SECRET
            fake.post_message("C1", "UALICE", "events api")
            await eventually(lambda: hub.with_text(headers, "events api"), what="http event")
            await eventually(lambda: hub.with_text(headers, "socket mode"), what="socket event")
            from store.schema import messages

            async with hub.hub.engine.connect() as conn:
                raws = [r.raw for r in (await conn.execute(messages.select())).all()]
            assert raws and all(fake.verification_token not in json.dumps(raw) for raw in raws)