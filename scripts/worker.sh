#!/usr/bin/env bash
# Dockyard's Celery worker, as `make up` and the image run it: its tasks run on threads of one
# process (CELERY_WORKER_POOL in config/settings.py says why). Arguments go to `celery worker`.
# Usage: scripts/worker.sh [celery worker options]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${DOCKYARD_VENV_BIN:-$PWD/.venv/bin}
# glibc gives each thread that allocates an arena of its own, up to eight a core, and an arena
# keeps what was freed in it: every stage, log, heartbeat and container-watch thread had one
# (about 9 MB more after 30 runs, bench/soak.py's rough day).
export MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-2}
exec "$bin/celery" -A config worker "$@"
