"""`loomi keys rotate`: re-seal every stored credential under the current key, hub running.

Safe while the hub runs because every process opens a ciphertext with whichever listed key
sealed it (LOOMI_SECRET_KEY or one of LOOMI_OLD_SECRET_KEYS, `store.crypto.Vault`), so a
worker loading an account mid-rotation reads it either way. Rows are re-sealed in small
transactions, each update guarded by the ciphertext it replaces, so a credential a worker
refreshed meanwhile is never overwritten with the stale one. Only ciphertexts not yet under
the current key id are read: running it again does nothing, and an interrupted run resumes
where it stopped. What the Vault seals: `accounts.credentials` and the state of sign-in flows
in progress (`loomi:login:*` in Redis, kept with their TTL).
"""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from config.settings import OLD_KEYS_FILE, Settings
from loomi.hub import Hub
from store.crypto import CredentialError
from store.schema import accounts

log = logging.getLogger("loomi.keys")
LOGIN_PATTERN = "loomi:login:*"
# set the value only if it is still the one we read, keeping its TTL (KEEPTTL: Redis >= 6.0)
_SWAP = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('set', KEYS[1], ARGV[2], 'KEEPTTL') and 1 end return 0"


@dataclass
class Report:
    key_id: str
    resealed: int = 0  # account credentials now under key_id
    changed_meanwhile: int = 0  # rewritten by a worker during the pass; the next pass takes them
    unreadable: int = 0  # no listed key opens them: an old key is missing from LOOMI_OLD_SECRET_KEYS
    logins_resealed: int = 0
    remaining: int = 0  # ciphertexts still under another key after the run

    def lines(self) -> list[str]:
        return [
            f"current key id {self.key_id}",
            f"accounts re-sealed: {self.resealed}",
            f"sign-in flows re-sealed: {self.logins_resealed}",
            f"changed during the run (run again): {self.changed_meanwhile}",
            f"unreadable (a key is missing): {self.unreadable}",
            f"still under an old key: {self.remaining}",
        ]


def _stale(kid: str) -> sa.ColumnElement[bool]:
    return sa.and_(accounts.c.credentials.is_not(None), sa.not_(accounts.c.credentials.startswith(kid + ".")))


async def _accounts(hub: Hub, report: Report, batch: int, limit: int | None) -> None:
    vault, after = hub.vault, ""
    while limit is None or report.resealed < limit:
        if limit is not None:
            batch = min(batch, limit - report.resealed)
        async with hub.engine.begin() as conn:  # one short transaction per batch
            rows = (await conn.execute(
                sa.select(accounts.c.id, accounts.c.credentials)
                .where(_stale(vault.current_kid), accounts.c.id > after).order_by(accounts.c.id).limit(batch)
            )).all()
            for account_id, sealed in rows:
                try:
                    fresh = vault.encrypt(vault.decrypt(sealed, bound_to=account_id), bound_to=account_id)
                except CredentialError:
                    report.unreadable += 1
                    log.warning("%s: credentials open with no listed key; left as they are", account_id)
                    continue
                done = await conn.execute(
                    accounts.update().where(accounts.c.id == account_id, accounts.c.credentials == sealed).values(credentials=fresh)
                )
                if done.rowcount == 1:
                    report.resealed += 1
                else:
                    report.changed_meanwhile += 1
        if len(rows) < batch:
            return
        after = rows[-1][0]


async def _logins(hub: Hub, report: Report) -> None:
    vault = hub.vault
    async for raw_key in hub.redis.scan_iter(match=LOGIN_PATTERN, count=500):
        key = raw_key.decode()
        sealed = await hub.redis.get(key)
        if sealed is None or not vault.needs_rotation(sealed.decode()):
            continue
        try:
            fresh = vault.encrypt(vault.decrypt(sealed.decode(), bound_to=key), bound_to=key)
        except CredentialError:
            report.unreadable += 1
            continue
        if await hub.redis.eval(_SWAP, 1, key, sealed, fresh.encode()):
            report.logins_resealed += 1


async def rotate(hub: Hub, batch: int = 100, limit: int | None = None) -> Report:
    """Re-seal what is not under the current key (at most `limit` accounts); returns the counts."""
    report = Report(hub.vault.current_kid)
    await _accounts(hub, report, batch, limit)
    await _logins(hub, report)
    async with hub.engine.connect() as conn:
        report.remaining = int((await conn.execute(sa.select(sa.func.count()).where(_stale(report.key_id)))).scalar_one())
    return report


def new_home_key(settings: Settings) -> str:
    """Replace the key `loomi serve` generated in LOOMI_HOME with a new one, keeping the old
    one in LOOMI_HOME/old_secret_keys so what it sealed and signed still opens. Only for a
    generated key: a LOOMI_SECRET_KEY from the environment is the operator's to change."""
    if settings.secret_key is not None:
        raise ValueError("LOOMI_SECRET_KEY is set: put the new key there and the old one in LOOMI_OLD_SECRET_KEYS")
    home = Path(settings.home)
    current = home / "secret_key"
    if not current.exists():
        raise ValueError(f"no generated key at {current}")
    old = current.read_text().strip()
    olds = home / OLD_KEYS_FILE
    kept = [line.strip() for line in olds.read_text().splitlines() if line.strip()] if olds.exists() else []
    _write_private(olds, "\n".join([old, *[k for k in kept if k != old]]) + "\n")  # the old key first: kept before the switch
    new = secrets.token_urlsafe(48)
    _write_private(current, new)
    return new


def _write_private(path: Path, text: str) -> None:
    """Write atomically (a reader sees the old file or the new one), mode 0600."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)
