#!/usr/bin/env bash
# Runs a throwaway PostgreSQL 15 primary with streaming replicas on 127.0.0.1, for pgplex's
# integration tests, demo and bench. Everything lives under one directory, so stopping and
# deleting that directory undoes it all.
#
#   scripts/pgcluster.sh start DIR PORT [REPLICAS]   primary on PORT, replicas on PORT+1..
#   scripts/pgcluster.sh clone SRC DIR PORT [REPLICAS]
#                                                    the same from SRC's stopped primary,
#                                                    copied (no initdb, no base backup)
#   scripts/pgcluster.sh stop DIR                    fast-stop every instance under DIR
#
# Layout: DIR/primary, DIR/replica1, DIR/replica2, ... are data directories; DIR/*.log are
# their server logs; DIR itself is the Unix socket directory of every instance (socket
# names carry the port, so they do not collide). Replica N streams with
# application_name=replicaN, so pg_stat_replication and synchronous_standby_names can tell
# the replicas apart.
#
# Idempotent: an instance whose data directory exists is only started if it is not running.
# Prints one line per instance it started and nothing else on success; errors go to stderr
# with the tail of the instance's log.
set -euo pipefail

pg_bin=/usr/lib/postgresql/15/bin
wait_seconds=60

usage() {
  echo "usage: $0 start DIR PORT [REPLICAS] | clone SRC DIR PORT [REPLICAS] | stop DIR" >&2
  exit 2
}

as_postgres() {
  runuser -u postgres -- "$@"
}

die_with_log() {
  local message=$1 log=$2
  echo "pgcluster: $message" >&2
  if [ -f "$log" ]; then
    tail -n 20 "$log" >&2
  fi
  exit 1
}

is_running() {
  local data=$1
  as_postgres "$pg_bin/pg_ctl" status -D "$data" >/dev/null 2>&1
}

# Runs a query on the instance at PORT over its Unix socket and prints the bare result.
query() {
  local port=$1 sql=$2
  as_postgres "$pg_bin/psql" -X -At -h "$dir" -p "$port" -d postgres -c "$sql" 2>/dev/null
}

# The settings every instance shares. Appended to postgresql.conf, where later lines win;
# a replica inherits them through pg_basebackup and then appends its own port.
write_settings() {
  local data=$1 port=$2
  cat >>"$data/postgresql.conf" <<EOF

# scripts/pgcluster.sh
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
port = $port
max_connections = 300
password_encryption = 'scram-sha-256'
fsync = off
synchronous_commit = off
full_page_writes = off
wal_level = replica
max_wal_senders = 10
hot_standby = on
shared_buffers = 128MB
logging_collector = off
EOF
}

# Trust locally and for replication from 127.0.0.1; TCP logins need SCRAM. pg_hba.conf
# takes the first matching line, so these go before initdb's defaults.
write_hba() {
  local data=$1
  local defaults
  defaults=$(cat "$data/pg_hba.conf")
  {
    echo "# scripts/pgcluster.sh"
    echo "local all all trust"
    echo "local replication all trust"
    echo "host replication all 127.0.0.1/32 trust"
    echo "$defaults"
  } >"$data/pg_hba.conf"
}

start_instance() {
  local data=$1 port=$2 name=$3
  local log="$dir/$name.log"
  if is_running "$data"; then
    return 0
  fi
  as_postgres "$pg_bin/pg_ctl" start -w -t "$wait_seconds" -D "$data" -l "$log" >/dev/null 2>&1 ||
    die_with_log "$name on port $port did not start" "$log"
  echo "pgcluster: started $name on 127.0.0.1:$port ($data)"
}

init_primary() {
  local data=$1 port=$2
  if [ -f "$data/PG_VERSION" ]; then
    return 0
  fi
  as_postgres "$pg_bin/initdb" -D "$data" -U postgres -E UTF8 --locale=C.UTF-8 \
    --auth-local=trust --auth-host=scram-sha-256 >"$dir/initdb.log" 2>&1 ||
    die_with_log "initdb failed" "$dir/initdb.log"
  write_settings "$data" "$port"
  write_hba "$data"
}

init_replica() {
  local data=$1 primary_port=$2 port=$3 name=$4
  if [ -f "$data/PG_VERSION" ]; then
    return 0
  fi
  rm -rf "$data"
  # -R writes the connection's own options into primary_conninfo, application_name too.
  as_postgres "$pg_bin/pg_basebackup" -D "$data" -R -X stream -c fast \
    -d "application_name=$name" -h 127.0.0.1 -p "$primary_port" -U postgres \
    >"$dir/$name.basebackup.log" 2>&1 ||
    die_with_log "pg_basebackup for $name failed" "$dir/$name.basebackup.log"
  echo "port = $port" >>"$data/postgresql.conf"
}

