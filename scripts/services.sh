#!/usr/bin/env bash
# Start what Dockyard needs and is not running: dockerd, the registry, Redis, PostgreSQL.
# Each is left running for the next command; nothing already running is touched.
set -euo pipefail

LOG_DIR=${DOCKYARD_SERVICES_LOG_DIR:-/var/log/dockyard}
REGISTRY_DIR=${DOCKYARD_REGISTRY_STORAGE:-/var/lib/dockyard/registry}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$LOG_DIR"

wait_for() {  # wait_for NAME SECONDS COMMAND...
  local name=$1 seconds=$2
  shift 2
  for _ in $(seq $((seconds * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  echo "dockyard: $name did not come up within ${seconds}s; see $LOG_DIR" >&2
  return 1
}

docker_up() { curl -sf --unix-socket /var/run/docker.sock http://localhost/_ping >/dev/null; }
registry_up() { curl -sf http://127.0.0.1:5000/v2/ >/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG; }
postgres_up() { pg_isready -q -h 127.0.0.1 -p 5432; }

if ! docker_up; then
  echo "dockyard: starting dockerd"
  # No bridge and no iptables: containers use network "none" (tests) or "host" (deployed apps).
  setsid nohup dockerd --bridge=none --iptables=false --ip-masq=false \
    >>"$LOG_DIR/dockerd.log" 2>&1 </dev/null &
  wait_for dockerd 60 docker_up
fi

if ! registry_up; then
  echo "dockyard: starting the registry on 127.0.0.1:5000"
  mkdir -p "$REGISTRY_DIR"
  REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY="$REGISTRY_DIR" \
    setsid nohup docker-registry serve "$here/registry.yml" \
    >>"$LOG_DIR/registry.log" 2>&1 </dev/null &
  wait_for registry 30 registry_up
fi

if ! redis_up; then
  echo "dockyard: starting Redis on 127.0.0.1:6379"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile "$LOG_DIR/redis.log"
  wait_for redis 30 redis_up
fi

if ! postgres_up; then
  echo "dockyard: starting PostgreSQL"
  cluster_version=$(ls /etc/postgresql | sort -V | tail -n 1)
  pg_ctlcluster --skip-systemctl-redirect "$cluster_version" main start
  wait_for postgres 60 postgres_up
fi

# The role the tests (and a PostgreSQL-backed `make up`) connect as. Its password works where
# 127.0.0.1 uses password auth and is ignored where it trusts.
if ! runuser -u postgres -- psql -qtAc "select 1 from pg_roles where rolname = 'dockyard'" | grep -q 1; then
  runuser -u postgres -- psql -qc "create role dockyard login createdb password 'dockyard'"
fi
if ! runuser -u postgres -- psql -qtAc "select 1 from pg_database where datname = 'dockyard'" | grep -q 1; then
  runuser -u postgres -- psql -qc "create database dockyard owner dockyard"
fi
