"""GET /api/messages over a million stored messages: the real hub against a bare Starlette
endpoint reading the same rows, every filter the route offers, measured in the same run.

Usage::

    .venv/bin/python -m bench.messages [--quick] [--backend sqlite|postgresql|both] [--rows N]
                                       [--clients C] [--seconds S] [--rounds R] [--only a,b]
                                       [--profile DIR]

Per database kind, on a fresh database (tests/e2e/harness.fresh_database, migrated to head):

1. **Data** (bench/_messages_data.py, generated once for both kinds): `--rows` messages (1M;
   100k with --quick), 85% the owner's over six accounts on five platforms, 15% another
   person's; ~2,700 chats and ~17,000 senders of Zipf-like sizes, threads, edits, deletions,
   a ~500-byte raw payload; text from a Zipf vocabulary; each account's history written in
   one burst when it was connected, so write order is not time order. Bulk-loaded with the
   messages indexes dropped and then rebuilt from the migrations' own definitions.
2. **Hub**: `loomi serve` as a subprocess, as the README starts it (SQLite: the embedded Redis
   it starts itself; PostgreSQL: `LOOMI_TEST_REDIS_URL`), no in-process worker. Sessions for
   both people are made in the store beforehand; requests carry `Authorization: Bearer`.
3. **Bare**: a Starlette app in another subprocess on the same server and event loop as
   `loomi serve` (uvicorn, httptools, uvloop where installed): the token looked up in a dict, one plain SQL read (the same driver,
   aiosqlite or asyncpg; the same columns but `raw`; the obvious query: filters, keyset row
   value, `rowid IN (FTS5 MATCH)` / `to_tsvector @@ plainto_tsquery`, ORDER BY, LIMIT) and
   the same JSON built with orjson. Before timing, one page of every request of every filter
   is fetched from both and must list the same message ids.
4. **Load**: a separate process, closed loop: `--clients` keep-alive connections (8), each
   sending its next request as soon as the last answer is read, rotating through the
   filter's requests (several values: chats of every size, words of similar frequency...),
   for `--seconds` per side and round, bare and hub alternating for `--rounds`.

Per filter: req/s of hub and bare, ratio, p50/p99 ms of both. BENCH lines per backend and
filter: the ratio (aim >= 0.5 of bare) and the hub's p99 (aim <= 50 ms). For full-text
filters the bare query is the plain one, which can be far slower than the hub's: there the
p99 is the figure that matters. `--profile DIR` records py-spy (in the venv) of the hub per
filter.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Iterator
from urllib.parse import urlencode

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from bench._messages_data import ACCOUNTS, DAY, T_END, Spread, fill_postgres, fill_sqlite, generate
from bench.common import emit, percentile

ROOT = Path(__file__).resolve().parents[1]
NAME = "messages"
P99_AIM_MS = 50.0
RATIO_AIM = 0.5


def _say(line: str = "") -> None:
    print(line, flush=True)


# ---- the bare baseline server ----------------------------------------------------------------

LISTED = (
    "id", "account_id", "platform", "chat_id", "chat_name", "chat_type", "native_id", "thread_id", "reply_to_id",
    "sender_id", "sender_name", "is_self", "direction", "text", "original_text", "content_type", "attachments",
    "mentions", "reactions", "sent_at", "edited_at", "deleted_at", "status", "error", "seq",
)
FILTERS = {"platform": "platform", "accountId": "account_id", "chatId": "chat_id", "senderId": "sender_id", "threadId": "thread_id"}


def bare_main(port: int, database: str, tokens_json: str) -> int:
    """`python -m bench.messages --bare PORT DATABASE_URL TOKENS_JSON`."""
    import datetime as dt

    import orjson
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    tokens: dict[str, str] = json.loads(tokens_json)
    sqlite = database.startswith("sqlite")
    state: dict[str, Any] = {}

    def iso(ms: int | None) -> str | None:
        if ms is None:
            return None
        return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")

    def message(r: Any) -> dict[str, Any]:
        (id_, account, platform, chat, chat_name, chat_type, native, thread, reply, sender, sender_name, is_self,
         direction, text, original, content_type, attachments, mentions, reactions, sent_at, edited_at, deleted_at,
         status, error, seq) = r
        return {
            "id": id_, "accountId": account, "botId": account, "platform": platform, "chatId": chat, "chatName": chat_name,
            "chatType": chat_type, "channel": chat_name or chat, "nativeId": native, "messageId": native, "threadId": thread,
            "replyToId": reply, "senderId": sender, "senderName": sender_name, "person": sender_name or sender,
            "isSelf": bool(is_self), "direction": direction, "text": text, "content": text, "originalText": original,
            "contentType": content_type, "attachments": orjson.Fragment(attachments), "mentions": orjson.Fragment(mentions),
            "reactions": orjson.Fragment(reactions), "sentAt": iso(sent_at), "timestamp": sent_at, "editedAt": iso(edited_at),
            "deletedAt": iso(deleted_at), "status": status, "error": error, "seq": seq,
        }

    async def listing(request: Request) -> Response:
        user = tokens.get(request.headers.get("authorization", "")[7:])
        if user is None:
            return Response(b'{"error":"Unauthorized"}', 401, media_type="application/json")
        p = request.query_params
        where, args = ["user_id = ?"], [user]
        for name, column in FILTERS.items():
            if p.get(name):
                where.append(f"{column} = ?")
                args.append(p[name])
        if p.get("includeDeleted") != "true":
            where.append("deleted_at IS NULL")
        if p.get("since"):
            where.append("sent_at >= ?")
            args.append(int(p["since"]))
        if p.get("until"):
            where.append("sent_at < ?")
            args.append(int(p["until"]))
        if p.get("cursor"):
            raw = p["cursor"]
            sent_at, row_id = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode().split(":", 1)
            where.append("(sent_at, id) < (?, ?)")
            args += [int(sent_at), row_id]
        if p.get("q"):
            if sqlite:
                where.append("rowid IN (SELECT rowid FROM messages_fts WHERE messages_fts MATCH ?)")
                args.append(" ".join('"' + t.replace('"', '""') + '"' for t in p["q"].split()))
            else:
                where.append("to_tsvector('simple', text) @@ plainto_tsquery('simple', ?)")
                args.append(p["q"])
        limit = int(p.get("limit") or 50)
        sql = f"SELECT {', '.join(LISTED)} FROM messages WHERE {' AND '.join(where)} ORDER BY sent_at DESC, id DESC LIMIT {limit + 1}"
        if sqlite:
            conn = await state["pool"].get()
            try:
                rows = await conn.execute_fetchall(sql, args)
            finally:
                state["pool"].put_nowait(conn)
        else:
            n = iter(range(1, len(args) + 1))
            sql = "".join(f"${next(n)}" if ch == "?" else ch for ch in sql)
            rows = await state["pool"].fetch(sql, *args)
        more = len(rows) > limit
        rows = rows[:limit]
        cursor = base64.urlsafe_b64encode(f"{rows[-1][19]}:{rows[-1][0]}".encode()).decode().rstrip("=") if more and rows else None
        body = {"messages": [message(r) for r in rows], "nextCursor": cursor, "hasMore": more}
        return Response(orjson.dumps(body), media_type="application/json")

    async def opened() -> None:
        url = make_url(database)
        if sqlite:
            import aiosqlite

            state["pool"] = pool = asyncio.Queue()
            for _ in range(8):
                conn = await aiosqlite.connect(url.database, timeout=30)
                await conn.execute("PRAGMA journal_mode=WAL")
                pool.put_nowait(conn)
        else:
            import asyncpg

            dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
            state["pool"] = await asyncpg.create_pool(dsn, min_size=8, max_size=10)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await opened()
        yield

    app = Starlette(routes=[Route("/bare/messages", listing)], lifespan=lifespan)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, server_header=False,
                            lifespan="on")
    server = uvicorn.Server(config)
    try:  # the loop `loomi serve` runs on (loomi.cli)
        import uvloop
    except ImportError:
        asyncio.run(server.serve())
    else:
        uvloop.run(server.serve())
    return 0


# ---- the load process ------------------------------------------------------------------------


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection: write a request, wait for the whole answer."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buffer[:end]).lower()
        at = head.find(b"content-length:")
        stop = head.find(b"\r\n", at)
        length = int(head[at + 15:stop if stop > 0 else None]) if at >= 0 else 0
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4:end + 4 + length])
        del self.buffer[:end + 4 + length]
        self.waiter.set_result((int(head[9:12]), body))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError("connection closed"))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.waiter = asyncio.get_running_loop().create_future()
        assert self.transport is not None
        self.transport.write(raw)
        return await self.waiter


def raw_get(port: int, path: str, token: str) -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {token}\r\n\r\n").encode()


async def drive(spec: dict[str, Any]) -> dict[str, Any]:
    """Closed loop: `clients` connections, each sends its next request when its answer is in."""
    loop = asyncio.get_running_loop()
    requests = [r.encode("latin-1") for r in spec["requests"]]
    conns = [(await loop.create_connection(_Connection, "127.0.0.1", spec["port"]))[1] for _ in range(spec["clients"])]
    latencies: list[float] = []
    codes: dict[str, int] = {}
    turn = 0
    warm_until = time.perf_counter() + spec["warmup"]
    end = warm_until + spec["seconds"]

    total = 0

    async def client(conn: _Connection) -> None:
        nonlocal turn, total
        while True:
            started = time.perf_counter()
            if started >= end:
                return
            raw = requests[turn % len(requests)]
            turn += 1
            status, _ = await conn.request(raw)
            total += 1
            if started >= warm_until:
                latencies.append(1000 * (time.perf_counter() - started))
                codes[str(status)] = codes.get(str(status), 0) + 1

    await asyncio.gather(*(client(c) for c in conns))
    for conn in conns:
        assert conn.transport is not None
        conn.transport.close()
    return {"n": len(latencies), "total": total, "seconds": spec["seconds"], "latencies": latencies, "codes": codes}


def load_main() -> int:
    """`python -m bench.messages --load`: one spec (JSON) on stdin, the result (JSON) on stdout."""
    spec = json.loads(sys.stdin.read())
    import uvloop

    sys.stdout.write(json.dumps(uvloop.run(drive(spec))))
    return 0


async def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.messages", "--load", cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate(json.dumps(spec).encode())
    if proc.returncode:
        raise RuntimeError(f"load process failed ({proc.returncode})")
    return json.loads(out)


# ---- processes -------------------------------------------------------------------------------


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _wait_http(port: int, path: str, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                await client.get(f"http://127.0.0.1:{port}{path}")
                return
            await asyncio.sleep(0.2)
    raise TimeoutError(f"port {port} never answered")


@contextlib.contextmanager
def process(command: list[str], env: dict[str, str] | None, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def profiled(folder: str | None, name: str, pid: int) -> Iterator[None]:
    if not folder:
        yield
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(pid), "--format", "raw",
                            "--output", str(Path(folder) / f"{name}.txt"), "--rate", "200", "--nonblocking", "--gil"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        with contextlib.suppress(subprocess.TimeoutExpired):
            spy.wait(20)


# ---- the stored data -------------------------------------------------------------------------


@dataclass
class People:
    ids: dict[str, str]  # owner|other -> user id
    tokens: dict[str, str]  # owner|other -> bearer token
    accounts: list[str]


async def prepare(backend: str, database: str, env: dict[str, str], ids: dict[str, str], account_ids: list[str]) -> People:
    """Migrate, then the two people (each with a session and its token) and their accounts."""
    from config.settings import load_settings, secret_key
    from loomi.tokens import TokenService
    from store.db import create_engine, migrate
    from store.ids import now_ms
    from store.schema import accounts, users
    from store.users import create_session

    await migrate(database)
    settings = load_settings(env)
    tokens = TokenService(secret_key(settings), ttl_seconds=settings.token_ttl_days * 86400)
    engine = create_engine(database)
    now = now_ms()
    out: dict[str, str] = {}
    try:
        async with engine.begin() as conn:
            for person, user_id in ids.items():
                user = {"id": user_id, "email": f"{person}@bench.example", "name": person.title(), "password_hash": None,
                        "identity": {}, "is_owner": False, "token_version": 0, "seq": 0, "created_at": now, "updated_at": now}
                await conn.execute(users.insert().values(**user))
                session = await create_session(conn, user_id, "password", 86_400_000)
                out[person] = tokens.issue(user, session["id"])
            for (person, platform, *_), account_id in zip(ACCOUNTS, account_ids):
                await conn.execute(accounts.insert().values(
                    id=account_id, user_id=ids[person], platform=platform, external_id=account_id, name=f"{platform} {person}",
                    settings={}, resume={}, enabled=False, state="stopped", created_at=now, updated_at=now,
                ))
    finally:
        await engine.dispose()
    return People(ids, out, account_ids)


async def fill(backend: str, database: str, rows: list[tuple[Any, ...]], chat_rows: list[tuple[Any, ...]], people: People) -> None:
    from store.db import create_engine
    from store.schema import users

    if backend == "sqlite":
        await asyncio.to_thread(fill_sqlite, make_url(database).database, rows, chat_rows)
    else:
        await fill_postgres(make_url(database).set(drivername="postgresql").render_as_string(hide_password=False), rows, chat_rows)
    engine = create_engine(database)
    try:
        async with engine.begin() as conn:  # the owner's counters continue after the stored rows
            for user_id in people.ids.values():
                last = (await conn.execute(sa.text("SELECT coalesce(max(seq), 0) FROM messages WHERE user_id = :u"), {"u": user_id})).scalar_one()
                await conn.execute(users.update().where(users.c.id == user_id).values(seq=last))
    finally:
        await engine.dispose()


async def keysets(database: str, user_id: str, offsets: list[int]) -> list[tuple[int, str]]:
    from store.db import create_engine

    engine = create_engine(database)
    out = []
    try:
        async with engine.connect() as conn:
            for offset in offsets:
                row = (await conn.execute(sa.text(
                    "SELECT sent_at, id FROM messages WHERE user_id = :u ORDER BY sent_at DESC, id DESC LIMIT 1 OFFSET :o"
                ), {"u": user_id, "o": offset})).first()
                if row:
                    out.append((int(row[0]), str(row[1])))
    finally:
        await engine.dispose()
    return out


def cursor(keyset: tuple[int, str]) -> str:
    return base64.urlsafe_b64encode(f"{keyset[0]}:{keyset[1]}".encode()).decode().rstrip("=")


# ---- what is asked -----------------------------------------------------------------------------


@dataclass
class Filter:
    name: str
    queries: list[dict[str, str]]
    person: str = "owner"


def filters(spread: Spread, deep: list[tuple[int, str]]) -> list[Filter]:
    owner_accounts = [a for a in spread.accounts if a.person == "owner"]
    chats = Spread.spaced(spread.chat_counts, 8)
    senders = Spread.spaced(spread.sender_counts, 6)
    threads = Spread.spaced(spread.thread_counts, 6)
    frequent = [spread.word_near(f) for f in (0.3, 0.1, 0.05)]
    middling = [spread.word_near(f) for f in (0.03, 0.01, 0.003)]
    rare = [spread.word_near(f) for f in (0.001, 0.0003, 0.0001)]
    days = [T_END - d * DAY for d in (1, 30, 120, 300, 500, 700)]
    return [
        Filter("first page", [{}]),
        Filter("cursor pages", [{"cursor": cursor(k)} for k in deep]),
        Filter("chatId", [{"chatId": c} for c in chats]),
        Filter("accountId", [{"accountId": a.id} for a in owner_accounts]),
        Filter("platform", [{"platform": p} for p in sorted({a.platform for a in owner_accounts})]),
        Filter("senderId", [{"senderId": s} for s in senders]),
        Filter("threadId", [{"threadId": t} for t in threads]),
        Filter("since/until", [{"since": str(d - DAY), "until": str(d)} for d in days]),
        Filter("includeDeleted", [{"includeDeleted": "true"}]),
        Filter("q frequent", [{"q": w} for w in frequent]),
        Filter("q middling", [{"q": w} for w in middling]),
        Filter("q rare", [{"q": w} for w in rare]),
        Filter("q two words", [{"q": f"{a} {b}"} for a, b in zip(frequent, middling)]),
        Filter("q + chatId", [{"q": w, "chatId": c} for w in (frequent[0], middling[1]) for c in chats[::3]]),
        Filter("q + cursor", [{"q": w, "cursor": cursor(k)} for w in (frequent[0], middling[0]) for k in deep[1:]]),
        Filter("other person", [{}, {"q": frequent[0]}, {"q": middling[1]}], person="other"),
    ]


# ---- one backend -----------------------------------------------------------------------------


@dataclass
class Side:
    rps: float
    p50: float
    p99: float
    n: int
    total: int  # answers, warm-up included
    bad: int


def _side(results: list[dict[str, Any]]) -> Side:
    latencies = [x for r in results for x in r["latencies"]]
    seconds = sum(r["seconds"] for r in results)
    bad = sum(n for r in results for code, n in r["codes"].items() if code != "200")
    total = sum(r["total"] for r in results)
    return Side(len(latencies) / seconds, percentile(latencies, 0.5), percentile(latencies, 0.99), len(latencies), total, bad)


@contextlib.contextmanager
def cpu_of(pid: int) -> Iterator[Any]:
    """CPU seconds (user + system, all threads) the process uses inside the block."""
    import psutil

    proc = psutil.Process(pid)
    start = sum(proc.cpu_times()[:2])
    spent: list[float] = []
    yield lambda: spent[0]
    spent.append(sum(proc.cpu_times()[:2]) - start)


async def same_answers(hub_port: int, bare_port: int, token: str, queries: list[dict[str, str]]) -> None:
    import httpx

    async with httpx.AsyncClient(timeout=120, headers={"Authorization": f"Bearer {token}"}) as client:
        for query in queries:
            suffix = f"?{urlencode(query)}" if query else ""
            hub = await client.get(f"http://127.0.0.1:{hub_port}/api/messages{suffix}")
            bare = await client.get(f"http://127.0.0.1:{bare_port}/bare/messages{suffix}")
            assert hub.status_code == 200 and bare.status_code == 200, (query, hub.text[:200], bare.text[:200])
            ids = [m["id"] for m in hub.json()["messages"]]
            assert ids == [m["id"] for m in bare.json()["messages"]], f"hub and bare disagree on {query}"
            assert hub.json()["nextCursor"] == bare.json()["nextCursor"], f"cursors differ on {query}"


async def measure(backend: str, args: argparse.Namespace, spread: Spread, rows: list[tuple[Any, ...]],
                  chat_rows: list[tuple[Any, ...]], people_ids: dict[str, str], account_ids: list[str]) -> list[str]:
    from tests.conftest import REDIS_URL
    from tests.e2e.harness import fresh_database

    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="loomi-bench-messages-") as tmp_name:
        tmp = Path(tmp_name)
        async with fresh_database(backend, tmp) as database:
            env = {
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "LOOMI_HOME": str(tmp / "home"), "LOOMI_DATABASE_URL": database, "LOOMI_SECRET_KEY": "bench-messages",
                "LOOMI_LOG_LEVEL": "warning", "LOOMI_IN_PROCESS_WORKER": "false", "LOOMI_AI_DISCOVER": "false",
            }
            if backend == "postgresql":
                env["LOOMI_REDIS_URL"] = f"{REDIS_URL}/13"
            started = time.monotonic()
            people = await prepare(backend, database, env, people_ids, account_ids)
            await fill(backend, database, rows, chat_rows, people)
            _say(f"{backend}: {len(rows):,} messages stored in {time.monotonic() - started:.0f} s")
            deep = await keysets(database, people.ids["owner"], [50, 5_000, len(rows) // 10, len(rows) * 2 // 5, len(rows) * 4 // 5])
            hub_port, bare_port = _free_port(), _free_port()
            hub_cmd = [sys.executable, "-m", "loomi.cli", "serve", "--host", "127.0.0.1", "--port", str(hub_port)]
            bare_cmd = [sys.executable, "-m", "bench.messages", "--bare", str(bare_port), database,
                        json.dumps({token: people.ids[p] for p, token in people.tokens.items()})]
            with process(hub_cmd, env, tmp / "hub.log") as hub, process(bare_cmd, None, tmp / "bare.log") as bare:
                await _wait_http(hub_port, "/healthz")
                await _wait_http(bare_port, "/bare/messages")
                pids = {"hub": hub.pid, "bare": bare.pid}
                for flt in filters(spread, deep):
                    if args.only and flt.name not in args.only:
                        continue
                    token = people.tokens[flt.person]
                    await same_answers(hub_port, bare_port, token, flt.queries)
                    paths = {"hub": "/api/messages", "bare": "/bare/messages"}
                    ports = {"hub": hub_port, "bare": bare_port}
                    results: dict[str, list[dict[str, Any]]] = {"hub": [], "bare": []}
                    cpu = {"hub": 0.0, "bare": 0.0}
                    for _ in range(args.rounds):
                        for side in ("bare", "hub"):
                            requests = [raw_get(ports[side], paths[side] + (f"?{urlencode(q)}" if q else ""), token) for q in flt.queries]
                            spec = {"port": ports[side], "clients": args.clients, "seconds": args.seconds, "warmup": args.warmup,
                                    "requests": [r.decode("latin-1") for r in requests]}
                            name = f"{backend}-{flt.name.replace(' ', '_').replace('/', '_')}"
                            with profiled(args.profile if side == "hub" else None, name, hub.pid), cpu_of(pids[side]) as used:
                                results[side].append(await run_load(spec))
                            cpu[side] += used()
                    h, b = _side(results["hub"]), _side(results["bare"])
                    ratio = h.rps / b.rps if b.rps else math.nan
                    # CPU seconds the server process spent per request, warm-up included: steadier
                    # than req/s on a machine others share
                    h_cpu = 1000 * cpu["hub"] / max(1, h.total)
                    b_cpu = 1000 * cpu["bare"] / max(1, b.total)
                    line = (f"{backend:<10} {flt.name:<15} hub {h.rps:7.0f} req/s  bare {b.rps:7.0f} req/s  ratio {ratio:5.2f}   "
                            f"hub p50 {h.p50:6.1f} p99 {h.p99:6.1f} ms   bare p50 {b.p50:6.1f} p99 {b.p99:6.1f} ms   "
                            f"cpu/req hub {h_cpu:5.2f} bare {b_cpu:5.2f} ms (bare/hub {b_cpu / h_cpu if h_cpu else math.nan:4.2f})"
                            + (f"   NON-200: hub {h.bad} bare {b.bad}" if h.bad or b.bad else ""))
                    _say(line)
                    lines.append(line)
                    emit(NAME, f"{backend} {flt.name}: req/s", round(h.rps, 1), "req/s", baseline=round(b.rps, 1),
                         baseline_label=f"bare Starlette + plain SQL, {args.clients} clients", ratio=ratio,
                         aim=f"ratio >= {RATIO_AIM}", ok=bool(ratio >= RATIO_AIM) and not h.bad)
                    emit(NAME, f"{backend} {flt.name}: p99", round(h.p99, 2), "ms", baseline=round(b.p99, 2),
                         baseline_label=f"bare p99, {args.clients} clients", ratio=h.p99 / b.p99 if b.p99 else None,
                         aim=f"p99 <= {P99_AIM_MS:g} ms", ok=bool(h.p99 <= P99_AIM_MS) and not h.bad)
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--load"]:
        return load_main()
    if argv[:1] == ["--bare"]:
        return bare_main(int(argv[1]), argv[2], argv[3])
    parser = argparse.ArgumentParser(prog="python -m bench.messages", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100k rows, shorter runs")
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--rows", type=int, default=None, help="messages stored (default 1,000,000; --quick 100,000)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=None, help="per side and round (default 3; --quick 1)")
    parser.add_argument("--warmup", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=None, help="bare/hub alternations per filter (default 2; --quick 1)")
    parser.add_argument("--only", type=lambda s: [x.strip() for x in s.split(",")], default=None, help="filter names")
    parser.add_argument("--profile", metavar="DIR", help="py-spy the hub per filter (raw stacks into DIR)")
    args = parser.parse_args(argv)
    args.rows = args.rows or (100_000 if args.quick else 1_000_000)
    args.seconds = args.seconds or (1.0 if args.quick else 3.0)
    args.rounds = args.rounds or (1 if args.quick else 2)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]

    from store.ids import new_id

    _say(f"bench.messages: {args.rows:,} messages, {args.clients} clients, {args.seconds:g} s x {args.rounds} rounds per side, "
         f"{os.cpu_count()} cores, python {sys.version.split()[0]}")
    started = time.monotonic()
    people_ids = {"owner": new_id("user"), "other": new_id("user")}
    account_ids = [new_id("acct") for _ in ACCOUNTS]
    spread, rows, chat_rows = generate(args.rows, people_ids, account_ids)
    gc.collect()
    gc.freeze()  # a million tuples stay: no collector passes over them while measuring
    _say(f"generated in {time.monotonic() - started:.0f} s: owner {spread.owner_rows:,} rows, {len(chat_rows):,} chats")
    summary: list[str] = []

    async def go() -> None:
        for backend in backends:
            summary.extend(await measure(backend, args, spread, rows, chat_rows, people_ids, account_ids))

    asyncio.run(go())
    _say(f"summary ({time.monotonic() - started:.0f} s):")
    for line in summary:
        _say("  " + line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
