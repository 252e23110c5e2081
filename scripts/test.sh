#!/usr/bin/env bash
# Install everything into .venv, make sure PostgreSQL and Redis run, run the whole suite
# (every hub test on SQLite and on PostgreSQL). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh test,offline-audio
bash scripts/services.sh
# headless Chromium for the /status browser test (tests/ops/test_status_chromium.py); a no-op when present
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  echo "test: installing Chromium from Debian's packages" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
    || echo "test: could not install Chromium; the browser test will be skipped" >&2
fi
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"
