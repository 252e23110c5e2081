#!/usr/bin/env bash
# Install everything into .venv, make sure PostgreSQL and Redis run, run the whole suite
# (every hub test on SQLite and on PostgreSQL). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test,offline-audio
bash scripts/services.sh
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
