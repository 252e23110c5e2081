"""Generate insights: load a chat, run a method, upsert the row.

A chat's insight is recomputed from its newest messages (a window of WINDOW) plus the previous
insight, whose open items are carried over while their messages are older than the window.
The LLM method is sent only messages after the previous insight's `last_seq`. Rows say how far
the owner's `seq` was folded in (`last_seq`), so the worker and `POST /api/insights/generate`
only touch chats that changed.
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa

from ai.insights.model import Draft, Item, Msg
from ai.insights.names import Names, names_for
from ai.insights.offline import analyze
from loomi.hub import Hub
from store import insights as insight_store
from store.schema import message_embeddings, messages

log = logging.getLogger("loomi.insights")
WINDOW = 300
METHODS = ("auto", "offline", "llm")


def llm_available(hub: Hub) -> bool:
    from ai.gateway import gateway_of

    try:
        return any("chat" in p.capabilities for p in gateway_of(hub).table.upstreams)
    except Exception:  # noqa: BLE001 - a broken provider table means: offline
        return False


def draft_of(row: dict[str, Any]) -> Draft:
    return Draft(
        title=row["title"], description=row["description"], importance=row["importance"], urgency=row["urgency"],
        categories=row["categories"], people=row["people"],
        my_tasks=[Item.model_validate(i) for i in row["my_tasks"]],
        waiting_for_me=[Item.model_validate(i) for i in row["waiting_for_me"]],
        waiting_for_others=[Item.model_validate(i) for i in row["waiting_for_others"]],
        next_actions=row["next_actions"], mentions=row["mentions"], is_unreplied=row["is_unreplied"],
        due_date=row["due_date"], source_message_ids=row["source_message_ids"],
    )


async def _stored_vectors(conn, rows: list[Any]) -> dict[str, Any]:  # noqa: ANN001
    """The indexer's current vectors for these messages (same model, not older than an edit)."""
    from ai.local.embeddings import MODEL_NAME
    from ai.vectors import unpack

    if not rows:
        return {}
    e = message_embeddings
    edited = {r["id"]: r["edited_at"] for r in rows}
    found = await conn.execute(
        sa.select(e.c.message_id, e.c.vector, e.c.created_at).where(e.c.message_id.in_(list(edited)), e.c.model == MODEL_NAME)
    )
    return {mid: unpack(blob) for mid, blob, made in found if edited[mid] is None or made >= edited[mid]}


async def load_chat(conn, user_id: str, account_id: str, chat_id: str) -> tuple[list[Msg], dict[str, Any]]:  # noqa: ANN001
    m = messages
    rows = (
        await conn.execute(
            sa.select(m).where(m.c.user_id == user_id, m.c.account_id == account_id, m.c.chat_id == chat_id, m.c.deleted_at.is_(None))
            .order_by(m.c.sent_at.desc(), m.c.id.desc()).limit(WINDOW)
        )
    ).mappings().all()
    rows = list(reversed(rows))
    msgs = [
        Msg(id=r["id"], native_id=r["native_id"], sender_id=r["sender_id"], sender_name=r["sender_name"], is_self=bool(r["is_self"]),
            text=r["text"] or "", sent_at=int(r["sent_at"]), reply_to=r["reply_to_id"], seq=int(r["seq"]))
        for r in rows
    ]
    meta_vectors = await _stored_vectors(conn, [r for r in rows if r["text"]])
    max_seq = (await conn.execute(sa.select(sa.func.max(m.c.seq)).where(m.c.user_id == user_id, m.c.account_id == account_id, m.c.chat_id == chat_id))).scalar()
    newest = rows[-1] if rows else None
    meta = {
        "platform": newest["platform"] if newest else None,
        "chat_name": next((r["chat_name"] for r in reversed(rows) if r["chat_name"]), None),
        "chat_type": newest["chat_type"] if newest else None,
        "max_seq": int(max_seq or 0),
        "vectors": meta_vectors,
    }
    return msgs, meta


async def generate_chat(hub: Hub, user_id: str, account_id: str, chat_id: str, method: str = "auto",
                        names: Names | None = None) -> dict[str, Any] | None:
    """Compute and store one chat's insight; None when the chat has no live messages."""
    key = insight_store.dedupe_key(account_id, chat_id)
    async with hub.engine.connect() as conn:
        msgs, meta = await load_chat(conn, user_id, account_id, chat_id)
        previous_row = await insight_store.get_by_key(conn, user_id, key)
        names = names or await names_for(conn, user_id)
    if not msgs:
        return None
    previous = draft_of(previous_row) if previous_row else None
    is_dm = meta["chat_type"] == "dm"
    draft = analyze(msgs, names, is_dm=is_dm, chat_name=meta["chat_name"], previous=previous, stored_vectors=meta["vectors"])
    used, model = "offline", None
    if method == "llm" or (method == "auto" and llm_available(hub)):
        from ai.insights.llm import improve

        since = previous_row["last_seq"] if previous_row and previous_row["method"] == "llm" else 0
        better = await improve(hub, user_id, msgs, meta, draft, previous if since else None, since_seq=since, names=names)
        if better is not None:
            draft, model = better
            used = "llm"
    values = {
        "user_id": user_id, "account_id": account_id, "platform": meta["platform"], "chat_id": chat_id,
        "chat_name": meta["chat_name"], "dedupe_key": key, "method": used, "model": model,
        "as_of": max(m.sent_at for m in msgs), "last_seq": meta["max_seq"], **stored(draft),
    }
    async with hub.engine.begin() as conn:
        return await insight_store.upsert(conn, values)


def stored(draft: Draft) -> dict[str, Any]:
    def items(values: list[Item]) -> list[dict[str, Any]]:
        return [i.model_dump(by_alias=True) for i in values]

    return {
        "title": draft.title, "description": draft.description, "importance": draft.importance, "urgency": draft.urgency,
        "categories": draft.categories, "people": draft.people, "my_tasks": items(draft.my_tasks),
        "waiting_for_me": items(draft.waiting_for_me), "waiting_for_others": items(draft.waiting_for_others),
        "next_actions": draft.next_actions, "mentions": draft.mentions, "is_unreplied": draft.is_unreplied,
        "due_date": draft.due_date, "source_message_ids": draft.source_message_ids,
    }


async def generate(hub: Hub, user_id: str, *, chat_id: str | None = None, account_id: str | None = None,
                   method: str = "auto", force: bool = False) -> list[dict[str, Any]]:
    """Insights for the owner's chats in scope that changed since their insight (all of them
    with `force`, or when a chat is named)."""
    async with hub.engine.connect() as conn:
        chats = await insight_store.chats(conn, user_id, account_id=account_id, chat_id=chat_id)
        folded = await insight_store.last_seqs(conn, user_id)
        names = await names_for(conn, user_id)
    out = []
    for chat in chats:
        key = insight_store.dedupe_key(chat["account_id"], chat["chat_id"])
        if not (force or chat_id) and folded.get(key, -1) >= chat["max_seq"]:
            async with hub.engine.connect() as conn:
                existing = await insight_store.get_by_key(conn, user_id, key)
            if existing:
                out.append(existing)
                continue
        row = await generate_chat(hub, user_id, chat["account_id"], chat["chat_id"], method, names)
        if row is not None:
            out.append(row)
    return out
