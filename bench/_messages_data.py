"""The stored messages bench/messages.py reads: a realistic spread, and a fast bulk fill.

Two people: the owner holds most rows (85%) over six accounts on five platforms, another
person the rest over two. ~2,700 chats and ~17,000 senders with Zipf-like sizes (a few huge
channels, many small DMs), threads on Slack and Discord, a few edits, deletions, reactions,
attachments, and a ~500-byte raw payload per row. Text is 4-30 words drawn from a Zipf
vocabulary of 20,000 words, so some words are in a third of all messages and most are rare.

Rows are stored in the order a hub would have written them: each account's history arrives
in one burst when it is connected (newest first, as history pages come) and live messages
after that, so the rowid / insertion order is NOT the `sent_at` order; that is what makes a
full-text plan that trusts the text index's order slow or wrong.

The fill drops the messages table's secondary indexes (and the SQLite FTS triggers), loads the
rows (sqlite3 executemany / asyncpg COPY), then recreates every one of them from the definition
the migrations left in the database, so the result is what ingest would have built.
(Not a bench module: `python -m bench` runs only modules that print result lines.)
"""

from __future__ import annotations

import random
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

DAY = 86_400_000
T_END = 1_767_225_600_000  # 2026-01-01: the newest message
SPAN = 730 * DAY  # two years of history

COMMON = ("the to and a of in is for on you it that this we i be with are at have can will "
          "meeting tomorrow thanks please deploy review update call").split()

ACCOUNTS = [  # (person, platform, share of all rows, chats, connected this many days before T_END)
    ("owner", "slack", 0.30, 700, 730),
    ("owner", "slack", 0.08, 200, 400),
    ("owner", "telegram", 0.22, 700, 600),
    ("owner", "discord", 0.13, 500, 300),
    ("owner", "whatsapp", 0.09, 450, 200),
    ("owner", "feishu", 0.03, 100, 90),
    ("other", "telegram", 0.09, 250, 500),
    ("other", "slack", 0.06, 100, 365),
]

COLUMNS = (
    "id", "user_id", "account_id", "platform", "chat_id", "chat_name", "chat_type", "native_id", "thread_id",
    "reply_to_id", "sender_id", "sender_name", "is_self", "direction", "text", "original_text", "content_type",
    "attachments", "mentions", "reactions", "sent_at", "edited_at", "deleted_at", "status", "error",
    "idempotency_key", "seq", "raw", "created_at", "updated_at",
)
CHAT_COLUMNS = ("account_id", "chat_id", "user_id", "name", "type", "updated_at")


@dataclass
class Account:
    id: str
    person: str  # "owner" | "other"
    platform: str
    share: float
    chats: int
    connected_at: int  # ms: its history before this arrives in one burst then
    chat_ids: list[str] = field(default_factory=list)
    chat_names: list[str] = field(default_factory=list)
    chat_types: list[str] = field(default_factory=list)
    senders: list[str] = field(default_factory=list)
    self_id: str = ""


@dataclass
class Spread:
    """What was generated (the owner's side), to pick the values the bench asks for."""

    rows: int
    owner_rows: int
    accounts: list[Account]
    user_ids: dict[str, str]
    doc_freq: dict[str, int]  # word -> owner's rows containing it
    chat_counts: dict[str, int]  # chat id -> owner's rows
    sender_counts: dict[str, int]
    thread_counts: dict[str, int]

    def word_near(self, fraction: float, skip: int = 0) -> str:
        """The word in closest to `fraction` of the owner's messages (`skip`: the next closest)."""
        target = fraction * self.owner_rows
        return sorted(self.doc_freq, key=lambda w: (abs(self.doc_freq[w] - target), w))[skip]

    @staticmethod
    def spaced(counts: dict[str, int], n: int) -> list[str]:
        """`n` keys from the largest to the smallest, evenly spaced by rank."""
        ranked = sorted(counts, key=lambda k: (-counts[k], k))
        return [ranked[int(i * (len(ranked) - 1) / max(1, n - 1))] for i in range(n)]


def _vocabulary(size: int, rng: random.Random) -> list[str]:
    """COMMON words first, then distinct pseudo-words."""
    consonants, vowels = "bcdfghjklmnprstvwz", "aeiou"
    words = list(COMMON)
    seen = set(words)
    while len(words) < size:
        n = rng.randint(2, 4)
        word = "".join(rng.choice(consonants) + rng.choice(vowels) for _ in range(n)) + rng.choice(["", "s", "n", "t", "er"])
        if word not in seen:
            seen.add(word)
            words.append(word)
    return words


