"""The poller on a chat.db being written at the same time: every row once, in order, the last
ROWID saved with each emit, a restart resuming there; the file opened read-only and never
locked against the writer; connect's checks; send refused."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from config.settings import load_settings
from connectors.base import AccountState, ChangeKind, Envelope, Outbound, SetupContext
from connectors.imessage.chatdb import open_readonly
from connectors.imessage.connector import IMessageConnector, SendingUnavailable
from tests.connectors.imessage.conftest import ALICE, BOB, account
from tests.fakes.imessage import SCHEMA, ChatDb, apple_ns, archived
from tests.waiting import wait_until

SETUP = SetupContext(user_id="user-1", public_url="http://127.0.0.1:3414")


def connector(**kw: Any) -> IMessageConnector:
    return IMessageConnector(load_settings({}).platform("imessage"), poll_seconds=0.05, **kw)


class Ctx:
    """What the supervisor gives a listener: emits are recorded with the resume state saved with them."""

    def __init__(self, path: Path, resume: dict[str, Any] | None = None, fail_emits: int = 0) -> None:
        self.account = account(path)
        self.resume = dict(resume or {})
        self.envelopes: list[Envelope] = []
        self.states: list[tuple[AccountState, str | None]] = []
        self.fail_emits = fail_emits

    async def emit(self, envelopes: list[Envelope], resume: dict[str, Any] | None = None) -> None:
        if self.fail_emits:
            self.fail_emits -= 1
            raise ConnectionError("the queue is down")
        self.envelopes += envelopes
        if resume is not None:
            self.resume = resume

    async def report(self, state: AccountState, detail: str | None = None) -> None:
        self.states.append((state, detail))

    async def reconnected(self) -> None: ...

    def guids(self) -> list[str]:
        return [e.delivery_id for e in self.envelopes]


async def stop(task: asyncio.Task) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_history_then_new_rows_once_each_and_a_restart_resumes(chatdb: ChatDb) -> None:
    chat = chatdb.chat([ALICE])
    history = [chatdb.message(chat, ALICE, f"old {i}") for i in range(7)]
    ctx = Ctx(chatdb.path)
    task = asyncio.create_task(connector(batch=3).listen(ctx))  # batches of 3: the history takes several polls
    await wait_until(lambda: len(ctx.envelopes) == 7)
    assert ctx.states[0][0] is AccountState.CONNECTED and ctx.guids() == history
    live = [chatdb.message(chat, BOB if i % 2 else ALICE, f"live {i}") for i in range(5)]
    await wait_until(lambda: len(ctx.envelopes) == 12)
    assert ctx.guids() == history + live
    assert ctx.resume["rowid"] == max(e.payload["rowid"] for e in ctx.envelopes)
    await stop(task)

    while_away = [chatdb.message(chat, ALICE, f"while away {i}") for i in range(3)]
    again = Ctx(chatdb.path, resume=ctx.resume)
    task = asyncio.create_task(connector().listen(again))
    await wait_until(lambda: len(again.envelopes) == 3)
    await asyncio.sleep(0.2)  # a duplicate would arrive by now
    assert again.guids() == while_away
    await stop(task)


async def test_edits_and_unsends_of_recent_rows_are_seen_once(chatdb: ChatDb) -> None:
    chat = chatdb.chat([ALICE])
    old = chatdb.message(chat, ALICE, "typo")
    ctx = Ctx(chatdb.path)
    task = asyncio.create_task(connector().listen(ctx))
    await wait_until(lambda: ctx.guids() == [old])
    chatdb.edit(old, "fixed")
    await wait_until(lambda: len(ctx.envelopes) == 2)
    edit = ctx.envelopes[1]
    assert edit.delivery_id.startswith(f"{old}:edit:") and edit.payload["change"] == "edit"
    (change,) = connector().normalize(edit, ctx.account)
    assert change.kind is ChangeKind.EDIT and change.message.text == "fixed" and change.at == change.message.edited_at
    gone = chatdb.message(chat, ALICE, "oops")
    await wait_until(lambda: len(ctx.envelopes) == 3)
    chatdb.unsend(gone)
    await wait_until(lambda: len(ctx.envelopes) == 4)
    (deleted,) = connector().normalize(ctx.envelopes[3], ctx.account)
    assert deleted.kind is ChangeKind.DELETE and deleted.native_id == gone
    await asyncio.sleep(0.3)  # each change is read once: the watermark moved past it
    assert len(ctx.envelopes) == 4
    await stop(task)

    chatdb.unsend(old, retracted_column=True)  # while the poller is stopped
    again = Ctx(chatdb.path, resume=ctx.resume)
    task = asyncio.create_task(connector().listen(again))
    await wait_until(lambda: len(again.envelopes) == 1)
    (deleted,) = connector().normalize(again.envelopes[0], again.account)
    assert deleted.kind is ChangeKind.DELETE and deleted.native_id == old
    await stop(task)


async def test_a_message_not_yet_in_its_chat_waits_for_its_join_row(chatdb: ChatDb) -> None:
    """Should Messages commit the message row before its chat_message_join row, the poller does
    not read past it (it would lose its chat) until the join arrives."""
    chat = chatdb.chat([ALICE])
    first = chatdb.message(chat, ALICE, "first")
    ctx = Ctx(chatdb.path)
    task = asyncio.create_task(connector().listen(ctx))
    await wait_until(lambda: ctx.guids() == [first])
    chatdb.db.execute("INSERT INTO message (guid, attributedBody, handle_id, date) VALUES ('LATE-JOIN', ?, 1, ?)",
                      (archived("late"), apple_ns()))
    after = chatdb.message(chat, ALICE, "after")
    await asyncio.sleep(0.4)
    assert ctx.guids() == [first]  # neither the chatless row nor the one behind it
    rowid = chatdb.db.execute("SELECT ROWID FROM message WHERE guid = 'LATE-JOIN'").fetchone()[0]
    chatdb.db.execute("INSERT INTO chat_message_join VALUES (?, ?, 0)", (chat, rowid))
    await wait_until(lambda: ctx.guids() == [first, "LATE-JOIN", after])
    assert ctx.envelopes[1].payload["chat_guid"] == chatdb.chat_guid(chat)
    await stop(task)


async def test_a_failed_emit_keeps_the_position(chatdb: ChatDb) -> None:
    chat = chatdb.chat([ALICE])
    first = chatdb.message(chat, ALICE, "first")
    ctx = Ctx(chatdb.path, fail_emits=1)
    with pytest.raises(ConnectionError):
        await connector().listen(ctx)
    assert ctx.resume == {} and ctx.envelopes == []
    task = asyncio.create_task(connector().listen(ctx))  # the supervisor restarts it
    await wait_until(lambda: ctx.guids() == [first])
    await stop(task)


async def test_the_reader_never_blocks_the_writer_and_cannot_write(chatdb: ChatDb) -> None:
    chat = chatdb.chat([ALICE])
    ctx = Ctx(chatdb.path)
    task = asyncio.create_task(connector(batch=1).listen(ctx))
    written = []
    for i in range(60):  # Messages keeps writing while we poll: never "database is locked"
        written.append(await asyncio.to_thread(chatdb.message, chat, ALICE, f"busy {i}"))
    await wait_until(lambda: len(ctx.envelopes) == 60, timeout=30)
    assert ctx.guids() == written
    await stop(task)
    reader = open_readonly(chatdb.path)
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            reader.execute("DELETE FROM message")
    finally:
        reader.close()


async def test_connect_checks_the_file_and_names_the_path(tmp_path: Path, chatdb: ChatDb) -> None:
    spec = await connector().connect({"dbPath": str(chatdb.path)}, SETUP)
    assert spec.external_id.startswith("chatdb:") and spec.settings["db_path"] == str(chatdb.path.resolve())
    assert spec.credentials == {"db_path": str(chatdb.path.resolve())} and spec.name.startswith("iMessage on ")
    assert (await connector().connect({"dbPath": str(chatdb.path)}, SETUP)).external_id == spec.external_id
    missing = tmp_path / "nowhere" / "chat.db"
    with pytest.raises(ValueError, match=str(missing)):
        await connector().connect({"dbPath": str(missing)}, SETUP)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE notes (x)").connection.commit()
    with pytest.raises(ValueError, match="not a Messages database"):
        await connector().connect({"dbPath": str(other)}, SETUP)
    monterey = tmp_path / "monterey.db"
    with sqlite3.connect(monterey) as db:  # macOS 12 had no edits: no date_edited / date_retracted
        db.executescript(SCHEMA.replace(" date_retracted INTEGER DEFAULT 0, date_edited INTEGER DEFAULT 0,", ""))
    with pytest.raises(ValueError, match="older than 13.*date_edited"):
        await connector().connect({"dbPath": str(monterey)}, SETUP)


async def test_the_default_path_is_the_messages_database(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # this machine is no Mac: the default path does not exist
    with pytest.raises(ValueError, match=f"{tmp_path}/Library/Messages/chat.db"):
        await connector().connect({}, SETUP)


async def test_a_worker_without_the_file_says_so(tmp_path: Path) -> None:
    ctx = Ctx(tmp_path / "gone.db")
    with pytest.raises(ValueError):
        await connector().listen(ctx)
    (state, detail), = ctx.states
    assert state is AccountState.BACKOFF and "gone.db" in (detail or "") and "test-mac" in (detail or "")


async def test_send_is_refused_clearly(chatdb: ChatDb) -> None:
    with pytest.raises(SendingUnavailable, match="AppleScript"):
        await connector().send(account(chatdb.path), Outbound(chat_id=f"iMessage;-;{ALICE}", text="hi"))
