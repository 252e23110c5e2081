"""The BENCH line every bench module prints per headline figure, read by `python -m bench`.

One JSON object on one line after `BENCH `, so the runner finds it among the human-readable
output whatever else a module prints::

    BENCH {"bench": "ingest", "figure": "sqlite msg/s (whole run)", "value": 3971, ...}
"""

from __future__ import annotations

import json
import math
import sys
from typing import Any

PREFIX = "BENCH "
FIELDS = ("bench", "figure", "value", "unit", "baseline", "baseline_label", "ratio", "aim", "ok")


def _number(x: float | int | None) -> float | int | None:
    """JSON has no NaN or infinity: an impossible measurement is null, not a broken line."""
    if x is None or isinstance(x, bool):
        return x
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return round(x, 4) if isinstance(x, float) else x


def bench_line(
    bench: str,
    figure: str,
    value: float | int | None,
    unit: str,
    *,
    baseline: float | int | None = None,
    baseline_label: str = "",
    ratio: float | None = None,
    aim: str = "",
    ok: bool | None = None,
) -> str:
    """The line for one figure. `ratio` defaults to value / baseline when both are given."""
    if ratio is None and value is not None and baseline:
        ratio = value / baseline
    record: dict[str, Any] = {
        "bench": bench, "figure": figure, "value": _number(value), "unit": unit,
        "baseline": _number(baseline), "baseline_label": baseline_label, "ratio": _number(ratio),
        "aim": aim, "ok": ok,
    }
    return PREFIX + json.dumps(record, ensure_ascii=False)


def emit(*args: Any, **kwargs: Any) -> None:
    """Print `bench_line(...)` to stdout, flushed (the runner streams it)."""
    print(bench_line(*args, **kwargs), file=sys.stdout, flush=True)


def parse_line(line: str) -> dict[str, Any] | None:
    """The record of a BENCH line, or None for any other line (or a malformed one)."""
    line = line.strip()
    if not line.startswith(PREFIX):
        return None
    try:
        record = json.loads(line[len(PREFIX):])
    except ValueError:
        return None
    if not isinstance(record, dict) or "figure" not in record:
        return None
    return record


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (`q` in 0..1) of the samples; NaN when there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]
