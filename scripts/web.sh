#!/usr/bin/env bash
# Dockyard's web server, as `make up`, the suite and the image run it: uvicorn serving
# config.asgi (HTTP and WebSocket) on uvloop, in DOCKYARD_WEB_WORKERS processes sharing one port
# (default 2, a process a core here: one process's event loop and its pooled threads share one
# interpreter lock). HTTP is parsed by h11, which refuses a request whose head passes 16 kB;
# httptools parses faster but buffers a head of any size, which a hostile client could use to
# fill the memory.
# Usage: scripts/web.sh HOST PORT
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${DOCKYARD_VENV_BIN:-$PWD/.venv/bin}
# What a large request (a webhook body near its 25 MB cap) freed goes back to the system:
# glibc raises its mmap threshold after the first large free, and later large buffers then
# land in heap arenas that seldom shrink; one arena per thread of the pool fragments more.
export MALLOC_MMAP_THRESHOLD_=${MALLOC_MMAP_THRESHOLD_:-1048576}
export MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-2}
# No --proxy-headers: a client on this machine could otherwise name any address as its own in
# X-Forwarded-For, and the audit log records the address a request came from.
exec "$bin/uvicorn" config.asgi:application --host "$1" --port "$2" \
  --workers "${DOCKYARD_WEB_WORKERS:-2}" --loop uvloop --ws websockets \
  --http h11 --h11-max-incomplete-event-size 16384 \
  --no-proxy-headers --no-access-log --timeout-graceful-shutdown 10
