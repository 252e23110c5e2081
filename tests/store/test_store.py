"""Store: migrations match the schema, credentials sealed with a key id, on both databases."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from store.crypto import CredentialError, Vault
from store.schema import metadata
from store.users import EmailTaken, create_user, get_user_by_email


async def test_migrations_produce_the_declared_schema(hub) -> None:
    def diff(sync_conn):  # noqa: ANN001
        return compare_metadata(MigrationContext.configure(sync_conn), metadata)

    async with hub.engine.connect() as conn:
        changes = await conn.run_sync(diff)
    # FTS objects are created by hand in the migration and are not in metadata
    assert [c for c in changes if "fts" not in repr(c)] == []


async def test_email_is_unique_case_insensitively(hub) -> None:
    async with hub.engine.begin() as conn:
        await create_user(conn, email="Case@Example.com", name="A", password_hash=None)
        with pytest.raises(EmailTaken):
            await create_user(conn, email="case@example.COM", name="B", password_hash=None)
        found = await get_user_by_email(conn, "CASE@example.com")
    assert found is not None and found["name"] == "A"


def test_vault_roundtrip_rotation_and_binding() -> None:
    old = Vault("old secret")
    sealed = old.encrypt({"access_token": "xoxb-123"}, bound_to="acct_1")
    assert "xoxb-123" not in sealed and sealed.startswith(old.current_kid + ".")
    rotated = Vault("new secret", ["old secret"])
    assert rotated.decrypt(sealed, "acct_1") == {"access_token": "xoxb-123"}
    assert rotated.needs_rotation(sealed) and not rotated.needs_rotation(rotated.encrypt({}, "acct_1"))
    with pytest.raises(CredentialError):
        rotated.decrypt(sealed, "acct_2")  # copied onto another row
    with pytest.raises(CredentialError):
        Vault("unrelated").decrypt(sealed, "acct_1")
