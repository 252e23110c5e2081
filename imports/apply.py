"""Store import records for one person: the same write path as ingest, in one transaction.

Accounts are matched by (platform, the platform's account id): history for an account the
person already connected joins it; otherwise an account is created in state `imported`, with
no credentials, so no worker ever starts a listener for it (the supervisor only runs enabled
accounts that have credentials). Messages go through `store.messages.apply_changes` as
`Owned` upserts, so exactly-once is the store's `ON CONFLICT (account_id, chat_id, native_id)`:
a re-import inserts nothing. Everything runs in one transaction: a failure leaves nothing
half-imported.
"""

from __future__ import annotations

from typing import Callable, Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connectors.base import Change, ChangeKind, Message
from imports.records import ImportRecord, ImportResult
from store.ids import new_id, now_ms
from store.messages import Owned, apply_changes
from store.schema import accounts

IMPORTED = "imported"
BATCH = 2000

Progress = Callable[[int, int], None]  # (records written so far, total)


async def ensure_accounts(conn: AsyncConnection, user_id: str, records: Sequence[ImportRecord]) -> tuple[dict[tuple[str, str], str], list[str]]:
    """(platform, external id) -> our account id, creating what is missing; and the ids created."""
    wanted: dict[tuple[str, str], str] = {}
    for record in records:
        wanted.setdefault((record.platform, record.account_id), record.account_name)
    found: dict[tuple[str, str], str] = {}
    rows = await conn.execute(
        sa.select(accounts.c.id, accounts.c.platform, accounts.c.external_id).where(accounts.c.user_id == user_id)
    )
    for row in rows:
        if (row.platform, row.external_id) in wanted:
            found[(row.platform, row.external_id)] = row.id
    created = []
    now = now_ms()
    for (platform, external_id), name in wanted.items():
        if (platform, external_id) in found:
            continue
        account_id = new_id("acct")
        await conn.execute(
            accounts.insert().values(
                id=account_id, user_id=user_id, platform=platform, external_id=external_id, name=name[:200],
                credentials=None, settings={"imported": True}, resume={}, enabled=True, state=IMPORTED,
                state_detail="history imported from a file; no listener", created_at=now, updated_at=now,
            )
        )
        found[(platform, external_id)] = account_id
        created.append(account_id)
    return found, created


def owned(user_id: str, account_id: str, record: ImportRecord) -> Owned:
    message = Message(
        chat_id=record.chat_id,
        native_id=record.native_id,
        sent_at=record.sent_at,
        chat_type=record.chat_type,
        chat_name=record.chat_name,
        thread_id=record.thread_id,
        reply_to_id=record.reply_to,
        sender_id=record.sender_id,
        sender_name=record.sender_name,
        is_self=record.is_self,
        text=record.text,
        attachments=list(record.attachments),
        edited_at=record.edited_at,
        content_type=record.content_type,
    )
    change = Change(ChangeKind.UPSERT, record.chat_id, record.native_id, message)
    return Owned(user_id, account_id, record.platform, change, {"_loomi_import": record.line, **(record.raw or {})})


async def import_records(
    engine: AsyncEngine, user_id: str, records: Sequence[ImportRecord], progress: Progress | None = None
) -> ImportResult:
    """Write every record for `user_id` in one transaction; see the module docstring."""
    result = ImportResult(total=len(records))
    result.chats = len({(r.platform, r.account_id, r.chat_id) for r in records})
    async with engine.begin() as conn:
        account_ids, result.accounts_created = await ensure_accounts(conn, user_id, records)
        for start in range(0, len(records), BATCH):
            batch = records[start : start + BATCH]
            items = [owned(user_id, account_ids[(r.platform, r.account_id)], r) for r in batch]
            result.imported += await apply_changes(conn, items)
            reacted = [
                Owned(user_id, account_ids[(r.platform, r.account_id)], r.platform,
                      Change(ChangeKind.REACTION, r.chat_id, r.native_id, reaction=reaction), None)
                for r in batch for reaction in r.reactions
            ]  # after the messages exist; the same (emoji, sender) again changes nothing
            result.reactions += await apply_changes(conn, reacted)
            if progress is not None:
                progress(start + len(batch), len(records))
    result.skipped = result.total - result.imported
    return result
