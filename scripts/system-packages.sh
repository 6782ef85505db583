#!/usr/bin/env bash
# Install the Debian packages Dockyard and its tests need, only those that are missing.
set -euo pipefail

need=()
have_package() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

# haproxy, socat and busybox-static: the hosts' proxy image is made of them (socat is the
# runtime API's client). apache2-utils: htpasswd, for the registry's login. openssh-server and
# openssl: the extra hosts of the fleet tests (scripts/hosts.sh), reached over ssh and TLS.
# debootstrap: the Debian image (PostgreSQL, Redis) the test suites' services run from.
for package in docker.io docker-registry busybox-static git curl docker-compose haproxy socat chromium \
  debootstrap \
  apache2-utils openssh-server openssl; do
  have_package "$package" || need+=("$package")
done
# PostgreSQL and Redis may be installed some other way; only add Debian's when absent.
command -v pg_ctlcluster >/dev/null || command -v postgres >/dev/null || need+=(postgresql)
command -v redis-server >/dev/null || need+=(redis-server)
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
# The log viewer's tests run on Node's own test runner.
command -v node >/dev/null || need+=(nodejs)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "dockyard: these Debian packages are missing: ${need[*]} (run as root, or install them)" >&2
  exit 1
fi
echo "dockyard: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# Nothing starts on install (no sshd listening on every address): scripts/services.sh and
# scripts/hosts.sh start what is needed, where it is needed.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get install -y -q --no-install-recommends "${need[@]}"
