#!/usr/bin/env bash
# Start what Dockyard needs and is not running: dockerd, the registry, Redis, PostgreSQL.
# Each is left running for the next command; nothing already running is touched, except a
# registry this script started before registries took a login (it is started again with one).
#
# Redis and the registry both want credentials: a test container an operator lets onto the
# host's network, or a deployed app, can reach anything listening on the host's loopback.
# Their passwords are made once, here, into $SECRETS_DIR (readable by root only); Makefile and
# scripts/up.sh hand them to Dockyard as *_FILE settings.
set -euo pipefail

LOG_DIR=${DOCKYARD_SERVICES_LOG_DIR:-/var/log/dockyard}
STATE_DIR=${DOCKYARD_SERVICES_DIR:-/var/lib/dockyard}
REGISTRY_DIR=${DOCKYARD_REGISTRY_STORAGE:-$STATE_DIR/registry}
SECRETS_DIR=$STATE_DIR/secrets
REDIS_DIR=$STATE_DIR/redis
REDIS_PORT=${DOCKYARD_REDIS_PORT:-6380}
REGISTRY_USER=dockyard
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$LOG_DIR" "$SECRETS_DIR" "$REDIS_DIR"
chmod 700 "$SECRETS_DIR"

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

secret_file() {  # secret_file NAME: the path of a random secret, made once
  local path=$SECRETS_DIR/$1
  if [ ! -s "$path" ]; then
    (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$path")
  fi
  echo "$path"
}

redis_password=$(cat "$(secret_file redis-password)")
# Dockyard's own key (sessions, and the key that encrypts stored secrets): with PostgreSQL
# every host of an installation must use the same one, so it is made here, not per data folder.
secret_file secret-key >/dev/null
registry_password=$(cat "$(secret_file registry-password)")

docker_up() { curl -sf --unix-socket /var/run/docker.sock http://localhost/_ping >/dev/null; }
registry_status() { curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:5000/v2/ || true; }
registry_up() {
  curl -sf -u "$REGISTRY_USER:$registry_password" http://127.0.0.1:5000/v2/ >/dev/null
}
redis_up() {
  REDISCLI_AUTH=$redis_password redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping | grep -q PONG
}
postgres_up() { pg_isready -q -h 127.0.0.1 -p 5432; }

if ! docker_up; then
  echo "dockyard: starting dockerd"
  # No bridge and no iptables: containers use network "none" (tests) or "host" (deployed apps).
  setsid nohup dockerd --bridge=none --iptables=false --ip-masq=false \
    >>"$LOG_DIR/dockerd.log" 2>&1 </dev/null &
  wait_for dockerd 60 docker_up
fi

# The registry's account, as the registry reads it (bcrypt), kept in step with the password.
htpasswd_file=$SECRETS_DIR/registry.htpasswd
if [ ! -s "$htpasswd_file" ] || ! htpasswd -vb "$htpasswd_file" "$REGISTRY_USER" \
  "$registry_password" >/dev/null 2>&1; then
  (umask 077 && htpasswd -Bbn "$REGISTRY_USER" "$registry_password" >"$htpasswd_file")
fi

if [ "$(registry_status)" = 200 ]; then
  # Anonymous: one this script started before registries took a login. Started again below.
  anonymous=$(pgrep -f "docker-registry serve $here/registry.yml" || true)
  if [ -z "$anonymous" ]; then
    echo "dockyard: a registry without a login answers on 127.0.0.1:5000; stop it first" >&2
    exit 1
  fi
  echo "dockyard: restarting the registry on 127.0.0.1:5000 with a login"
  kill $anonymous
  wait_for "the old registry to stop" 30 test "$(registry_status)" = 000
fi

if ! registry_up; then
  echo "dockyard: starting the registry on 127.0.0.1:5000"
  mkdir -p "$REGISTRY_DIR"
  REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY="$REGISTRY_DIR" \
    REGISTRY_AUTH_HTPASSWD_PATH="$htpasswd_file" \
    setsid nohup docker-registry serve "$here/registry.yml" \
    >>"$LOG_DIR/registry.log" 2>&1 </dev/null &
  wait_for registry 30 registry_up
fi

# Dockyard's own Redis, with a password; the machine may run another Redis on 6379.
if ! redis_up; then
  echo "dockyard: starting Redis on 127.0.0.1:$REDIS_PORT"
  # The password goes in a file, not on the command line, where `ps` would show it.
  (
    umask 077
    cat >"$REDIS_DIR/redis.conf" <<CONF
bind 127.0.0.1
port $REDIS_PORT
requirepass $redis_password
save ""
appendonly no
dir $REDIS_DIR
logfile $LOG_DIR/redis.log
daemonize yes
CONF
  )
  redis-server "$REDIS_DIR/redis.conf"
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
