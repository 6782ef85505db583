#!/usr/bin/env bash
# More hosts on this one machine, for the fleet tests and benchmarks: each address of
# 127.0.0.0/8 given (default 127.0.0.2 127.0.0.3 127.0.0.4) gets what a build or deploy host
# of its own would have:
#
#   - a Docker engine of its own (own socket, data root, exec root and pid file, no bridge):
#       unix:///run/dockyard/hosts/<address>/docker.sock   (a worker "on" that host)
#       tcp://<address>:2376                               (TLS both ways, client certificate)
#   - an sshd on <address>:22 for the user dockyard-remote, whose sessions reach that engine
#       ssh://dockyard-remote@<address>
#
# Clients (workers, tests) use the set-up made in $CLIENT_HOME, as the docker CLI would from
# a home folder: .ssh/config, .ssh/id_ed25519 and .ssh/known_hosts for ssh://, .docker/{ca,
# cert,key}.pem for tcp:// (HOME=$CLIENT_HOME DOCKER_TLS_VERIFY=1). Everything listens on
# loopback only. Idempotent: what answers already is left alone.
#
#   scripts/hosts.sh up [ADDRESS...]     start them (and make keys and certificates once)
#   scripts/hosts.sh down [ADDRESS...]   stop them (their data stays)
set -euo pipefail

STATE_DIR=${DOCKYARD_HOSTS_DIR:-/var/lib/dockyard/hosts}
RUN_ROOT=/run/dockyard/hosts
LOG_DIR=${DOCKYARD_SERVICES_LOG_DIR:-/var/log/dockyard}
CLIENT_HOME=$STATE_DIR/client
CA_DIR=$STATE_DIR/ca
REMOTE_USER=dockyard-remote
action=${1:-up}
shift || true
addresses=("$@")
[ ${#addresses[@]} -gt 0 ] || addresses=(127.0.0.2 127.0.0.3 127.0.0.4)

for address in "${addresses[@]}"; do
  case $address in
    127.*) ;;
    *) echo "dockyard: $address is not a loopback address; hosts stay inside 127.0.0.0/8" >&2; exit 1 ;;
  esac
done

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

