#!/usr/bin/env bash
# First run on the embedded defaults: SQLite and Celery's filesystem broker, no server needed.
# Migrates, seeds a demo client once, then runs the web server, a Celery worker and Celery beat
# until Ctrl-C. If any of the three dies, the others are stopped and the script exits non-zero.
#
# Every default can be overridden from the environment (see .env.example); PORT sets the web port.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$PWD"

PY="${PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || { echo "run_embedded: $PY not found; run 'make venv' first" >&2; exit 1; }

PORT="${PORT:-8000}"

# agency/settings.py also reads ./.env without overriding the environment, so a default is
# exported here only when neither the environment nor .env sets the variable.
in_dotenv() {
    [[ -f "$ROOT/.env" ]] && grep -qE "^[[:space:]]*(export[[:space:]]+)?$1[[:space:]]*=" "$ROOT/.env"
}
set_default() {
    local name="$1" value="$2"
    if [[ -z "${!name+x}" ]] && ! in_dotenv "$name"; then
        export "$name=$value"
    fi
}
set_default DJANGO_DEBUG 1
set_default SECRET_KEY "dev-only-insecure-secret-key"
set_default DATABASE_URL "sqlite:///$ROOT/var/db.sqlite3"
set_default CELERY_BROKER_URL "filesystem://"
set_default CELERY_FS_BROKER_DIR "$ROOT/var/celery-broker"
set_default MEDIA_ROOT "$ROOT/var/media"

# The filesystem transport uses one folder as both data_folder_in and data_folder_out (a single
# queue shared by producers and the worker) and moves consumed messages to processed/.
mkdir -p "$ROOT/var"
if [[ "${CELERY_BROKER_URL:-}" == filesystem://* && -n "${CELERY_FS_BROKER_DIR:-}" ]]; then
    mkdir -p "$CELERY_FS_BROKER_DIR/queue" "$CELERY_FS_BROKER_DIR/processed"
fi
if [[ -n "${MEDIA_ROOT:-}" ]]; then mkdir -p "$MEDIA_ROOT"; fi

# Loopback stubs of Yandex Audiences, VK Ads and myTarget (tests/stubs): the platforms'
# addresses (deployment settings, never a destination's data) point at them, so a first sync
# runs end to end with no network. Started first: seed_demo queues a sync of each demo audience.
set_default YANDEX_AUDIENCES_BASE_URL "http://127.0.0.1:8701/v1/management/"
set_default VK_ADS_BASE_URL "http://127.0.0.1:8702/api/"
set_default MYTARGET_BASE_URL "http://127.0.0.1:8703/api/"
STUB_ARGS=(--yandex-port 8701 --vk-port 8702 --mytarget-port 8703 --processing-delay 20
           --yandex-token demo-yandex-token --vk-client-id demo --vk-client-secret demo-secret
           --quiet)

"$PY" manage.py migrate --noinput
"$PY" manage.py setup_periodic_tasks
"$PY" manage.py seed_demo --if-empty

PIDS=()
NAMES=()
start() {
    local name="$1"
    shift
    "$@" &
    PIDS+=("$!")
    NAMES+=("$name")
}

stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    # Give them up to 10 s for a warm shutdown, then kill what is left.
    for _ in $(seq 100); do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        [[ "$alive" -eq 0 ]] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}

on_signal() {
    trap - INT TERM
    echo
    echo "run_embedded: stopping..."
    stop_all
    exit 0
}
trap on_signal INT TERM

start stubs "$PY" -m tests.stubs "${STUB_ARGS[@]}"
start web "$PY" manage.py runserver "127.0.0.1:$PORT" --noreload
start worker "$PY" -m celery -A config worker -l info --concurrency 2 --pool threads
start beat "$PY" -m celery -A config beat -l info \
    --scheduler django_celery_beat.schedulers:DatabaseScheduler

cat <<MSG

  Admin:    http://127.0.0.1:$PORT/admin/
  Portal:   http://127.0.0.1:$PORT/portal/
  API docs: http://127.0.0.1:$PORT/api/docs/
  Ad-platform stubs: Yandex Audiences :8701, VK Ads :8702, myTarget :8703 (loopback)

  Database: ${DATABASE_URL:-(from .env)}
  Broker:   ${CELERY_BROKER_URL:-(from .env)}
  Press Ctrl-C to stop.

MSG

# Wait for the first child to exit; any exit while we are not stopping is a failure.
rc=0
wait -n "${PIDS[@]}" || rc=$?
for i in "${!PIDS[@]}"; do
    if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
        echo "run_embedded: ${NAMES[$i]} exited (status $rc); stopping the others" >&2
    fi
done
trap - INT TERM
stop_all
exit $(( rc == 0 ? 1 : rc ))
