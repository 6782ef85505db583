#!/usr/bin/env bash
# Dockyard's web server, as `make up`, the suite and the image run it: uvicorn serving
# config.asgi (HTTP and WebSocket) on uvloop, in DOCKYARD_WEB_WORKERS processes sharing one port
# (default 2, a process a core here: one process's event loop and its pooled threads share one
# interpreter lock). gunicorn loads config.asgi once and forks the processes from it, so they
# share what it loaded (config/web_worker.py has uvicorn's settings and says why).
# Usage: scripts/web.sh HOST PORT
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${DOCKYARD_VENV_BIN:-$PWD/.venv/bin}
# What a large request (a webhook body near its 25 MB cap) freed goes back to the system:
# glibc raises its mmap threshold after the first large free, and later large buffers then
# land in heap arenas that seldom shrink; one arena per thread of the pool fragments more.
export MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-1048576}
export MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-2}
# --keep-alive 5 and --graceful-timeout 10: uvicorn's own defaults, which its processes had
# before gunicorn ran them. gunicorn's --timeout restarts a process whose event loop has not
# checked in for that long. No control socket: it would be one path in $HOME for every server
# on this machine (the suite starts several).
exec "$bin/gunicorn" config.asgi:application --bind "$1:$2" --preload \
  --workers "${DOCKYARD_WEB_WORKERS:-2}" --worker-class config.web_worker.DockyardUvicornWorker \
  --keep-alive 5 --graceful-timeout 10 --timeout 60 --no-control-socket
