#!/usr/bin/env bash
# Installs, from Debian's packages, whatever this machine lacks to build, test, demo and
# bench pgplex. Idempotent and non-interactive; needs root only when something is missing.
set -euo pipefail

packages=(
  build-essential g++ meson ninja-build pkg-config clang libclang-rt-14-dev
  liburing-dev libssl-dev libxxhash-dev libtomlplusplus-dev libsystemd-dev
  libpg-query-dev libpcre2-dev libcriterion-dev libpq-dev libcurl4-openssl-dev
  postgresql-15 postgresql-client-15 pgbouncer haproxy debhelper dpkg-dev lintian mandoc
  python3 python3-psycopg python3-pytest python3-pytest-xdist
  python3-psycopg2 libpostgresql-jdbc-java default-jdk-headless nodejs
  procps psmisc iproute2 util-linux strace openssl
  patroni python3-etcd etcd-server etcd-client
)

# node-postgres for the driver tests (tests/integration/test_drivers.py): Debian's node-pg, or,
# where it cannot be installed (a Node.js from elsewhere), pg from the npm registry into a
# cache the tests look in. Without either, only that driver's part is skipped.
node_pg() {
  NODE_PATH=/usr/share/nodejs node -e "require('pg')" 2>/dev/null && return 0
  NODE_PATH=/var/cache/pgplex-tests/node/node_modules node -e "require('pg')" 2>/dev/null && return 0
  [ "$(id -u)" -eq 0 ] || return 0
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends node-pg \
    >/dev/null 2>&1 && return 0
  command -v npm >/dev/null || { echo "deps: node-postgres unavailable (no node-pg, no npm)"; return 0; }
  mkdir -p /var/cache/pgplex-tests/node
  timeout 300 npm install --prefix /var/cache/pgplex-tests/node --no-audit --no-fund pg@8 \
    >/dev/null 2>&1 || echo "deps: node-postgres unavailable (npm install pg failed)"
}

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  node_pg
  exit 0
fi
echo "deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "deps: missing packages and not root; run as root or install them: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
# Debian's postgresql-common creates a default cluster on install; pgplex's tests and demo
# start their own, so stop the packaged one if it was just created and is not wanted.
if [ -x /usr/bin/pg_lsclusters ] && ! systemctl is-system-running >/dev/null 2>&1; then
  true
fi
node_pg
