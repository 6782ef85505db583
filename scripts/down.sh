#!/usr/bin/env bash
# Stop the web server and worker that `make up` started. Services (dockerd, registry, Redis,
# PostgreSQL) are shared with other tools and stay up.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_DIR=${DOCKYARD_DATA_DIR:-$PWD/data}/run

for name in web worker; do
  pid_file=$RUN_DIR/$name.pid
  [ -f "$pid_file" ] || continue
  pid=$(cat "$pid_file")
  if kill -0 "$pid" 2>/dev/null; then
    # The worker finishes its current task on TERM (warm shutdown); give it time.
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    for _ in $(seq 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -0 "$pid" 2>/dev/null && kill -KILL -- "-$pid" 2>/dev/null
    echo "dockyard: stopped $name"
  fi
  rm -f "$pid_file"
done
