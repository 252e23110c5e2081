"""The store's NUL rule beyond messages (issue 7, item 7): account names, external ids,
settings, state details, resume points and send errors come from platforms too, and
PostgreSQL refuses U+0000 in text and JSON. Removed, the same on both databases; credentials
are sealed exactly as given."""

from __future__ import annotations

from store import accounts as account_store
from store import messages as message_store
from store.model import AccountSpec, AccountState


async def test_platform_text_written_outside_messages_has_nul_removed(hub, user: dict) -> None:  # noqa: ANN001
    user_id = user["user"]["id"]
    spec = AccountSpec(external_id="ext\x00-1", name="Bo\x00t", credentials={"token": "se\x00cret"}, settings={"k\x00": ["v\x00"]})
    async with hub.engine.begin() as conn:
        row = await account_store.upsert_account(conn, hub.vault, user_id, "telegram", spec)
        again = await account_store.upsert_account(conn, hub.vault, user_id, "telegram", spec)  # found by the same id
        await account_store.set_state(conn, row["id"], AccountState.BACKOFF, "platform said: bad\x00thing")
        await account_store.save_resume(conn, row["id"], {"cursor": "c\x00ursor"})
        sent = await message_store.insert_outbound(
            conn, user_id=user_id, account_id=row["id"], platform="telegram", chat_id="42", text="hi\x00there",
            reply_to_id=None, thread_id=None, idempotency_key=None,
        )
        await message_store.mark_failed(conn, sent, "refused: \x00", final=True)
    assert again["id"] == row["id"]
    async with hub.engine.connect() as conn:
        stored = await account_store.get_row(conn, row["id"])
        message = await message_store.get_message(conn, user_id, sent["id"])
    assert stored is not None and message is not None
    assert (stored["name"], stored["external_id"], stored["settings"]) == ("Bot", "ext-1", {"k": ["v"]})
    assert stored["state_detail"] == "platform said: badthing" and stored["resume"] == {"cursor": "cursor"}
    assert hub.vault.decrypt(stored["credentials"], row["id"]) == {"token": "se\x00cret"}
    assert (message["text"], message["error"]) == ("hithere", "refused: ")
