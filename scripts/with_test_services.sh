#!/usr/bin/env bash
# Run CMD... against a throwaway PostgreSQL cluster and a throwaway Redis, both on loopback.
#
#   scripts/with_test_services.sh .venv/bin/python -m pytest
#
# Both services live in a fresh temp dir on free 127.0.0.1 ports and are stopped and removed
# on exit (also on failure or Ctrl-C). The command sees DATABASE_URL, CELERY_BROKER_URL,
# CELERY_RESULT_BACKEND, REDIS_URL and test-only Django settings; its exit code is ours.
set -euo pipefail

if [[ $# -eq 0 ]]; then
    echo "usage: $0 CMD [ARGS...]" >&2
    exit 2
fi

log() { echo "with_test_services: $*" >&2; }
die() { log "$*"; exit 1; }

# --- locate binaries --------------------------------------------------------------------------
PGBIN=""
for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V); do
    [[ -x "$d/initdb" && -x "$d/pg_ctl" ]] && PGBIN="$d"
done
[[ -n "$PGBIN" ]] || die "PostgreSQL server not found in /usr/lib/postgresql/*/bin (apt-get install postgresql)"
PGVERSION="$(basename "$(dirname "$PGBIN")")"
command -v redis-server >/dev/null || die "redis-server not found on PATH (apt-get install redis-server)"
PYTHON3="$(command -v python3 || true)"
[[ -n "$PYTHON3" ]] || die "python3 not found on PATH"

# initdb and pg_ctl refuse to run as root: run them as the postgres user then.
if [[ "$(id -u)" -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user"
    PG_AS=(runuser -u postgres --)
else
    PG_AS=()
fi

# --- temp dir and cleanup ---------------------------------------------------------------------
TMP="$(mktemp -d "${TMPDIR:-/tmp}/test-services.XXXXXX")"
PGDATA_DIR="$TMP/pgdata"
PGSOCK_DIR="$TMP/pgsock"
REDIS_DIR="$TMP/redis"
REDIS_PID=""
PG_STARTED=0

pg_run() {
    # Run a PostgreSQL server binary as the right user, from a directory that user can enter.
    (cd "$TMP" && "${PG_AS[@]}" "$@")
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    if [[ "$PG_STARTED" -eq 1 ]]; then
        pg_run "$PGBIN/pg_ctl" -D "$PGDATA_DIR" stop -m immediate -w -t 30 >/dev/null 2>&1
    fi
    if [[ -n "$REDIS_PID" ]] && kill -0 "$REDIS_PID" 2>/dev/null; then
        kill -TERM "$REDIS_PID" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$REDIS_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$REDIS_PID" 2>/dev/null
        wait "$REDIS_PID" 2>/dev/null
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$PGDATA_DIR" "$PGSOCK_DIR" "$REDIS_DIR"
chmod 700 "$PGDATA_DIR"
if [[ "$(id -u)" -eq 0 ]]; then
    chown -R postgres: "$TMP"
fi

# --- free ports (both held open while picking, so they differ) --------------------------------
read -r PGPORT REDIS_PORT < <("$PYTHON3" - <<'PY'
import socket
socks = []
for _ in range(2):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(*(s.getsockname()[1] for s in socks))
for s in socks:
    s.close()
PY
)
[[ -n "${PGPORT:-}" && -n "${REDIS_PORT:-}" ]] || die "could not pick free loopback ports"

# --- PostgreSQL -------------------------------------------------------------------------------
# C.UTF-8 keeps collation byte-wise (fast, deterministic) while upper()/lower() still handle
# Cyrillic; fall back to plain C where the locale is missing.
if locale -a 2>/dev/null | grep -qiE '^c\.utf-?8$'; then PGLOCALE="C.UTF-8"; else PGLOCALE="C"; fi
pg_run "$PGBIN/initdb" -D "$PGDATA_DIR" -U postgres -A trust -E UTF8 --locale="$PGLOCALE" \
    --no-sync >"$TMP/initdb.log" 2>&1 || { cat "$TMP/initdb.log" >&2; die "initdb failed"; }

cat >>"$PGDATA_DIR/postgresql.conf" <<CONF

# --- throwaway test cluster (scripts/with_test_services.sh) ---
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = '$PGSOCK_DIR'
max_connections = 100
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
cat >"$PGDATA_DIR/pg_hba.conf" <<CONF
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  trust
host    all       all   127.0.0.1/32   trust
CONF
if [[ "$(id -u)" -eq 0 ]]; then
    chown postgres: "$PGDATA_DIR/postgresql.conf" "$PGDATA_DIR/pg_hba.conf"
fi

PG_STARTED=1
pg_run "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$TMP/postgres.log" -w -t 60 start >/dev/null \
    || { cat "$TMP/postgres.log" >&2 || true; die "PostgreSQL did not start"; }

# --- Redis ------------------------------------------------------------------------------------
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$REDIS_DIR" --daemonize no --logfile "$TMP/redis.log" </dev/null &
REDIS_PID=$!

# --- wait until both accept connections -------------------------------------------------------
redis_ping() {
    if command -v redis-cli >/dev/null; then
        [[ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]]
    else
        "$PYTHON3" - "$REDIS_PORT" <<'PY'
import socket, sys
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1) as s:
    s.sendall(b"PING\r\n")
    sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
PY
    fi
}
ready=0
for _ in $(seq 300); do
    if "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PGPORT" -U postgres 2>/dev/null \
        && redis_ping 2>/dev/null; then
        ready=1
        break
    fi
    kill -0 "$REDIS_PID" 2>/dev/null || { cat "$TMP/redis.log" >&2 || true; die "redis-server exited"; }
    sleep 0.1
done
if [[ "$ready" -ne 1 ]]; then
    tail -n 20 "$TMP/postgres.log" "$TMP/redis.log" >&2 || true
    die "services did not become ready within 30s"
fi

"$PGBIN/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres cvm \
    || die "could not create database cvm"

export DATABASE_URL="postgres://postgres@127.0.0.1:$PGPORT/cvm"
export CELERY_BROKER_URL="redis://127.0.0.1:$REDIS_PORT/0"
export CELERY_RESULT_BACKEND="redis://127.0.0.1:$REDIS_PORT/1"
export REDIS_URL="redis://127.0.0.1:$REDIS_PORT/2"
export DJANGO_DEBUG=0
# Plain HTTP on loopback: no HTTPS redirect, HSTS or Secure cookies (the test client and the live
# server speak HTTP); tests/test_production_defaults.py checks the production defaults itself.
export DJANGO_SECURE_HTTPS=0
export SECRET_KEY="test-only-secret-not-for-production"
# A fixed Fernet key for destination credentials in tests (never a production key).
export CREDENTIALS_KEYS="dGVzdC1vbmx5LWNyZWRlbnRpYWxzLWtleS0zMi1ieXQ="
export ALLOWED_HOSTS="*"

log "PostgreSQL $PGVERSION on 127.0.0.1:$PGPORT (db cvm), redis on 127.0.0.1:$REDIS_PORT, in $TMP"

set +e
"$@"
rc=$?
set -e
exit "$rc"
