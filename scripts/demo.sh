#!/usr/bin/env bash
# pgplex in front of a PostgreSQL primary and its streaming replica, on this machine only.
#
#   scripts/demo.sh PATH_TO_PGPLEX          (what `make demo` runs)
#   KEEP=1 scripts/demo.sh PATH_TO_PGPLEX   leave it all running until Ctrl-C / SIGTERM
#
# Starts a primary + 1 replica (scripts/pgcluster.sh) in a temp dir, creates role and
# database "app" with pgbench's tables, writes a pgplex config with two aliases
#   app     → the primary, read-write
#   app_ro  → the replica, default_transaction_read_only=on
# starts pgplex on 127.0.0.1:6432 (or the next free port), shows which server each alias
# reaches, runs a short pgbench through it, and tears everything down on exit.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 PATH_TO_PGPLEX" >&2
  exit 2
fi
pgplex_bin=$(realpath "$1")
if [ ! -x "$pgplex_bin" ]; then
  echo "demo: $1 is not an executable pgplex (run: make build)" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "demo: run as root (PostgreSQL runs as the postgres user via runuser)" >&2
  exit 1
fi

here=$(cd "$(dirname "$0")" && pwd)
pg_bin=/usr/lib/postgresql/15/bin
keep=${KEEP:-0}
app_password="app-demo-secret"
demo_dir=$(mktemp -d /tmp/pgplex-demo.XXXXXX)
chmod 0755 "$demo_dir"
pg_dir="$demo_dir/pg"
pgplex_pid=""

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  if [ -n "$pgplex_pid" ] && kill -0 "$pgplex_pid" 2>/dev/null; then
    kill -TERM "$pgplex_pid" 2>/dev/null || true
    for _ in $(seq 100); do
      kill -0 "$pgplex_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pgplex_pid" 2>/dev/null || true
  fi
  if [ -n "$pgplex_pid" ]; then
    local pgplex_status=0
    wait "$pgplex_pid" 2>/dev/null || pgplex_status=$?
    if [ "$pgplex_status" -ne 0 ]; then
      echo "demo: pgplex exited with status $pgplex_status; its log:" >&2
      tail -n 20 "$demo_dir/pgplex.log" >&2
    fi
  fi
  "$here/pgcluster.sh" stop "$pg_dir" || true
  rm -rf "$demo_dir"
  echo "demo: stopped pgplex and PostgreSQL, removed $demo_dir"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port_is_free() {
  [ -z "$(ss -Hltn "sport = :$1")" ]
}

# The first port from $1 up that is free, along with the $2 - 1 after it.
free_ports_from() {
  local port=$1 count=$2 i ok
  for ((; port < $1 + 1000; port++)); do
    ok=1
    for ((i = 0; i < count; i++)); do
      port_is_free $((port + i)) || { ok=0; break; }
    done
    if [ $ok -eq 1 ]; then
      echo "$port"
      return 0
    fi
  done
  echo "demo: no free port from $1" >&2
  return 1
}

section() {
  printf '\n== %s\n' "$*"
}

primary_port=$(free_ports_from 25432 2)
replica_port=$((primary_port + 1))
pgplex_port=$(free_ports_from 6432 1)
service_port=$(free_ports_from 5433 2)  # the cluster's primary and replica services

section "PostgreSQL 15: primary on $primary_port, streaming replica on $replica_port"
"$here/pgcluster.sh" start "$pg_dir" "$primary_port" 1

admin_psql() {
  local port=$1
  shift
  "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 -At -h "$pg_dir" -p "$port" -U postgres "$@"
}

admin_psql "$primary_port" -d postgres \
  -c "CREATE ROLE app LOGIN PASSWORD '$app_password'" \
  -c "CREATE DATABASE app OWNER app"
if ! "$pg_bin/pgbench" -i -s 1 -q -h "$pg_dir" -p "$primary_port" -U app app \
  >"$demo_dir/pgbench-init.log" 2>&1; then
  cat "$demo_dir/pgbench-init.log" >&2
  exit 1
fi
# Wait until the replica has replayed pgbench's tables.
for _ in $(seq 100); do
  replayed=$(admin_psql "$replica_port" -d app \
    -c "SELECT to_regclass('pgbench_accounts') IS NOT NULL" 2>/dev/null || true)
  [ "$replayed" = "t" ] && break
  sleep 0.1
done
admin_psql "$primary_port" -d postgres \
  -c "CREATE ROLE pgplex_monitor LOGIN PASSWORD '$app_password' IN ROLE pg_monitor"
echo "created role and database app with pgbench tables (scale 1), replicated"
echo "created role pgplex_monitor (pg_monitor) for pgplex's node monitors"

config="$demo_dir/pgplex.toml"
cat >"$demo_dir/userlist.txt" <<EOF
"app" "$app_password"
EOF
cat >"$config" <<EOF
# pgplex demo configuration (written by scripts/demo.sh; see examples/pgplex.toml).
[pgplex]
listen = ["127.0.0.1:$pgplex_port"]
workers = 2
max_client_conn = 200
pool_mode = "session"
default_pool_size = 20
admin_users = ["app"]
auth_type = "scram-sha-256"
auth_file = "userlist.txt"
server_reset_query = "DISCARD ALL"
server_idle_timeout = "600s"
server_lifetime = "3600s"
query_wait_timeout = "120s"
shutdown_timeout = "10s"

