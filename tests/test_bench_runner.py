"""`python -m bench` on tiny stand-in bench modules: the table, failures, timeouts, skips.

The stand-ins live in a temporary package (`--bench-dir`), so no real bench runs here."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

from bench.__main__ import BENCH_DIR, JOBS, Job, Result, plan, prints_bench_lines, render, run_job
from bench.common import bench_line, parse_line

ROOT = Path(__file__).resolve().parents[1]

GOOD = '''
"""Prints its figures the way a bench does; checks the Redis the runner hands it."""
import os, socket, sys
from bench.common import emit

url = os.environ["LOOMI_TEST_REDIS_URL"]
host, port = url.removeprefix("redis://").split(":")
with socket.create_connection((host, int(port)), timeout=2) as s:
    s.sendall(b"PING\\r\\n")
    pong = s.recv(16)
print(f"human line: quick={'--quick' in sys.argv} pong={pong!r}")
emit("good", "sqlite msg/s (whole run)", 3971.4, "msg/s", baseline=6953, baseline_label="raw batched INSERT",
     aim="ratio >= 0.5", ok=True)
emit("good", "p99 at 500 msg/s", 568.2, "ms", aim="p99 <= 100 ms", ok=False)
'''

BROKEN = '''
from bench.common import emit
emit("broken", "first figure", 1.5, "x", baseline=3, ok=None)
print("about to fail")
raise RuntimeError("the fake platform went away")
'''

SILENT = '''
# follows the BENCH convention in name only: exits 0 without a figure
print("nothing to report")
'''

NOT_A_BENCH = '''
print("a helper module, not a benchmark")
'''

SLOW = '''
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(f"child {child.pid}", flush=True)
time.sleep(120)
'''


def fake_benches(tmp: Path) -> Path:
    pkg = tmp / "fakebench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for name, source in (("good", GOOD), ("broken", BROKEN), ("silent", SILENT), ("helpers", NOT_A_BENCH),
                         ("slow", SLOW), ("_data", "BENCH_ROWS = 1_000_000  # a private helper of a bench\n")):
        (pkg / f"{name}.py").write_text(textwrap.dedent(source))
    return pkg


def table_rows(report: str) -> list[list[str]]:
    lines = report.split("## Summary", 1)[1].split("\n\n", 2)[1].splitlines()
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in lines[2:]]


def test_bench_line_round_trip() -> None:
    line = bench_line("ingest", "ratio", 3000.0, "msg/s", baseline=6000, baseline_label="raw", aim="ratio >= 0.5", ok=True)
    record = parse_line(line)
    assert record is not None and record["ratio"] == 0.5 and record["baseline_label"] == "raw"
    assert parse_line(bench_line("x", "nan", float("nan"), "ms"))["value"] is None  # still valid JSON
    assert parse_line("BENCH {not json") is None and parse_line("ingest 3,000 msg/s") is None


def test_runner_reports_figures_and_failures(tmp_path: Path) -> None:
    pkg = fake_benches(tmp_path)
    out = tmp_path / "BENCHMARKS.md"
    logs = tmp_path / "logs"
    started = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--bench-dir", str(pkg), "--only", "good,broken,silent",
         "--out", str(out), "--logs", str(logs)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert time.monotonic() - started < 60
    assert run.returncode == 1, run.stdout + run.stderr  # a failed bench fails the command
    assert "FAILED: broken, silent" in run.stdout
    assert "human line: quick=True pong=b'+PONG\\r\\n'" in run.stdout  # streamed, with --quick and a live Redis

    report = out.read_text()
    assert report.startswith("# Benchmarks")
    assert "A `--quick` run" in report
    assert f"python -m bench --quick --bench-dir {pkg}" in report
    for fact in ("- cpu: ", "- ram: ", "- python: ", "- sqlite: ", "- redis: ", "- postgresql: ", "load average before"):
        assert fact in report

    rows = table_rows(report)
    assert rows[0] == ["broken", "first figure", "1.50 x", "3 x", "0.50", "–", "–"]
    assert rows[1][0] == "broken" and rows[1][1].startswith("**failed**: exit 1 after") and rows[1][-1] == "**no**"
    assert rows[2] == ["good", "sqlite msg/s (whole run)", "3,971 msg/s", "6,953 msg/s (raw batched INSERT)", "0.57",
                       "ratio >= 0.5", "yes"]
    assert rows[3] == ["good", "p99 at 500 msg/s", "568 ms", "–", "–", "p99 <= 100 ms", "**no**"]
    assert rows[4] == ["silent", "**failed**: printed no BENCH line", "–", "–", "–", "–", "**no**"]
    assert len(rows) == 5

    broken = report.split("## broken", 1)[1].split("\n## ", 1)[0]
    assert "RuntimeError: the fake platform went away" in broken and "about to fail" in broken
    assert "BENCH {" not in report  # figures are in the table, not repeated in the sections
    assert "BENCH {" in (logs / "good.log").read_text()  # the log keeps everything


def test_discovery_skips_missing_and_modules_without_figures(tmp_path: Path) -> None:
    pkg = fake_benches(tmp_path)
    known = (Job("good", "good"), Job("messages", "messages", about="GET /api/messages over 1M rows"))
    jobs, missing, quiet = plan(pkg, known)
    assert [j.name for j in jobs] == ["good", "broken", "silent"]  # the known ones first, in their order
    assert [j.name for j in missing] == ["messages"]
    assert quiet == ["helpers", "slow"]  # and `_data`, private to a bench, is neither run nor listed
    import datetime as dt

    report = render([Result(Job("good", "good"), ["python", "-m", "fakebench.good"], status="ok",
                            records=[parse_line(bench_line("good", "f", 1, "x"))])],
                    missing=missing, quiet=quiet, facts={}, command="python -m bench", quick=False,
                    started=dt.datetime.now(dt.timezone.utc), seconds=1, load_before="0", load_after="0")
    assert "- `messages` (bench/messages.py, GET /api/messages over 1M rows): not in this checkout" in report
    assert "- `helpers` (bench/helpers.py): prints no BENCH line" in report
    assert "A `--quick` run" not in report


def test_the_real_list_runs_the_known_benches() -> None:
    jobs, _, _ = plan()
    mine = ("ingest", "ai", "ai_embeddings", "rag", "insights")
    assert set(mine) <= {j.module for j in jobs}
    assert all(prints_bench_lines(BENCH_DIR / f"{name}.py") for name in mine)
    assert [j.name for j in JOBS][:2] == ["ingest", "ingest-workers"]


def test_timeout_kills_the_module_and_its_children(tmp_path: Path) -> None:
    pkg = fake_benches(tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    seen: list[str] = []
    result = run_job(Job("slow", "slow"), package="fakebench", quick=False, env=env, logs=logs, timeout=3,
                     echo=seen.append)
    assert result.status == "timeout" and result.failed and result.failure().startswith("timed out after")
    child = int(next(line for line in result.output if line.startswith("child ")).split()[1])
    deadline = time.monotonic() + 5
    while psutil.pid_exists(child) and psutil.Process(child).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the bench's child outlived the timeout"
        time.sleep(0.1)
