"""One bad row never blocks ingest (issue 7, item 7).

A NUL character (U+0000) made PostgreSQL's COPY fail with an asyncpg error the fallback did not
catch, so the whole batch was retried forever. The store now removes NUL from every text it
writes (store/text.py), on both databases alike, and any failure of a batch falls back to
writing its entries one by one, dead-lettering only the one the database refuses.

Real parts: Telegram updates through the real stream, the Telegram connector's `normalize`,
the Ingestor and both databases; read back through the API.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError

from store.ids import now_ms
from connectors.base import Envelope
from store.schema import accounts, chats
from tests.e2e.harness import e2e_env, fresh_database, running_hub
from workers import ingest as ingest_module
from workers import keys
from workers.ingest import Ingestor, ensure_group
from workers.process import HubWorker
from workers.stream import append, queued

ACCOUNT = "acct_nul_test"


def _update(i: int, text: str, *, name: str = "Alice", title: str = "Team", chat: int = -100, date: int = 1_700_000_000, **extra: Any) -> dict[str, Any]:
    return {
        "update_id": 1000 + i,
        "message": {
            "message_id": i,
            "date": date,
            "chat": {"id": chat, "type": "supergroup", "title": title},
            "from": {"id": 9, "is_bot": False, "first_name": name, "last_name": "Lid\u0000dell" if "\u0000" in name else "L"},
            "text": text,
            "entities": [{"type": "bold", "offset": 0, "length": 1, "url": "x\u0000y" if "\u0000" in text else "xy"}],
            **extra,
        },
    }


@pytest.mark.parametrize("refused_row", [False, True], ids=["nul", "nul-and-refused-row"])
async def test_a_batch_with_nul_lands_whole_and_nothing_gets_stuck(backend: str, tmp_path: Path, refused_row: bool) -> None:
    async with fresh_database(backend, tmp_path) as db:
        async with running_hub(e2e_env(backend, tmp_path, db), worker=False) as hub:
            headers = await hub.login()
            me = (await hub.client.get("/api/remote-auth/user", headers=headers)).json()
            async with hub.hub.engine.begin() as conn:
                await conn.execute(accounts.insert().values(
                    id=ACCOUNT, user_id=me["id"], platform="telegram", external_id="777", name="bot", credentials=None,
                    settings={}, resume={}, enabled=False, state="stopped", created_at=now_ms(), updated_at=now_ms(),
                ))
            updates = [_update(i, f"good {i}") for i in range(12)]
            updates.insert(4, _update(100, "a\u0000b", name="Al\u0000ice", title="Te\u0000am"))  # NUL in text, names, raw JSON
            updates.insert(8, _update(101, "renamed", chat=-200, new_chat_title="New\u0000Title"))  # a chat change with NUL
            if refused_row:  # sent_at beyond 64 bits: refused by both databases, not as a DBAPIError
                updates.insert(10, _update(102, "from the far future", date=10**17))
            envelopes = [Envelope("telegram", ACCOUNT, str(u["update_id"]), now_ms(), u) for u in updates]
            assert await append(hub.hub.redis, envelopes) == len(envelopes)

            await ensure_group(hub.hub.redis)
            ingestor = Ingestor(hub.hub, "test-consumer", block_ms=50)
            assert await ingestor.step() == len(envelopes)  # one batch, and it did not raise

            # nothing stuck: the stream is drained and nothing is pending for a retry
            assert await queued(hub.hub.redis) == 0
            # a stored batch holds background work (embeddings, documents, insights) back for 2 s
            assert 0 < await hub.hub.redis.pttl(keys.INGEST_ACTIVE) <= 2000
            background = HubWorker(hub.hub, name="test-background")
            assert await background.ingest_busy()
            await hub.hub.redis.delete(keys.INGEST_ACTIVE)
            assert not await background.ingest_busy()
            pending = await hub.hub.redis.xpending(keys.stream_for(ACCOUNT), keys.INGEST_GROUP)
            assert pending["pending"] == 0
            # only the refused row is dead-lettered
            dead = [orjson.loads(d) for d in await hub.hub.redis.lrange(keys.DEAD_LETTERS, 0, -1)]
            assert [d["envelope"]["payload"]["update_id"] for d in dead] == ([1102] if refused_row else []), dead
            assert all(d["error"].startswith("store refused") for d in dead)

            # every other message is stored, NUL removed the same way on both databases
            got = await hub.messages(headers)
            assert sorted(m["text"] for m in got) == sorted([f"good {i}" for i in range(12)] + ["ab", "renamed"])
            nul = next(m for m in got if m["text"] == "ab")
            assert nul["senderName"] == "Alice Liddell" and nul["chatName"] == "Team"
            raw = (await hub.client.get("/api/messages/raw", params={"id": nul["id"]}, headers=headers)).json()["raw"]
            assert raw["message"]["text"] == "ab" and raw["message"]["entities"][0]["url"] == "xy"
            assert "\u0000" not in orjson.dumps([m for m in got]).decode() and "\\u0000" not in orjson.dumps(raw).decode()
            async with hub.hub.engine.connect() as conn:
                names = dict((await conn.execute(sa.select(chats.c.chat_id, chats.c.name).where(chats.c.account_id == ACCOUNT))).all())
            assert names == {"-100": "Team", "-200": "NewTitle"}

            # and the next batch goes through as usual
            await append(hub.hub.redis, [Envelope("telegram", ACCOUNT, "2000", now_ms(), _update(200, "after"))])
            assert await ingestor.step() == 1
            assert await hub.with_text(headers, "after")


async def test_when_the_database_is_away_the_batch_waits_instead_of_being_dead_lettered(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An outage in the middle of a batch cannot be caused on cue here (SQLite waits 30 s on a
    lock, PostgreSQL's pool pre-ping hides a killed connection), so the write raises the
    errors an outage gives; everything else is real."""
    async with fresh_database(backend, tmp_path) as db:
        async with running_hub(e2e_env(backend, tmp_path, db), worker=False) as hub:
            headers = await hub.login()
            me = (await hub.client.get("/api/remote-auth/user", headers=headers)).json()
            async with hub.hub.engine.begin() as conn:
                await conn.execute(accounts.insert().values(
                    id=ACCOUNT, user_id=me["id"], platform="telegram", external_id="777", name="bot", credentials=None,
                    settings={}, resume={}, enabled=False, state="stopped", created_at=now_ms(), updated_at=now_ms(),
                ))
            await append(hub.hub.redis, [Envelope("telegram", ACCOUNT, str(i), now_ms(), _update(i, f"m {i}")) for i in range(3)])
            await ensure_group(hub.hub.redis)
            ingestor = Ingestor(hub.hub, "test-consumer", block_ms=50, claim_idle_ms=0)
            real = ingest_module.apply_changes
            outages = [
                OperationalError("INSERT", {}, Exception("database is locked")),
                asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
                ConnectionRefusedError(111, "Connection refused"),
            ]
            for outage in outages:
                async def away(conn: Any, items: Any, outage: BaseException = outage) -> int:
                    raise outage

                monkeypatch.setattr(ingest_module, "apply_changes", away)
                with pytest.raises(type(outage)):
                    await ingestor.step()
                ingestor._next_claim = 0.0
                assert await hub.hub.redis.llen(keys.DEAD_LETTERS) == 0
                assert (await hub.hub.redis.xpending(keys.stream_for(ACCOUNT), keys.INGEST_GROUP))["pending"] == 3
            monkeypatch.setattr(ingest_module, "apply_changes", real)
            assert await ingestor.step() == 3  # reclaimed and written once the database is back
            assert sorted(m["text"] for m in await hub.messages(headers)) == ["m 0", "m 1", "m 2"]
            assert (await hub.hub.redis.xpending(keys.stream_for(ACCOUNT), keys.INGEST_GROUP))["pending"] == 0
