"""The `loomi` command: serve, worker, migrate, login, keys rotate, ..."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any, Coroutine, Sequence

import orjson

from config.settings import Settings, SettingsError, load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loomi", description="openloomi-hub: your chat accounts, one store, AI on top.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run API, worker and (if no Redis is configured) an embedded Redis")
    serve.add_argument("--host", help="listen address (LOOMI_HOST)")
    serve.add_argument("--port", type=int, help="listen port (LOOMI_PORT)")
    sub.add_parser("worker", help="run listener supervision and ingest workers only (scale-out)")
    sub.add_parser("migrate", help="apply database migrations")
    sub.add_parser("login", help="make sure the local owner exists and write its token file")
    inviting = sub.add_parser("invite", help="print a single-use sign-up code (LOOMI_REGISTRATION=invite)")
    inviting.add_argument("--days", type=int, default=7, help="valid for this many days (default 7)")
    dlq = sub.add_parser("dlq", help="events ingest could not read: list them, replay them")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True)
    listing = dlq_sub.add_parser("list", help="show dead-lettered events, oldest first")
    listing.add_argument("--limit", type=int, default=20)
    listing.add_argument("--full", action="store_true", help="print whole payloads")
    again = dlq_sub.add_parser("replay", help="queue dead-lettered events for ingest again")
    again.add_argument("--limit", type=int, default=1000, help="at most this many, oldest first")
    resharding = sub.add_parser("reshard", help="change the number of inbound streams (every worker stopped, queues empty)")
    resharding.add_argument("shards", type=int, help="the new count; then set LOOMI_INBOUND_SHARDS to it on every machine")
    sub.add_parser("status", help="accounts, listener states, workers, queue depth and dead letters, as a table")
    keys = sub.add_parser("keys", help="the secret key: re-seal stored credentials under a new one")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    rotating = keys_sub.add_parser("rotate", help="re-seal every stored credential under the current key (safe while the hub runs)")
    rotating.add_argument("--new-key", action="store_true", help="first replace the key generated in LOOMI_HOME, keeping the old one")
    rotating.add_argument("--batch", type=int, default=100, help="rows per transaction (default 100)")
    rotating.add_argument("--limit", type=int, help="re-seal at most this many accounts now; run again to go on")
    backfilling = sub.add_parser("backfill", help="fetch one account's history now, with a progress bar per chat")
    backfilling.add_argument("account", help="the account id (see loomi status)")
    backfilling.add_argument("--mode", choices=["history", "gaps"], default="history", help="history: page back from the saved cursor; gaps: what is newer than the newest stored message")
    importing = sub.add_parser(
        "import", help="import history: hub JSONL, a Slack export zip, Telegram's result.json or a WhatsApp chat export"
    )
    importing.add_argument("file", type=Path, help="the file (its format is told by its content)")
    importing.add_argument("--email", help="import for this user (default: the local owner)")
    importing.add_argument("--me", help="your name (or id) as the export writes it: which messages are yours")
    importing.add_argument("--guess-me", action="store_true", help="take the most frequent sender as you")
    importing.add_argument("--tz", help="the zone of a WhatsApp export's local times (e.g. Europe/Berlin; default UTC)")
    importing.add_argument("--chat", help="a WhatsApp chat's name (default: from the file name)")
    importing.add_argument("--format", choices=["slack", "telegram", "whatsapp", "jsonl", "openloomi"], help="skip detection")
    return parser


async def _migrate(settings: Settings) -> None:
    from loomi.runtime import make_home_private
    from store.db import migrate

    if settings.database_url is None:  # the SQLite file lives in LOOMI_HOME
        make_home_private(settings)
    await migrate(settings.database)
    print(f"migrated {settings.database.split('@')[-1]}")


async def _login(settings: Settings) -> None:
    from loomi.runtime import open_local_hub

    async with open_local_hub(settings) as hub:
        from loomi.owner import ensure_token_file, token_path

        await ensure_token_file(hub)
        print(f"token written to {token_path(hub)}")


async def _invite(settings: Settings, days: int) -> None:
    from loomi.owner import ensure_token_file
    from loomi.runtime import open_local_hub
    from store.users import create_invite, get_owner

    async with open_local_hub(settings) as hub:
        await ensure_token_file(hub)  # the owner exists
        async with hub.engine.begin() as conn:
            owner = await get_owner(conn)
            code = await create_invite(conn, owner["id"] if owner else None, days * 86_400_000)
    print(code)
    if settings.registration_policy != "invite":
        print(f"note: LOOMI_REGISTRATION is {settings.registration_policy}, so codes are not asked for", file=sys.stderr)


async def _dlq(settings: Settings, args: argparse.Namespace) -> None:
    from loomi.runtime import open_local_hub
    from workers import dlq

    async with open_local_hub(settings) as hub:
        if args.dlq_command == "replay":
            moved = await dlq.replay(hub.redis, args.limit)
            print(f"replayed {moved} event(s); {await dlq.size(hub.redis)} left")
            return
        items = await dlq.entries(hub.redis, 0, args.limit)
        print(f"{await dlq.size(hub.redis)} dead-lettered event(s)")
        for item in items:
            envelope = item.get("envelope", {})
            payload = orjson.dumps(envelope.get("payload")).decode()
            if not args.full and len(payload) > 120:
                payload = payload[:117] + "..."
            print(f"{item['id']}  {envelope.get('p', '?')}/{envelope.get('a', '?')} delivery {envelope.get('d', '?')}")
            print(f"    error: {item['error']}")
            print(f"    payload: {payload}")


async def _status(settings: Settings, args: argparse.Namespace) -> int:
    from loomi.runtime import open_local_hub
    from loomi.status import run_backfill, status_report

    async with open_local_hub(settings) as hub:
        if args.command == "backfill":
            return await run_backfill(hub, args.account, args.mode)
        print(await status_report(hub))
    return 0


async def _keys(settings: Settings, args: argparse.Namespace) -> int:
    from loomi.keys import new_home_key, rotate
    from loomi.runtime import open_local_hub

    if args.new_key:
        try:
            new_home_key(settings)
        except ValueError as err:
            print(f"loomi keys rotate: {err}", file=sys.stderr)
            return 2
        print("a new key is in LOOMI_HOME/secret_key; the old one is kept in LOOMI_HOME/old_secret_keys")
    async with open_local_hub(settings) as hub:
        report = await rotate(hub, max(1, args.batch), args.limit)
    print("\n".join(report.lines()))
    return 1 if report.unreadable or (report.remaining and args.limit is None) else 0


async def _reshard(settings: Settings, shards: int) -> int:
    import time

    from loomi.runtime import open_local_hub
    from workers.sharding import ReshardRefused, reshard

    async with open_local_hub(settings) as hub:
        try:
            carried = await reshard(hub.redis, shards, now_ms=int(time.time() * 1000))
        except ReshardRefused as err:
            print(f"loomi reshard: {err}", file=sys.stderr)
            return 1
    print(f"{shards} inbound shard(s); {carried} listener position(s) carried over. Set LOOMI_INBOUND_SHARDS={shards} on every machine.")
    return 0


async def _import(settings: Settings, args: argparse.Namespace) -> int:
    from imports.command import run_import
    from loomi.runtime import open_local_hub

    if not args.file.is_file():
        print(f"loomi import: no such file {args.file}", file=sys.stderr)
        return 1
    from imports.detect import Options

    options = Options(me=args.me, guess_me=args.guess_me, tz=args.tz, chat=args.chat, format=args.format)
    async with open_local_hub(settings) as hub:
        return await run_import(hub, args.file, args.email, options)


def _run_server(main: Coroutine[Any, Any, int]) -> int:
    """The long-running commands on uvloop where it is installed (uvicorn[standard] brings it):
    less CPU per request than the stock loop (bench/webhooks: ~9 % per webhook ack)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as err:
        print(f"loomi: invalid setting {err}", file=sys.stderr)
        return 2
    from loomi.logs import configure

    os.umask(0o077)  # whatever the command writes (database, AOF, uploads, token) is its user's alone
    configure(settings.log_level)
    if args.command == "serve":
        from loomi.runtime import serve

        if args.host:
            settings.host = args.host
        if args.port is not None:
            settings.port = args.port
        return _run_server(serve(settings))
    if args.command == "worker":
        from loomi.runtime import run_worker

        return _run_server(run_worker(settings))
    if args.command == "migrate":
        asyncio.run(_migrate(settings))
    elif args.command == "login":
        asyncio.run(_login(settings))
    elif args.command == "invite":
        if not 1 <= args.days <= 365:
            print("loomi invite: --days must be 1 to 365", file=sys.stderr)
            return 2
        asyncio.run(_invite(settings, args.days))
    elif args.command == "dlq":
        asyncio.run(_dlq(settings, args))
    elif args.command in ("status", "backfill"):
        return asyncio.run(_status(settings, args))
    elif args.command == "keys":
        return asyncio.run(_keys(settings, args))
    elif args.command == "reshard":
        return asyncio.run(_reshard(settings, args.shards))
    elif args.command == "import":
        return asyncio.run(_import(settings, args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