engine_up() { curl -sf --unix-socket "$RUN_ROOT/$1/docker.sock" http://localhost/_ping; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

stop_host() {
  local address=$1 run=$RUN_ROOT/$1
  for pid_file in "$run/sshd.pid" "$run/docker.pid"; do
    if alive "$pid_file"; then
      kill "$(cat "$pid_file")"
      for _ in $(seq 100); do alive "$pid_file" || break; sleep 0.1; done
    fi
  done
  # dockerd leaves its namespace mounts behind under the exec root.
  if [ -d "$run/exec" ]; then
    grep -o " $run/exec[^ ]*" /proc/mounts | sort -r | while read -r mount; do
      umount "$mount" 2>/dev/null || true
    done
  fi
  echo "dockyard: host $address stopped"
}

if [ "$action" = down ]; then
  for address in "${addresses[@]}"; do stop_host "$address"; done
  exit 0
fi
if [ "$action" != up ]; then
  echo "usage: scripts/hosts.sh up|down [ADDRESS...]" >&2
  exit 2
fi

mkdir -p "$STATE_DIR" "$LOG_DIR" "$CA_DIR" "$CLIENT_HOME/.ssh" "$CLIENT_HOME/.docker" /run/sshd
chmod 755 "$STATE_DIR"
chmod 700 "$CA_DIR" "$CLIENT_HOME/.ssh" "$CLIENT_HOME/.docker"

# The account ssh sessions run as on every host; the engines give it their socket.
if ! id "$REMOTE_USER" >/dev/null 2>&1; then
  useradd --system --create-home --home-dir "/var/lib/$REMOTE_USER" --shell /bin/sh "$REMOTE_USER"
fi
# No password at all ('*'), rather than a locked one ('!'), which sshd without PAM refuses
# even for a key.
usermod -p '*' "$REMOTE_USER"

# The client's ssh key, authorised on every host.
if [ ! -s "$CLIENT_HOME/.ssh/id_ed25519" ]; then
  ssh-keygen -q -t ed25519 -N '' -C "dockyard-worker" -f "$CLIENT_HOME/.ssh/id_ed25519"
fi
install -m 644 "$CLIENT_HOME/.ssh/id_ed25519.pub" "$STATE_DIR/authorized_keys"

# A CA for the engines' TLS: each engine's certificate names its address; one client
# certificate for Dockyard.
if [ ! -s "$CA_DIR/ca.pem" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=dockyard hosts CA" \
    -keyout "$CA_DIR/ca-key.pem" -out "$CA_DIR/ca.pem" 2>/dev/null
fi
if [ ! -s "$CLIENT_HOME/.docker/cert.pem" ]; then
  openssl req -newkey rsa:2048 -nodes -subj "/CN=dockyard-worker" \
    -keyout "$CLIENT_HOME/.docker/key.pem" -out "$CA_DIR/client.csr" 2>/dev/null
  openssl x509 -req -in "$CA_DIR/client.csr" -CA "$CA_DIR/ca.pem" -CAkey "$CA_DIR/ca-key.pem" \
    -CAcreateserial -days 3650 -extfile <(echo "extendedKeyUsage=clientAuth") \
    -out "$CLIENT_HOME/.docker/cert.pem" 2>/dev/null
fi
install -m 644 "$CA_DIR/ca.pem" "$CLIENT_HOME/.docker/ca.pem"
chmod 600 "$CLIENT_HOME/.docker/key.pem"

: >"$CLIENT_HOME/.ssh/known_hosts.new"
for address in "${addresses[@]}"; do
  dir=$STATE_DIR/$address
  run=$RUN_ROOT/$address
  mkdir -p "$dir/docker" "$dir/ssh" "$run"

  if [ ! -s "$dir/tls/cert.pem" ]; then
    mkdir -p "$dir/tls"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=$address" \
      -keyout "$dir/tls/key.pem" -out "$dir/tls/server.csr" 2>/dev/null
    openssl x509 -req -in "$dir/tls/server.csr" -CA "$CA_DIR/ca.pem" -CAkey "$CA_DIR/ca-key.pem" \
      -CAcreateserial -days 3650 \
      -extfile <(printf 'subjectAltName=IP:%s\nextendedKeyUsage=serverAuth\n' "$address") \
      -out "$dir/tls/cert.pem" 2>/dev/null
    chmod 600 "$dir/tls/key.pem"
  fi

  if ! engine_up "$address"; then
    echo "dockyard: starting the engine of host $address"
    setsid nohup dockerd --bridge=none --iptables=false --ip-masq=false \
      --host "unix://$run/docker.sock" --group "$REMOTE_USER" \
      --host "tcp://$address:2376" --tlsverify --tlscacert "$CA_DIR/ca.pem" \
      --tlscert "$dir/tls/cert.pem" --tlskey "$dir/tls/key.pem" \
      --data-root "$dir/docker" --exec-root "$run/exec" --pidfile "$run/docker.pid" \
      >>"$LOG_DIR/host-$address-dockerd.log" 2>&1 </dev/null &
    wait_for "the engine of $address" 60 engine_up "$address"
  fi

  if [ ! -s "$dir/ssh/ssh_host_ed25519_key" ]; then
    ssh-keygen -q -t ed25519 -N '' -f "$dir/ssh/ssh_host_ed25519_key"
  fi
  cat >"$dir/ssh/sshd_config" <<CONF
ListenAddress $address:22
HostKey $dir/ssh/ssh_host_ed25519_key
PidFile $run/sshd.pid
AuthorizedKeysFile $STATE_DIR/authorized_keys
AllowUsers $REMOTE_USER
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
UsePAM no
AllowTcpForwarding no
X11Forwarding no
# Sessions reach this host's engine (docker system dial-stdio reads DOCKER_HOST).
SetEnv DOCKER_HOST=unix://$run/docker.sock
CONF
  if ! alive "$run/sshd.pid"; then
    echo "dockyard: starting sshd on $address"
    /usr/sbin/sshd -f "$dir/ssh/sshd_config" -E "$LOG_DIR/host-$address-sshd.log"
    wait_for "sshd on $address" 30 bash -c "exec 3<>/dev/tcp/$address/22"
  fi
  echo "$address $(cut -d' ' -f1,2 "$dir/ssh/ssh_host_ed25519_key.pub")" \
    >>"$CLIENT_HOME/.ssh/known_hosts.new"
done

# known_hosts keeps the other addresses' lines; this run's are replaced.
if [ -f "$CLIENT_HOME/.ssh/known_hosts" ]; then
  grep -v -F -f <(cut -d' ' -f1 "$CLIENT_HOME/.ssh/known_hosts.new" | sed 's/$/ /') \
    "$CLIENT_HOME/.ssh/known_hosts" >>"$CLIENT_HOME/.ssh/known_hosts.new" || true
fi
mv "$CLIENT_HOME/.ssh/known_hosts.new" "$CLIENT_HOME/.ssh/known_hosts"
cat >"$CLIENT_HOME/.ssh/config" <<CONF
Host 127.*
  User $REMOTE_USER
  IdentityFile $CLIENT_HOME/.ssh/id_ed25519
CONF
chmod 600 "$CLIENT_HOME/.ssh/config" "$CLIENT_HOME/.ssh/known_hosts"
