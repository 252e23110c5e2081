#!/usr/bin/env bash
# Install the hub with everything that runs offline (the `offline-audio` extra: speech and
# transcription) into .venv and run it: `loomi serve` with whatever LOOMI_* is set (nothing needed).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh offline-audio
exec .venv/bin/loomi serve "$@"