# Read-write: the primary.
[databases.app]
host = "127.0.0.1"
port = $primary_port
dbname = "app"
user = "app"
password = "$app_password"
client_encoding = "UTF8"
datestyle = "ISO"

# Read-only: the streaming replica.
[databases.app_ro]
host = "127.0.0.1"
port = $replica_port
dbname = "app"
user = "app"
password = "$app_password"
application_name = "app_readonly"
options = "-c default_transaction_read_only=on"
client_encoding = "UTF8"
datestyle = "ISO"
pool_size = 10

# The same two nodes as a cluster: pgplex reads their roles itself.
[clusters.demo]
nodes = ["127.0.0.1:$primary_port", "127.0.0.1:$replica_port"]
monitor_user = "pgplex_monitor"
monitor_password = "$app_password"
inter = "500ms"

[clusters.demo.services.primary]
port = $service_port

[clusters.demo.services.replica]
port = $((service_port + 1))

# Routed per statement: writes to the primary, reads to the replica.
[databases.app_routed]
cluster = "demo"
dbname = "app"
user = "app"
password = "$app_password"
pool_mode = "transaction"
EOF

section "pgplex on 127.0.0.1:$pgplex_port ($pgplex_bin)"
"$pgplex_bin" --check "$config"
"$pgplex_bin" "$config" 2>"$demo_dir/pgplex.log" &
pgplex_pid=$!
for _ in $(seq 100); do
  if ! kill -0 "$pgplex_pid" 2>/dev/null; then
    echo "demo: pgplex exited at startup:" >&2
    cat "$demo_dir/pgplex.log" >&2
    exit 1
  fi
  (exec 3<>"/dev/tcp/127.0.0.1/$pgplex_port") 2>/dev/null && break
  sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$pgplex_port") 2>/dev/null ||
  { echo "demo: pgplex does not accept connections" >&2; cat "$demo_dir/pgplex.log" >&2; exit 1; }
echo "pgplex is running (pid $pgplex_pid), log: $demo_dir/pgplex.log"

through_pgplex() {
  local alias=$1
  shift
  PGPASSWORD="$app_password" "$pg_bin/psql" -X -v ON_ERROR_STOP=1 \
    "host=127.0.0.1 port=$pgplex_port dbname=$alias user=app" "$@"
}

section "Which server does each alias reach?"
for alias in app app_ro; do
  through_pgplex "$alias" -c \
    "SELECT '$alias' AS alias, inet_server_port() AS server_port,
            pg_is_in_recovery() AS on_replica,
            current_setting('transaction_read_only') AS read_only,
            (SELECT count(*) FROM pgbench_accounts) AS accounts"
done

section "Writing through app_ro is refused (read-only transaction)"
through_pgplex app_ro -c "UPDATE pgbench_branches SET bbalance = 0" 2>&1 | sed 's/^/  /' || true

# The monitors read each node's role within a second or two; wait for both to be up.
for _ in $(seq 50); do
  down=$(through_pgplex pgplex -At -c "SHOW NODES" 2>/dev/null | grep -c '|down|' || true)
  [ "$down" = "0" ] && break
  sleep 0.2
done

section "Services: primary on $service_port, replica on $((service_port + 1))"
for port in $service_port $((service_port + 1)); do
  PGPASSWORD="$app_password" "$pg_bin/psql" -X -At "host=127.0.0.1 port=$port dbname=app user=app" \
    -c "SELECT 'service port $port reaches ' || inet_server_port() ||
               CASE WHEN pg_is_in_recovery() THEN ' (replica)' ELSE ' (primary)' END"
done

section "Per-statement routing in one connection (alias app_routed)"
through_pgplex app_routed -At \
  -c "SELECT 'read  -> ' || inet_server_port()" \
  -c "UPDATE pgbench_branches SET bbalance = bbalance WHERE bid = 1
      RETURNING 'write -> ' || inet_server_port()" \
  -c "SELECT 'read right after the write -> ' || inet_server_port() || ' (read your writes)'" \
  -c "--!pgplex route=primary
      SELECT 'hinted read -> ' || inet_server_port()"

section "SHOW NODES in the management database"
through_pgplex pgplex -c "SHOW NODES" | cut -c1-150

section "pgbench -T 5 -c 8 -j 2 through alias app"
PGPASSWORD="$app_password" "$pg_bin/pgbench" -n -T 5 -c 8 -j 2 -h 127.0.0.1 -p "$pgplex_port" \
  -U app app 2>&1 | grep -E "^(number of|latency|tps|.*aborted|.*error)" || true

section "Connect yourself"
echo "  psql \"host=127.0.0.1 port=$pgplex_port dbname=app user=app password=$app_password\""
echo "  psql \"host=127.0.0.1 port=$pgplex_port dbname=app_ro user=app password=$app_password\""
echo "  psql \"host=127.0.0.1 port=$pgplex_port dbname=app_routed user=app password=$app_password\""
echo "  psql \"host=127.0.0.1 port=$pgplex_port dbname=pgplex user=app password=$app_password\" -c 'SHOW SERVICES'"
echo "  config: $config   reload: kill -HUP $pgplex_pid"

if [ "$keep" = "1" ]; then
  echo
  echo "KEEP=1: everything stays up; press Ctrl-C (or send SIGTERM to $$) to stop and clean up."
  while kill -0 "$pgplex_pid" 2>/dev/null; do
    sleep 1 &
    wait $! || true
  done
  echo "demo: pgplex exited on its own:" >&2
  tail -n 20 "$demo_dir/pgplex.log" >&2
  exit 1
fi
