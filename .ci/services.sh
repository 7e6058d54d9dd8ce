#!/usr/bin/env bash
# Start throwaway Redis and PostgreSQL servers on 127.0.0.1 for the scale-out tests of
# `personlens serve` (tests/serve/test_serve_scaleout.py; they skip when these are not reachable).
#
#   eval "$(bash .ci/services.sh)"        # installs (apt) what is missing, starts, exports:
#   PERSONLENS_TEST_REDIS=redis://127.0.0.1:6379/15
#   PERSONLENS_TEST_PG=postgresql://personlens:personlens@127.0.0.1:5432/personlens_test
#
# Idempotent: servers already answering are reused. Data lives in $PERSONLENS_SERVICES_DIR
# (default /tmp/personlens-services); nothing is started as a system service.
# `bash .ci/services.sh stop` stops what this script started.
set -euo pipefail

BASE=${PERSONLENS_SERVICES_DIR:-/tmp/personlens-services}
REDIS_PORT=${PERSONLENS_REDIS_PORT:-6379}
PG_PORT=${PERSONLENS_PG_PORT:-5432}
PG_DB=personlens_test
PG_USER=personlens
log() { echo "services: $*" >&2; }

as_pg() {  # run as the postgres user when root (PostgreSQL refuses to run as root)
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pgbin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

if [ "${1:-}" = stop ]; then
  [ -f "$BASE/redis.pid" ] && kill "$(cat "$BASE/redis.pid")" 2>/dev/null || true
  [ -d "$BASE/pg" ] && as_pg "$(pgbin)/pg_ctl" -D "$BASE/pg" -m fast stop >&2 || true
  exit 0
fi

need=()
command -v redis-server >/dev/null || need+=(redis-server)
[ -n "$(pgbin)" ] || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  log "apt-get install ${need[*]}"
  if [ "$(id -u)" != 0 ]; then log "not root: cannot install ${need[*]}"; exit 1; fi
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >&2
fi
mkdir -p "$BASE"

# ---- Redis
if redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1; then
  log "redis already answers on 127.0.0.1:$REDIS_PORT"
else
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --daemonize yes --save '' --appendonly no \
    --dir "$BASE" --logfile "$BASE/redis.log" --pidfile "$BASE/redis.pid" >&2
  for _ in $(seq 50); do redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping >/dev/null
  log "redis started on 127.0.0.1:$REDIS_PORT"
fi

# ---- PostgreSQL (initdb + pg_ctl in $BASE/pg, trust auth on loopback only)
BIN=$(pgbin)
if "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
  log "postgres already answers on 127.0.0.1:$PG_PORT"
else
  if [ "$(id -u)" = 0 ]; then chown postgres "$BASE"; fi
  if [ ! -f "$BASE/pg/PG_VERSION" ]; then
    as_pg "$BIN/initdb" -D "$BASE/pg" -U postgres --auth=trust --encoding=UTF8 --no-locale >&2
  fi
  as_pg "$BIN/pg_ctl" -D "$BASE/pg" -l "$BASE/pg.log" -w -t 60 \
    -o "-h 127.0.0.1 -p $PG_PORT -k $BASE -c fsync=off -c full_page_writes=off" start >&2
  log "postgres started on 127.0.0.1:$PG_PORT"
fi
PSQL=("$BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qtA)
if ! "${PSQL[@]}" -c "SELECT 1" >/dev/null 2>&1; then
  # a server we did not start (e.g. Debian's own cluster): the postgres user over its socket
  PSQL=(as_pg "$BIN/psql" -p "$PG_PORT" -v ON_ERROR_STOP=1 -qtA)
fi
if [ "$("${PSQL[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname='$PG_USER'")" != 1 ]; then
  "${PSQL[@]}" -c "CREATE ROLE $PG_USER LOGIN PASSWORD '$PG_USER'" >&2
fi
if [ "$("${PSQL[@]}" -c "SELECT 1 FROM pg_database WHERE datname='$PG_DB'")" != 1 ]; then
  "${PSQL[@]}" -c "CREATE DATABASE $PG_DB OWNER $PG_USER" >&2
fi

REDIS_URL="redis://127.0.0.1:$REDIS_PORT/15"
PG_URL="postgresql://$PG_USER:$PG_USER@127.0.0.1:$PG_PORT/$PG_DB"
printf 'export PERSONLENS_TEST_REDIS=%s\nexport PERSONLENS_TEST_PG=%s\n' "$REDIS_URL" "$PG_URL" | tee "$BASE/env"
