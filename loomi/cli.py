"""The `loomi` command: serve, worker, migrate, login."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Sequence

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
    return parser


async def _migrate(settings: Settings) -> None:
    from store.db import migrate

    await migrate(settings.database)
    print(f"migrated {settings.database.split('@')[-1]}")


async def _login(settings: Settings) -> None:
    from loomi.runtime import open_local_hub

    async with open_local_hub(settings) as hub:
        from loomi.owner import ensure_token_file, token_path

        await ensure_token_file(hub)
        print(f"token written to {token_path(hub)}")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except SettingsError as err:
        print(f"loomi: invalid setting {err}", file=sys.stderr)
        return 2
    from loomi.logs import configure

    configure(settings.log_level)
    if args.command == "serve":
        from loomi.runtime import serve

        if args.host:
            settings.host = args.host
        if args.port is not None:
            settings.port = args.port
        return asyncio.run(serve(settings))
    if args.command == "worker":
        from loomi.runtime import run_worker

        return asyncio.run(run_worker(settings))
    if args.command == "migrate":
        asyncio.run(_migrate(settings))
    elif args.command == "login":
        asyncio.run(_login(settings))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