# A cold copy of a cleanly stopped primary is as good a base backup as pg_basebackup's, and
# cheaper. The copy keeps the source's settings; the lines appended here win.
copy_instance() {
  local source=$1 data=$2 port=$3
  if [ -f "$data/PG_VERSION" ]; then
    return 0
  fi
  if is_running "$source"; then
    echo "pgcluster: $source is running; clone needs it stopped" >&2
    exit 1
  fi
  rm -rf "$data"
  cp -a "$source" "$data"
  rm -f "$data/postmaster.pid" "$data/standby.signal"
  cat >>"$data/postgresql.conf" <<EOF

# scripts/pgcluster.sh clone
unix_socket_directories = '$dir'
port = $port
EOF
}

clone_replica() {
  local source=$1 data=$2 primary_port=$3 port=$4 name=$5
  if [ -f "$data/PG_VERSION" ]; then
    return 0
  fi
  copy_instance "$source" "$data" "$port"
  local conninfo="host=127.0.0.1 port=$primary_port user=postgres application_name=$name"
  echo "primary_conninfo = '$conninfo'" >>"$data/postgresql.auto.conf"
  as_postgres touch "$data/standby.signal"
}

# Waits until every replica is in recovery and the primary shows them all streaming.
wait_streaming() {
  local primary_port=$1 replicas=$2
  local deadline=$((SECONDS + wait_seconds))
  local i streaming
  for ((i = 1; i <= replicas; i++)); do
    until [ "$(query $((primary_port + i)) 'SELECT pg_is_in_recovery()')" = "t" ]; do
      [ $SECONDS -lt $deadline ] || die_with_log "replica$i is not in recovery" "$dir/replica$i.log"
      sleep 0.1
    done
  done
  while :; do
    streaming=$(query "$primary_port" \
      "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")
    [ "${streaming:-0}" -ge "$replicas" ] && break
    [ $SECONDS -lt $deadline ] ||
      die_with_log "only ${streaming:-0} of $replicas replicas streaming" "$dir/primary.log"
    sleep 0.1
  done
}

cmd_start() {
  local port=$1 replicas=$2
  local i
  [[ "$port" =~ ^[0-9]+$ ]] || usage
  [[ "$replicas" =~ ^[0-9]+$ ]] || usage
  mkdir -p "$dir"
  chown postgres:postgres "$dir"
  chmod 0700 "$dir"
  init_primary "$dir/primary" "$port"
  start_instance "$dir/primary" "$port" primary
  for ((i = 1; i <= replicas; i++)); do
    init_replica "$dir/replica$i" "$port" $((port + i)) "replica$i"
    start_instance "$dir/replica$i" $((port + i)) "replica$i"
  done
  wait_streaming "$port" "$replicas"
}

cmd_clone() {
  local source_dir=$1 port=$2 replicas=$3
  local i source="$source_dir/primary"
  [[ "$port" =~ ^[0-9]+$ ]] || usage
  [[ "$replicas" =~ ^[0-9]+$ ]] || usage
  if [ ! -f "$source/PG_VERSION" ]; then
    echo "pgcluster: no primary data directory under $source_dir" >&2
    exit 1
  fi
  mkdir -p "$dir"
  chown postgres:postgres "$dir"
  chmod 0700 "$dir"
  copy_instance "$source" "$dir/primary" "$port"
  for ((i = 1; i <= replicas; i++)); do
    clone_replica "$source" "$dir/replica$i" "$port" $((port + i)) "replica$i"
  done
  cmd_start "$port" "$replicas"
}

# Replicas first, so the primary's walsenders need not wait for them on the way down.
cmd_stop() {
  local data
  [ -d "$dir" ] || return 0
  for data in "$dir"/replica* "$dir"/primary; do
    [ -f "$data/PG_VERSION" ] || continue
    is_running "$data" || continue
    as_postgres "$pg_bin/pg_ctl" stop -w -t "$wait_seconds" -m fast -D "$data" >/dev/null 2>&1 ||
      die_with_log "could not stop $data" "$dir/$(basename "$data").log"
  done
}

[ $# -ge 2 ] || usage
command=$1
if [ "$command" = clone ]; then
  if [ $# -lt 4 ] || [ $# -gt 5 ]; then
    usage
  fi
  source_dir=$(realpath -m "$2")
  shift
fi
dir=$(realpath -m "$2")
# The postgres user runs every tool; a cwd it cannot read makes them warn.
cd /
case "$command" in
  start)
    if [ $# -lt 3 ] || [ $# -gt 4 ]; then
      usage
    fi
    cmd_start "$3" "${4:-1}"
    ;;
  clone)
    cmd_clone "$source_dir" "$3" "${4:-1}"
    ;;
  stop)
    [ $# -eq 2 ] || usage
    cmd_stop
    ;;
  *)
    usage
    ;;
esac
