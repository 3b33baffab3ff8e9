#!/usr/bin/env bash
# First run on the embedded defaults: SQLite and Celery's filesystem broker, no server needed.
# Migrates, seeds a demo client once, then runs the web server, a Celery worker and Celery beat
# until Ctrl-C. If any of the three dies, the others are stopped and the script exits non-zero.
#
# Every default can be overridden from the environment (see .env.example). PORT sets the web port
# and everything follows it: PUBLIC_BASE_URL (the banner, links in emails) and the loopback stubs
# of the ad platforms, on STUBS_PORT_BASE+1..3 (default PORT+701..703: 8701..8703 for PORT 8000),
# which the platform base URLs (YANDEX_AUDIENCES_BASE_URL, VK_ADS_BASE_URL, MYTARGET_BASE_URL) and
# the demo destinations point at; the owned-channel stubs on +4..9 (UNISENDER_BASE_URL,
# SENDSAY_BASE_URL, SMSRU_BASE_URL, SMSC_BASE_URL, RUSTORE_BASE_URL, web push) and a local SMTP
# sink on +10 (EMAIL_URL), which keeps every email as an .eml file in var/mail/.
#
#   scripts/run_embedded.sh --print-config   print the derived settings and exit
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$PWD"

PRINT_CONFIG=0
case "${1:-}" in
    --print-config) PRINT_CONFIG=1 ;;
    "") ;;
    *) echo "usage: $0 [--print-config]" >&2; exit 2 ;;
esac

is_port() { [[ "$1" =~ ^[0-9]+$ ]] && (( $1 >= 1 && $1 <= 65535 )); }

PORT="${PORT:-8000}"
is_port "$PORT" || { echo "run_embedded: PORT must be a port number, not '$PORT'" >&2; exit 2; }
STUBS_PORT_BASE="${STUBS_PORT_BASE:-$((PORT + 700))}"
[[ "$STUBS_PORT_BASE" =~ ^[0-9]+$ ]] || {
    echo "run_embedded: STUBS_PORT_BASE must be a number, not '$STUBS_PORT_BASE'" >&2
    exit 2
}
YANDEX_STUB_PORT=$((STUBS_PORT_BASE + 1))
VK_STUB_PORT=$((STUBS_PORT_BASE + 2))
MYTARGET_STUB_PORT=$((STUBS_PORT_BASE + 3))
UNISENDER_STUB_PORT=$((STUBS_PORT_BASE + 4))
SENDSAY_STUB_PORT=$((STUBS_PORT_BASE + 5))
SMSRU_STUB_PORT=$((STUBS_PORT_BASE + 6))
SMSC_STUB_PORT=$((STUBS_PORT_BASE + 7))
RUSTORE_STUB_PORT=$((STUBS_PORT_BASE + 8))
WEBPUSH_STUB_PORT=$((STUBS_PORT_BASE + 9))
SMTP_SINK_PORT=$((STUBS_PORT_BASE + 10))
DIRECT_STUB_PORT=$((STUBS_PORT_BASE + 11))
ROISTAT_STUB_PORT=$((STUBS_PORT_BASE + 12))
CALLTOUCH_STUB_PORT=$((STUBS_PORT_BASE + 13))
METRICA_STUB_PORT=$((STUBS_PORT_BASE + 14))
for port in "$YANDEX_STUB_PORT" "$VK_STUB_PORT" "$MYTARGET_STUB_PORT" "$UNISENDER_STUB_PORT" \
            "$SENDSAY_STUB_PORT" "$SMSRU_STUB_PORT" "$SMSC_STUB_PORT" "$RUSTORE_STUB_PORT" \
            "$WEBPUSH_STUB_PORT" "$SMTP_SINK_PORT" "$DIRECT_STUB_PORT" "$ROISTAT_STUB_PORT" \
            "$CALLTOUCH_STUB_PORT" "$METRICA_STUB_PORT"; do
    is_port "$port" || {
        echo "run_embedded: stub port $port out of range (set STUBS_PORT_BASE)" >&2
        exit 2
    }
done

