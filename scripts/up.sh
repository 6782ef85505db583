#!/usr/bin/env bash
# Start Dockyard's web server and a Celery worker in the background; return once both answer.
set -euo pipefail
cd "$(dirname "$0")/.."

PORT=${PORT:-8000}
export DOCKYARD_DATA_DIR=${DOCKYARD_DATA_DIR:-$PWD/data}
export DOCKYARD_PUBLIC_URL=${DOCKYARD_PUBLIC_URL:-http://127.0.0.1:$PORT}
# `make up` is the developer's and the demo's server: it builds repositories from this disk.
export DOCKYARD_ALLOW_LOCAL_REPOSITORIES=${DOCKYARD_ALLOW_LOCAL_REPOSITORIES:-true}
# Dockyard's own Redis and the registry's login (scripts/services.sh makes both).
SECRETS=${DOCKYARD_SECRETS_DIR:-/var/lib/dockyard/secrets}
export REDIS_URL=${REDIS_URL:-redis://127.0.0.1:6380/0}
if [ -z "${DOCKYARD_REDIS_PASSWORD:-}" ]; then
  export DOCKYARD_REDIS_PASSWORD_FILE=${DOCKYARD_REDIS_PASSWORD_FILE:-$SECRETS/redis-password}
fi
export DOCKYARD_REGISTRY_USERNAME=${DOCKYARD_REGISTRY_USERNAME:-dockyard}
if [ -z "${DOCKYARD_REGISTRY_PASSWORD:-}" ]; then
  export DOCKYARD_REGISTRY_PASSWORD_FILE=${DOCKYARD_REGISTRY_PASSWORD_FILE:-$SECRETS/registry-password}
fi
RUN_DIR=$DOCKYARD_DATA_DIR/run
LOG_DIR=$DOCKYARD_DATA_DIR/log
mkdir -p "$RUN_DIR" "$LOG_DIR"
venv=$PWD/.venv/bin

# What this install runs with, for every manage.py typed later in a shell (config/settings.py
# reads it; the environment still wins). Names of files and addresses only, no secret.
{
  echo "# Written by scripts/up.sh ($(date -u +%Y-%m-%dT%H:%M:%SZ))."
  for name in REDIS_URL DOCKYARD_REDIS_PASSWORD_FILE DOCKYARD_REGISTRY_USERNAME \
    DOCKYARD_REGISTRY_PASSWORD_FILE DOCKYARD_PUBLIC_URL DOCKYARD_ALLOW_LOCAL_REPOSITORIES; do
    if [ -n "${!name:-}" ]; then echo "$name=${!name}"; fi
  done
} >"$DOCKYARD_DATA_DIR/dockyard.env"
chmod 600 "$DOCKYARD_DATA_DIR/dockyard.env"

alive() { [ -f "$RUN_DIR/$1.pid" ] && kill -0 "$(cat "$RUN_DIR/$1.pid")" 2>/dev/null; }

start() {  # start NAME COMMAND...
  local name=$1
  shift
  if alive "$name"; then
    echo "dockyard: $name already running (pid $(cat "$RUN_DIR/$name.pid"))"
    return
  fi
  setsid nohup "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN_DIR/$name.pid"
  echo "dockyard: started $name (pid $!, log $LOG_DIR/$name.log)"
}

wait_for() {  # wait_for NAME SECONDS COMMAND...
  local name=$1 seconds=$2
  shift 2
  for _ in $(seq $((seconds * 4))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if ! alive "$name"; then break; fi
    sleep 0.25
  done
  echo "dockyard: $name did not answer; the end of $LOG_DIR/$name.log:" >&2
  tail -n 30 "$LOG_DIR/$name.log" >&2
  exit 1
}

"$venv/python" manage.py migrate --noinput >/dev/null
"$venv/python" manage.py collectstatic --noinput >/dev/null

start web scripts/web.sh 127.0.0.1 "$PORT"
# Every queue (infrastructure.dispatch.QUEUES): this one worker builds, deploys and notifies.
start worker scripts/worker.sh --concurrency 2 --hostname "dockyard@%h" --loglevel INFO

wait_for web 30 curl -sf "http://127.0.0.1:$PORT/healthz"
wait_for worker 60 "$venv/celery" -A config inspect ping --timeout 1 --destination "dockyard@$(hostname)"
echo "dockyard: up at http://127.0.0.1:$PORT/ (make down stops it)"
