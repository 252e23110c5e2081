"""`loomi status` and `loomi backfill`: the operator's view from a terminal.

`status` prints every account (all people's: whoever runs it holds the database already) with
its listener state, worker, last event, lag and ingest rate, then the hub's queue depth per
shard, dead letters and live workers. `backfill` runs one account's backfill in this process
now, drawing a bar per chat of pages fetched and messages queued; a running worker stores them.
"""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from typing import Any, Sequence, TextIO

from loomi.hub import Hub
from workers import dlq
from workers.backfill import backfill_account
from workers.metrics import accounts_view, ingested_per_minute, shards, stream_facts, workers_alive

BAR = 24
RATE_MINUTES = 5


def table(headers: Sequence[str], rows: list[Sequence[str]]) -> str:
    """Plain aligned columns, the header underlined: readable in any terminal and in a log."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    return "\n".join([line(headers), line(["-" * w for w in widths])] + [line(r) for r in rows])


def _ago(ms: int | None, now_ms: int) -> str:
    if not ms:
        return "never"
    seconds = max(now_ms - ms, 0) // 1000
    stamp = datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return f"{stamp} ({seconds // 60} min ago)" if seconds >= 120 else f"{stamp} ({seconds} s ago)"


async def status_report(hub: Hub) -> str:
    now_ms = int(time.time() * 1000)
    accounts = await accounts_view(hub)
    recent = await ingested_per_minute(hub.redis, [a["id"] for a in accounts], RATE_MINUTES, now_ms)
    rate = {a["id"]: sum(counts.get(a["id"], 0) for _, counts in recent) / RATE_MINUTES for a in accounts}
    rows = [
        [
            a["id"], a["platform"], a["name"][:30],
            a["state"] if a["enabled"] else "disabled",
            a["worker"] or "-", _ago(a["last_event_at"], now_ms),
            f"{a['lag_ms'] / 1000:.1f} s" if a["lag_ms"] is not None else "-",
            f"{rate[a['id']]:.1f}/min",
        ]
        for a in accounts
    ]
    out = [table(["account", "platform", "name", "state", "worker", "last event", "lag", f"rate ({RATE_MINUTES} min)"], rows) if rows else "no accounts"]
    out.append("")
    streams = [(label, await stream_facts(hub.redis, name, now_ms)) for label, name in shards()]
    out.append(table(
        ["shard", "depth", "pending", "oldest waiting"],
        [[label, str(f["depth"]), str(f["pending"]), f"{f['oldest_age_seconds']:.1f} s"] for label, f in streams],
    ))
    out.append("")
    alive = await workers_alive(hub.redis, now_ms)
    out.append(f"dead letters: {await dlq.size(hub.redis)}")
    out.append(f"workers alive: {len(alive)}" + (f" ({', '.join(name for name, _ in alive)})" if alive else ""))
    return "\n".join(out)


class ChatBars:
    """One line per chat: a bar of pages (of the most a chat is paged, MAX_PAGES_PER_CHAT)
    and the messages queued; on a terminal the line is redrawn in place."""

    def __init__(self, out: TextIO, max_pages: int) -> None:
        self.out, self.max_pages = out, max_pages
        self.tty = out.isatty()

    def __call__(self, p: dict[str, Any]) -> None:
        filled = BAR if p["done"] else min(BAR - 1, round(BAR * p["pages"] / self.max_pages))
        line = (
            f"chat {p['index'] + 1}/{p['chats']} {p['chat'][:24]:<24} [{'#' * filled}{'.' * (BAR - filled)}] "
            f"{p['pages']} page(s), {p['queued']} message(s) queued" + (" done" if p["done"] else "")
        )
        if self.tty:
            print(f"\r\x1b[2K{line}", end="\n" if p["done"] else "", file=self.out, flush=True)
        elif p["done"]:
            print(line, file=self.out, flush=True)


async def run_backfill(hub: Hub, account_id: str, mode: str, out: TextIO = sys.stderr) -> int:
    from workers.backfill import MAX_PAGES_PER_CHAT

    result = await backfill_account(hub, account_id, mode, progress=ChatBars(out, MAX_PAGES_PER_CHAT), inline=True)
    if "skipped" in result:
        print(f"loomi backfill: {account_id}: {result['skipped']}", file=sys.stderr)
        return 1
    print(f"{mode} backfill of {account_id}: {result['queued']} message(s) queued from {result['chats']} chat(s)")
    return 0
