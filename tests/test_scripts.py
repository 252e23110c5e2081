"""`scripts/serve.sh`, the README's run command, installs everything that runs offline.

pip cannot install from the registry inside a test, so the scripts run against a stand-in
`python3` (on PATH) whose venv records each command instead of running it; the scripts
themselves run unchanged.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FAKE_PYTHON = """#!/usr/bin/env bash
# `python3 -m venv .venv`: make a venv whose python and loomi only record how they were called
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin"
  for tool in python loomi; do
    printf '#!/usr/bin/env bash\\necho "%s $*" >> "$SCRIPT_LOG"\\n' "$tool" > "$3/bin/$tool"
    chmod +x "$3/bin/$tool"
  done
fi
"""


def _run(tmp_path: Path, script: str, *args: str) -> list[str]:
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "scripts", repo / "scripts")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").write_text(FAKE_PYTHON)
    (bindir / "python3").chmod(0o755)
    log = tmp_path / "calls.log"
    env = {"PATH": f"{bindir}:{os.environ['PATH']}", "SCRIPT_LOG": str(log)}
    out = subprocess.run(["bash", str(repo / "scripts" / script), *args], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return log.read_text().splitlines()


def test_serve_script_installs_the_offline_audio_extra(tmp_path: Path) -> None:
    calls = _run(tmp_path, "serve.sh", "--port", "4000")
    installs = [c for c in calls if c.startswith("python -m pip install") and " -e " in c]
    assert len(installs) == 1 and installs[0].endswith("-e .[offline-audio]"), calls
    assert calls[-1] == "loomi serve --port 4000"


def test_install_script_default_is_everything_offline_and_takes_extras(tmp_path: Path) -> None:
    for extras, expected in ((None, "-e .[offline-audio]"), ("test,offline-audio", "-e .[test,offline-audio]")):
        where = tmp_path / (extras or "default")
        where.mkdir()
        calls = _run(where, "install.sh", *([extras] if extras else []))
        assert any(c.endswith(expected) for c in calls), calls