# agency/settings.py also reads ./.env without overriding the environment, so a default is
# exported here only when neither the environment nor .env sets the variable.
ENV_FILE="${RUN_EMBEDDED_ENV_FILE:-$ROOT/.env}"
in_dotenv() {
    [[ -f "$ENV_FILE" ]] && grep -qE "^[[:space:]]*(export[[:space:]]+)?$1[[:space:]]*=" "$ENV_FILE"
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
set_default PUBLIC_BASE_URL "http://127.0.0.1:$PORT"
# The platforms' base URLs are deployment configuration: here, the loopback stubs.
set_default YANDEX_AUDIENCES_BASE_URL "http://127.0.0.1:$YANDEX_STUB_PORT/v1/management/"
set_default VK_ADS_BASE_URL "http://127.0.0.1:$VK_STUB_PORT/api/"
set_default MYTARGET_BASE_URL "http://127.0.0.1:$MYTARGET_STUB_PORT/api/"
# The owned channels' providers, a web push service on loopback (so its endpoints are allowed
# here, never in production) and the local SMTP sink as the relay of every email.
set_default UNISENDER_BASE_URL "http://127.0.0.1:$UNISENDER_STUB_PORT/ru/api/"
set_default SENDSAY_BASE_URL "http://127.0.0.1:$SENDSAY_STUB_PORT/general/api/v100/json/"
set_default SMSRU_BASE_URL "http://127.0.0.1:$SMSRU_STUB_PORT/"
set_default SMSC_BASE_URL "http://127.0.0.1:$SMSC_STUB_PORT/sys/"
set_default RUSTORE_BASE_URL "http://127.0.0.1:$RUSTORE_STUB_PORT/v1/"
set_default YANDEX_DIRECT_BASE_URL "http://127.0.0.1:$DIRECT_STUB_PORT/json/v5/"
set_default WEBPUSH_ALLOW_PRIVATE_ENDPOINTS 1
set_default EMAIL_URL "smtp://127.0.0.1:$SMTP_SINK_PORT"
# Spend, calls and offline conversions (reports).
set_default ROISTAT_BASE_URL "http://127.0.0.1:$ROISTAT_STUB_PORT/api/v1/"
set_default CALLTOUCH_BASE_URL "http://127.0.0.1:$CALLTOUCH_STUB_PORT/"
set_default YANDEX_METRICA_BASE_URL "http://127.0.0.1:$METRICA_STUB_PORT/management/v1/"

# Loopback stubs of Yandex Audiences, VK Ads and myTarget (tests/stubs): the platforms'
# addresses above (deployment settings, never a destination's data) point at them, so a first
# sync runs end to end with no network. Started first: seed_demo queues a sync of each demo
# audience.
STUB_ARGS=(--yandex-port "$YANDEX_STUB_PORT" --vk-port "$VK_STUB_PORT"
           --mytarget-port "$MYTARGET_STUB_PORT" --processing-delay 20
           --yandex-token demo-yandex-token --vk-client-id demo --vk-client-secret demo-secret
           --unisender-port "$UNISENDER_STUB_PORT" --sendsay-port "$SENDSAY_STUB_PORT"
           --smsru-port "$SMSRU_STUB_PORT" --smsc-port "$SMSC_STUB_PORT"
           --rustore-port "$RUSTORE_STUB_PORT" --webpush-port "$WEBPUSH_STUB_PORT"
           --smtp-port "$SMTP_SINK_PORT" --mail-dir "$ROOT/var/mail"
           --direct-port "$DIRECT_STUB_PORT"
           --roistat-port "$ROISTAT_STUB_PORT" --calltouch-port "$CALLTOUCH_STUB_PORT"
           --metrica-port "$METRICA_STUB_PORT"
           --readers-open-share 0.45 --readers-click-share 0.15
           --quiet)

if [[ "$PRINT_CONFIG" -eq 1 ]]; then
    # One NAME=value line each; "(from .env)" when .env sets it and this script does not.
    for name in PORT STUBS_PORT_BASE PUBLIC_BASE_URL YANDEX_AUDIENCES_BASE_URL VK_ADS_BASE_URL \
                MYTARGET_BASE_URL UNISENDER_BASE_URL SENDSAY_BASE_URL SMSRU_BASE_URL \
                SMSC_BASE_URL RUSTORE_BASE_URL YANDEX_DIRECT_BASE_URL ROISTAT_BASE_URL CALLTOUCH_BASE_URL \
                YANDEX_METRICA_BASE_URL WEBPUSH_ALLOW_PRIVATE_ENDPOINTS EMAIL_URL \
                DATABASE_URL CELERY_BROKER_URL; do
        echo "$name=${!name-(from .env)}"
    done
    echo "STUB_ARGS=${STUB_ARGS[*]}"
    exit 0
fi

PY="${PYTHON:-$ROOT/.venv/bin/python}"
[[ -x "$PY" ]] || { echo "run_embedded: $PY not found; run 'make venv' first" >&2; exit 1; }

# The filesystem transport uses one folder as both data_folder_in and data_folder_out (a single
# queue shared by producers and the worker) and moves consumed messages to processed/.
mkdir -p "$ROOT/var"
if [[ "${CELERY_BROKER_URL:-}" == filesystem://* && -n "${CELERY_FS_BROKER_DIR:-}" ]]; then
    mkdir -p "$CELERY_FS_BROKER_DIR/queue" "$CELERY_FS_BROKER_DIR/processed"
fi
if [[ -n "${MEDIA_ROOT:-}" ]]; then mkdir -p "$MEDIA_ROOT"; fi

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
  Ad-platform stubs: Yandex Audiences :$YANDEX_STUB_PORT, VK Ads :$VK_STUB_PORT, myTarget :$MYTARGET_STUB_PORT (loopback)
  Channel stubs: UniSender :$UNISENDER_STUB_PORT, Sendsay :$SENDSAY_STUB_PORT, SMS.ru :$SMSRU_STUB_PORT, SMSC :$SMSC_STUB_PORT, RuStore push :$RUSTORE_STUB_PORT, web push :$WEBPUSH_STUB_PORT
  Spend stubs: Yandex Direct :$DIRECT_STUB_PORT, Roistat :$ROISTAT_STUB_PORT, Calltouch :$CALLTOUCH_STUB_PORT, Yandex Metrica :$METRICA_STUB_PORT
  Email (EMAIL_URL): ${EMAIL_URL:-(from .env)}; the local SMTP sink :$SMTP_SINK_PORT keeps each message in var/mail/
  Public base URL (banner, email links): ${PUBLIC_BASE_URL:-(from .env)}

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
