#!/usr/bin/env bash
# Install the hub into .venv and run it: `loomi serve` with whatever LOOMI_* is set (nothing needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/loomi serve "$@"