def _chat_id(platform: str, i: int, rng: random.Random) -> str:
    if platform == "slack":
        return f"C{rng.randrange(36**8):X}{i}"
    if platform == "telegram":
        return str(-1_000_000_000_000 - rng.randrange(10**9) * 100 - i)
    if platform == "discord":
        return str(900_000_000_000_000_000 + rng.randrange(10**15) * 1000 + i)
    if platform == "whatsapp":
        return f"{rng.randrange(10**11):011d}{i}@s.whatsapp.net"
    return f"oc_{rng.randrange(16**24):024x}{i}"


def _dump(value: Any) -> str:
    return orjson.dumps(value).decode()


def generate(rows: int, user_ids: dict[str, str], account_ids: list[str], seed: int = 12) -> tuple[Spread, list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(spread, message rows as COLUMNS tuples in insertion order, chat rows as CHAT_COLUMNS)."""
    rng = random.Random(seed)
    gen = np.random.default_rng(seed)
    vocab = np.array(_vocabulary(20_000, rng))
    accounts = []
    for (person, platform, share, chats, days), account_id in zip(ACCOUNTS, account_ids):
        acct = Account(account_id, person, platform, share, chats, T_END - days * DAY)
        acct.chat_ids = [_chat_id(platform, i, rng) for i in range(chats)]
        acct.chat_names = [f"{platform}-{vocab[rng.randrange(30, 400)]}-{i}" for i in range(chats)]
        acct.chat_types = [rng.choices(["dm", "group", "channel"], [5, 3, 2])[0] for _ in range(chats)]
        acct.senders = [f"U{platform[:2].upper()}{rng.randrange(16**8):08X}{i}" for i in range(max(50, int(20_000 * share)))]
        acct.self_id = f"SELF-{person}-{platform}"
        accounts.append(acct)

    def zipf(n: int, s: float, size: int) -> np.ndarray:
        cum = np.cumsum(1 / np.arange(1, n + 1) ** s)
        return np.searchsorted(cum, gen.random(size) * cum[-1], side="right")

    shares = np.array([a.share for a in accounts])
    which = gen.choice(len(accounts), size=rows, p=shares / shares.sum())
    sent = T_END - (gen.random(rows) ** 0.8 * SPAN).astype(np.int64)  # denser recently
    chat = np.empty(rows, dtype=np.int64)
    sender = np.empty(rows, dtype=np.int64)
    for i, acct in enumerate(accounts):
        mine = which == i
        chat[mine] = zipf(acct.chats, 1.1, int(mine.sum()))
        sender[mine] = zipf(len(acct.senders), 1.0, int(mine.sum()))
    is_self = gen.random(rows) < 0.1
    lengths = gen.integers(4, 31, size=rows)
    word_ids = zipf(len(vocab), 1.07, int(lengths.sum()))
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    flags = gen.random((rows, 8))
    owner = np.array([a.person == "owner" for a in accounts])[which]
    # document frequency over the owner's rows: each (row, word) pair once
    row_of_word = np.repeat(np.arange(rows), lengths)
    mine = owner[row_of_word]
    pairs = np.sort(row_of_word[mine] * len(vocab) + word_ids[mine])
    pairs = pairs[np.concatenate([[True], pairs[1:] != pairs[:-1]])]
    doc_counts = np.bincount(pairs % len(vocab), minlength=len(vocab))
    doc_freq = {str(vocab[w]): int(n) for w, n in enumerate(doc_counts) if n}
    del row_of_word, mine, pairs

    staged: list[tuple[int, list[Any]]] = []
    chat_counts: dict[str, int] = {}
    sender_counts: dict[str, int] = {}
    thread_counts: dict[str, int] = {}
    natives: dict[str, int] = {}
    open_threads: dict[str, list[str]] = {}
    chats: dict[tuple[str, str], tuple[Any, ...]] = {}
    words = vocab[word_ids].tolist()
    which_, sent_, chat_, sender_, self_ = which.tolist(), sent.tolist(), chat.tolist(), sender.tolist(), is_self.tolist()
    bounds_, flags_ = bounds.tolist(), flags.tolist()
    for n in range(rows):
        acct = accounts[which_[n]]
        sent_at, c, me, f = sent_[n], chat_[n], self_[n], flags_[n]
        chat_id = acct.chat_ids[c]
        who = acct.self_id if me else acct.senders[sender_[n]]
        text = " ".join(words[bounds_[n]:bounds_[n + 1]])
        native = natives[chat_id] = natives.get(chat_id, 0) + 1
        thread_id = None
        if acct.platform in ("slack", "discord") and f[0] < 0.08:
            threads = open_threads.setdefault(chat_id, [])
            if not threads or f[1] < 0.15:
                threads.append(f"{chat_id}-t{native}")
                if len(threads) > 20:
                    threads.pop(0)
            thread_id = threads[int(f[1] * 1000) % len(threads)]
        deleted = f[2] < 0.005
        edited = not deleted and f[3] < 0.02
        other = acct.senders[native % len(acct.senders)]
        raw = {
            "type": "message", "platform": acct.platform, "channel": chat_id, "user": who, "ts": f"{sent_at / 1000:.6f}",
            "text": text, "client_msg_id": f"{n:032x}", "team": acct.id,
            "blocks": [{"type": "rich_text", "elements": [{"type": "text", "text": text[:80]}]}],
        }
        # when the hub wrote it: history (before the account was connected) in one burst at
        # connect time, newest first; live messages as they were sent
        written = acct.connected_at + (acct.connected_at - sent_at) // 10_000 if sent_at < acct.connected_at else sent_at + 1_000
        staged.append((written, [
            None, user_ids[acct.person], acct.id, acct.platform, chat_id, acct.chat_names[c], acct.chat_types[c],
            str(native), thread_id,
            str(native - 1 - int(f[4] * 200) % min(native - 1, 20)) if native > 1 and f[4] < 0.1 else None,
            who, "Me" if me else f"Person {who[-5:]}", me, "outbound" if me else "inbound", text,
            text + " (typo)" if edited else None, "text",
            _dump([{"kind": "image", "name": f"{native}.png", "size": 1000 + native}] if f[5] < 0.03 else []),
            _dump([other] if f[6] < 0.05 else []),
            _dump([{"emoji": "+1", "senderId": other, "at": sent_at + 60_000}] if f[7] < 0.03 else []),
            sent_at, sent_at + 120_000 if edited else None, sent_at + 300_000 if deleted else None,
            "sent" if me else None, None, None, None, _dump(raw), written, written,
        ]))
        chats.setdefault((acct.id, chat_id), (acct.id, chat_id, user_ids[acct.person], acct.chat_names[c], acct.chat_types[c], written))
        if acct.person == "owner":
            chat_counts[chat_id] = chat_counts.get(chat_id, 0) + 1
            sender_counts[who] = sender_counts.get(who, 0) + 1
            if thread_id:
                thread_counts[thread_id] = thread_counts.get(thread_id, 0) + 1
    del words
    staged.sort(key=lambda item: item[0])
    seqs = dict.fromkeys(user_ids.values(), 0)
    out: list[tuple[Any, ...]] = []
    for written, row in staged:
        seqs[row[1]] += 1
        row[0] = f"msg_{written:011x}{rng.getrandbits(64):016x}"  # ordered by write time, like store.ids
        row[26] = seqs[row[1]]
        out.append(tuple(row))
    spread = Spread(rows, int(owner.sum()), accounts, user_ids, doc_freq, chat_counts, sender_counts, thread_counts)
    return spread, out, list(chats.values())


def fill_sqlite(path: str, rows: list[tuple[Any, ...]], chat_rows: list[tuple[Any, ...]]) -> None:
    """Drop the messages indexes and FTS triggers, executemany, rebuild them as they were."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-400000")
    saved = db.execute(
        "SELECT type, name, sql FROM sqlite_master WHERE tbl_name = 'messages' AND sql IS NOT NULL "
        "AND type IN ('index', 'trigger')"
    ).fetchall()
    db.execute("BEGIN")
    for kind, name, _ in saved:
        db.execute(f'DROP {kind.upper()} "{name}"')
    db.executemany(f"INSERT INTO messages ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})", rows)
    db.executemany(f"INSERT INTO chats ({', '.join(CHAT_COLUMNS)}) VALUES ({', '.join('?' for _ in CHAT_COLUMNS)})", chat_rows)
    for _, _, sql in saved:
        db.execute(sql)
    db.execute("INSERT INTO messages_fts(messages_fts) VALUES ('rebuild')")
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


async def fill_postgres(dsn: str, rows: list[tuple[Any, ...]], chat_rows: list[tuple[Any, ...]]) -> None:
    """Drop the messages indexes that back no constraint, COPY, recreate them, VACUUM ANALYZE
    (what autovacuum would have done by the time a table holds a million rows)."""
    import asyncpg

    db = await asyncpg.connect(dsn)
    try:
        saved = await db.fetch(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = 'messages' "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
        )
        for rec in saved:
            await db.execute(f'DROP INDEX "{rec["indexname"]}"')
        for start in range(0, len(rows), 50_000):
            await db.copy_records_to_table("messages", records=rows[start:start + 50_000], columns=COLUMNS)
        await db.copy_records_to_table("chats", records=chat_rows, columns=CHAT_COLUMNS)
        await db.execute("SET maintenance_work_mem = '512MB'")
        for rec in saved:
            await db.execute(rec["indexdef"])
        await db.execute("VACUUM ANALYZE messages")
        await db.execute("VACUUM ANALYZE chats")
    finally:
        await db.close()
