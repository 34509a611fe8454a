#!/usr/bin/env bash
# bench/routing.sh PATH_TO_PGPLEX
#
# The cost of pgplex's routing, measured against plain transaction pooling in the same run.
# Starts a PostgreSQL 15 primary and one streaming replica (scripts/pgcluster.sh), then runs
# pgbench select-only (-S) at the replica through five targets, one after the other in each
# round, so drift over the run (caches, other work on the machine) spreads over all five:
#
#   direct   (a) pgbench straight to the replica
#   plain    (b) pgplex, transaction pooling, an alias with host/port = the replica, no cluster
#   service  (c) pgplex, the cluster's replica service ([clusters.C.services.replica], its
#                own port, dest = pool, transaction pooling)
#   routed   (d) pgplex's main listener, an alias with cluster = "C": every transaction is
#                classified (libpg_query, cached by the hash of its text) and its reads go to
#                the replica
#   bouncer  (e) PgBouncer, transaction pooling, pointing at the replica, for reference
#
# It reports tps, the ratios service/plain (c/b), routed/plain (d/b), routed/PgBouncer (d/e)
# and plain/PgBouncer (b/e), each proxy's CPU per 1000 transactions (utime + stime from
# /proc/PID/stat, as bench/run.sh measures it; one pgplex process serves b, c and d, one
# target at a time), and where the transactions went: xact_commit of the bench database on
# each node (pg_stat_database, read once the run's server connections have closed), so a
# routed run that fell back to the primary shows.
#
# -M simple sends pgbench's aid as a literal, so nearly every statement text is new to the
# classifier's cache and (d) parses each one; -M prepared parses one text once. Both are run
# by default and reported separately.
#
# Environment overrides (defaults in brackets):
#   DURATION    seconds per pgbench run                            [10]
#   CLIENTS     client counts to run                               ["16"]
#   ROUNDS      rounds of each (protocol, clients)                 [2]
#   PROTOCOL    pgbench -M: "simple", "prepared" and/or "extended" ["simple prepared"]
#   SCALE       pgbench scale factor                               [10]
#   POOL_SIZE   server connections per pool, both proxies         [20]
#   THREADS     pgbench -j                                         [2]
#   BENCH_PORT  first of five loopback ports: primary, replica, PgBouncer, pgplex, pgplex's
#               replica service                                    [28400]
#   BENCH_KEEP  1: keep the temporary directory (logs, configs) after the run
#   PROFILE     1: also sample pgplex with perf record (499 Hz, no call graphs) over the
#               middle half of each of its runs, and print after the table the share of
#               its samples in libpg_query and in pgplex::route::, and that share of its
#               CPU per transaction in µs (needs perf, DURATION >= 8)     [0]
#
# With the defaults: 2 protocols x 1 client count x 2 rounds x 5 targets, less PgBouncer's
# prepared runs (PgBouncer 1.18 cannot run -M prepared in transaction pooling; see
# bench/README.md), = 18 runs of about DURATION + 3 s, about 4 minutes with the setup.
#
# Runs as root (PostgreSQL and PgBouncer run as the postgres user). Everything it starts is
# stopped on exit, by PID (PostgreSQL by scripts/pgcluster.sh stop on its own directory).
set -uo pipefail

DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-"16"}
ROUNDS=${ROUNDS:-2}
PROTOCOL=${PROTOCOL:-"simple prepared"}
SCALE=${SCALE:-10}
POOL_SIZE=${POOL_SIZE:-20}
THREADS=${THREADS:-2}
BENCH_PORT=${BENCH_PORT:-28400}
BENCH_KEEP=${BENCH_KEEP:-0}
PROFILE=${PROFILE:-0}

PG_BIN=/usr/lib/postgresql/15/bin
PGBOUNCER_BIN=/usr/sbin/pgbouncer
BENCH_USER=bench
BENCH_PASSWORD=bench-$RANDOM$RANDOM
BENCH_DB=bench
ROUTED_DB=bench_routed           # the pgplex alias with cluster = "$CLUSTER"
CLUSTER=bench
MONITOR_USER=pgplex_monitor      # a pg_monitor member the node monitor logs in as
MONITOR_PASSWORD=monitor-$RANDOM$RANDOM
TARGETS="direct plain service routed bouncer"

repo=$(cd "$(dirname "$0")/.." && pwd)
results_dir=$repo/bench/results

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

[ $# -eq 1 ] || die "usage: bench/routing.sh PATH_TO_PGPLEX"
pgplex_bin=$1
case $pgplex_bin in /*) ;; *) pgplex_bin=$PWD/$pgplex_bin ;; esac
cd /
[ "$(id -u)" -eq 0 ] || die "run as root (PostgreSQL and PgBouncer are started as postgres)"
id postgres >/dev/null 2>&1 || die "no postgres user; install postgresql-15 (scripts/deps.sh)"
[ -x "$repo/scripts/pgcluster.sh" ] || die "scripts/pgcluster.sh missing"
command -v pgbench >/dev/null || die "pgbench missing; install postgresql-client-15"
for n in $DURATION $ROUNDS $SCALE $THREADS $BENCH_PORT $POOL_SIZE $CLIENTS; do
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -gt 0 ] || die "not a positive integer: '$n'"
done
if [ "$PROFILE" = 1 ]; then
  command -v perf >/dev/null || die "PROFILE=1 needs perf (apt-get install linux-perf)"
  [ "$DURATION" -ge 8 ] || die "PROFILE=1 needs DURATION >= 8 (it samples the middle half)"
fi
[ -n "${PROTOCOL// /}" ] || die "PROTOCOL is empty (simple, prepared, extended)"
for p in $PROTOCOL; do
  case $p in simple|prepared|extended) ;; *) die "unknown protocol '$p'" ;; esac
done

primary_port=$BENCH_PORT
replica_port=$((BENCH_PORT + 1))
pgbouncer_port=$((BENCH_PORT + 2))
pgplex_port=$((BENCH_PORT + 3))
service_port=$((BENCH_PORT + 4))
declare -A port_of=([direct]=$replica_port [plain]=$pgplex_port [service]=$service_port
                    [routed]=$pgplex_port [bouncer]=$pgbouncer_port)
declare -A db_of=([direct]=$BENCH_DB [plain]=$BENCH_DB [service]=$BENCH_DB
                  [routed]=$ROUTED_DB [bouncer]=$BENCH_DB)
for p in $primary_port $replica_port $pgbouncer_port $pgplex_port $service_port; do
  if ss -Hltn "sport = :$p" | grep -q .; then die "port $p is in use; set BENCH_PORT"; fi
done

clients_max=0
for c in $CLIENTS; do [ "$c" -gt "$clients_max" ] && clients_max=$c; done
# pgcluster.sh gives every node 300 connections: the direct runs need one per client.
max_connections=$(( clients_max + 50 > 300 ? clients_max + 50 : 300 ))
max_client_conn=$(( clients_max + 100 > 1000 ? clients_max + 100 : 1000 ))

want_files=10000
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $want_files ]; then
  ulimit -n $want_files 2>/dev/null || note "could not raise ulimit -n to $want_files"
fi

tmp=$(mktemp -d /tmp/pgplex-routing.XXXXXX) || die "mktemp failed"
chmod 755 "$tmp"
chown postgres: "$tmp"
pg_dir=$tmp/pg
pg_started=0
pgbouncer_pid=""
pgplex_pid=""
perf_pid=""
declare -A failed=()    # target -> reason it cannot run at all
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$perf_pid" perf
  stop_pid "$pgplex_pid" pgplex
  stop_pid "$pgbouncer_pid" pgbouncer
  [ $pg_started = 1 ] && "$repo/scripts/pgcluster.sh" stop "$pg_dir" >/dev/null 2>&1
  if [ "$BENCH_KEEP" = 1 ]; then note "kept $tmp"; else rm -rf "$tmp"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# stop_pid PID NAME: SIGTERM, then SIGKILL after 10 s. Only ever a PID this script started.
stop_pid() {
  local pid=$1 name=$2 i
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  note "$name (pid $pid) did not stop in 10 s; SIGKILL"
  kill -KILL "$pid" 2>/dev/null
}

# ---- PostgreSQL: primary + 1 replica --------------------------------------------------------

# pg_at PORT ARGS...: superuser psql on a node over its Unix socket (local trust), bounded.
pg_at() {
  local port=$1; shift
  timeout 60 psql -X -q -At -v ON_ERROR_STOP=1 -h "$pg_dir" -p "$port" -U postgres \
    -d postgres "$@"
}

start_postgres() {
  note "starting a PostgreSQL 15 primary on 127.0.0.1:$primary_port and a replica on" \
       "127.0.0.1:$replica_port (scripts/pgcluster.sh)"
  pg_started=1
  "$repo/scripts/pgcluster.sh" start "$pg_dir" "$primary_port" 1 >"$tmp/pgcluster.log" 2>&1 ||
    { cat "$tmp/pgcluster.log" >&2; die "scripts/pgcluster.sh start failed"; }
  if [ "$max_connections" -gt 300 ]; then
    # A standby needs max_connections >= the primary's: raise the replica's first.
    note "restarting both nodes for max_connections = $max_connections"
    local node
    for node in replica1 primary; do
      echo "max_connections = $max_connections" >>"$pg_dir/$node/postgresql.conf"
      runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$pg_dir/$node" -m fast -w -t 60 restart \
        -l "$pg_dir/$node.log" >/dev/null || die "pg_ctl restart of $node failed"
    done
  fi
  pg_at "$primary_port" \
    -c "CREATE ROLE $BENCH_USER LOGIN PASSWORD '$BENCH_PASSWORD'" \
    -c "CREATE DATABASE $BENCH_DB OWNER $BENCH_USER" \
    -c "CREATE ROLE $MONITOR_USER LOGIN PASSWORD '$MONITOR_PASSWORD' IN ROLE pg_monitor" \
    >/dev/null || die "could not create the bench and monitor roles"
  note "initialising pgbench data (scale $SCALE) on the primary"
  pgbench -i -q -s "$SCALE" -h "$pg_dir" -p "$primary_port" -U "$BENCH_USER" "$BENCH_DB" \
    >"$tmp/pgbench-init.log" 2>&1 ||
    { tail -20 "$tmp/pgbench-init.log" >&2; die "pgbench -i failed"; }
  # The replica must have replayed it all before the first run reads from it.
  local lsn deadline=$((SECONDS + 120))
  lsn=$(pg_at "$primary_port" -c "SELECT pg_current_wal_lsn()") || die "no LSN from the primary"
  until [ "$(pg_at "$replica_port" -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ]; do
    [ $SECONDS -lt $deadline ] || die "the replica did not replay up to $lsn within 120 s"
    sleep 0.2
  done
  note "replica caught up (replayed past $lsn)"
}

# Server connections of the bench role on both nodes.
bench_backends() {
  local p r
  local sql="SELECT count(*) FROM pg_stat_activity WHERE usename = '$BENCH_USER'"
  p=$(pg_at "$primary_port" -c "$sql") && r=$(pg_at "$replica_port" -c "$sql") &&
  echo $((p + r))
}

# Waits (at most 60 s) until the bench role's connections are gone from both nodes: both
# proxies close idle servers after 2 s, and a backend flushes its statistics as it exits.
wait_backends_drained() {
  local n deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ]; do
    n=$(bench_backends 2>/dev/null) || n=unknown
    [ "$n" = 0 ] && return 0
    sleep 0.1
  done
  note "warning: $n server connections of $BENCH_USER still open after 60 s"
}

# Transactions committed in the bench database on a node so far.
commits_at() {
  pg_at "$1" -c "SELECT xact_commit FROM pg_stat_database WHERE datname = '$BENCH_DB'" 2>/dev/null
}

# ---- proxies --------------------------------------------------------------------------------

write_userlist() {
  printf '"%s" "%s"\n' "$BENCH_USER" "$BENCH_PASSWORD" >"$tmp/userlist.txt"
  chown postgres: "$tmp/userlist.txt"
  chmod 600 "$tmp/userlist.txt"
}

# The same settings as bench/run.sh's with POOL_MODE=transaction, pointed at the replica.
write_pgbouncer_ini() {
  cat >"$tmp/pgbouncer.ini" <<EOF
[databases]
$BENCH_DB = host=127.0.0.1 port=$replica_port dbname=$BENCH_DB

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $pgbouncer_port
unix_socket_dir =
pidfile = $tmp/pgbouncer.pid
auth_type = scram-sha-256
auth_file = $tmp/userlist.txt
pool_mode = transaction
default_pool_size = $POOL_SIZE
max_client_conn = $max_client_conn
server_idle_timeout = 2
server_reset_query = DISCARD ALL
log_connections = 0
log_disconnections = 0
listen_backlog = 1024
ignore_startup_parameters = extra_float_digits
EOF
  chown postgres: "$tmp/pgbouncer.ini"
}

# One pgplex for (b), (c) and (d). Alias $BENCH_DB is the plain one (host/port = the
# replica) and also gives the replica service's clients their login (a service listener
# uses the alias of the database name the client asks for); alias $ROUTED_DB routes per
# statement over the cluster. admin_users lets the script read SHOW NODES / SHOW SERVICES.
write_pgplex_toml() {
  cat >"$tmp/pgplex.toml" <<EOF
[pgplex]
listen = ["127.0.0.1:$pgplex_port"]
workers = 2
max_client_conn = $max_client_conn
pool_mode = "transaction"
default_pool_size = $POOL_SIZE
auth_type = "scram-sha-256"
auth_file = "userlist.txt"
server_reset_query = "DISCARD ALL"
server_idle_timeout = "2s"
log_connections = false
log_disconnections = false
admin_users = ["$BENCH_USER"]

[clusters.$CLUSTER]
nodes = ["127.0.0.1:$primary_port", "127.0.0.1:$replica_port"]
monitor_user = "$MONITOR_USER"
monitor_password = "$MONITOR_PASSWORD"
monitor_dbname = "postgres"

[clusters.$CLUSTER.services.replica]
port = $service_port
dest = "pool"

[databases.$BENCH_DB]
host = "127.0.0.1"
port = $replica_port
dbname = "$BENCH_DB"

[databases.$ROUTED_DB]
cluster = "$CLUSTER"
dbname = "$BENCH_DB"
EOF
}

# ready PORT DB: a real query goes through within 3 s.
ready() {
  PGPASSWORD=$BENCH_PASSWORD PGCONNECT_TIMEOUT=2 timeout 3 psql -X -At -h 127.0.0.1 \
    -p "$1" -U "$BENCH_USER" -d "$2" -c "SELECT 1" >/dev/null 2>&1
}

# wait_ready NAME PID PORT DB...: true when a query goes through to every DB within 30 s.
wait_ready() {
  local name=$1 pid=$2 port=$3; shift 3
  local deadline=$((SECONDS + 30)) db
  for db in "$@"; do
    while :; do
      if ! kill -0 "$pid" 2>/dev/null; then
        failed[$name]="exited during startup"
        return 1
      fi
      ready "$port" "$db" && break
      if [ $SECONDS -ge $deadline ]; then
        failed[$name]="no working connection to $db through 127.0.0.1:$port within 30 s"
        return 1
      fi
      sleep 0.2
    done
  done
}

show_log() {
  local name=$1 log=$2 lines
  lines=$(wc -l <"$log" 2>/dev/null || echo 0)
  note "$name failed: ${failed[$name]}; its log ($lines lines) begins and ends:"
  head -n 10 "$log" 2>/dev/null | sed 's/^/    /' >&2
  [ "$lines" -gt 10 ] && { echo "    ..." >&2; tail -n 5 "$log" 2>/dev/null | sed 's/^/    /' >&2; }
}

start_pgbouncer() {
  local runner i
  write_pgbouncer_ini
  runuser -u postgres -- bash -c 'ulimit -S -n "$(ulimit -H -n)" && exec "$0" "$@"' \
    "$PGBOUNCER_BIN" "$tmp/pgbouncer.ini" >"$tmp/pgbouncer.log" 2>&1 &
  runner=$!
  for ((i = 0; i < 100; i++)); do
    [ -s "$tmp/pgbouncer.pid" ] && break
    kill -0 "$runner" 2>/dev/null || break
    sleep 0.1
  done
  pgbouncer_pid=$(cat "$tmp/pgbouncer.pid" 2>/dev/null)
  if [ -z "$pgbouncer_pid" ] || [ "$(cat "/proc/$pgbouncer_pid/comm" 2>/dev/null)" != pgbouncer ]
  then
    pgbouncer_pid=""
    failed[bouncer]="did not start"
    show_log bouncer "$tmp/pgbouncer.log"
    return
  fi
  if ! wait_ready bouncer "$pgbouncer_pid" "$pgbouncer_port" "$BENCH_DB"; then
    show_log bouncer "$tmp/pgbouncer.log"
    stop_pid "$pgbouncer_pid" pgbouncer
    pgbouncer_pid=""
  fi
}

# admin_show WHAT: pgplex's SHOW WHAT, from its management database.
admin_show() {
  PGPASSWORD=$BENCH_PASSWORD PGCONNECT_TIMEOUT=2 timeout 5 psql -X -h 127.0.0.1 \
    -p "$pgplex_port" -U "$BENCH_USER" -d pgplex -c "SHOW $1" 2>&1
}

start_pgplex() {
  local t
  if [ ! -x "$pgplex_bin" ]; then
    for t in plain service routed; do failed[$t]="$pgplex_bin is not an executable"; done
    note "pgplex failed: $pgplex_bin is not an executable (run 'make build' first)"
    return
  fi
  write_pgplex_toml
  if ! "$pgplex_bin" --check "$tmp/pgplex.toml" >"$tmp/pgplex-check.log" 2>&1; then
    for t in plain service routed; do
      failed[$t]="--check refused the generated config: $(head -1 "$tmp/pgplex-check.log")"
    done
    note "pgplex failed: ${failed[plain]}"
    return
  fi
  "$pgplex_bin" "$tmp/pgplex.toml" >"$tmp/pgplex.log" 2>&1 &
  pgplex_pid=$!
  for t in plain:$pgplex_port:$BENCH_DB service:$service_port:$BENCH_DB \
           routed:$pgplex_port:$ROUTED_DB; do
    IFS=: read -r name port db <<<"$t"
    if ! wait_ready "$name" "$pgplex_pid" "$port" "$db"; then
      show_log "$name" "$tmp/pgplex.log"
      kill -0 "$pgplex_pid" 2>/dev/null || { pgplex_pid=""; failed[plain]=${failed[$name]}
        failed[service]=${failed[$name]}; failed[routed]=${failed[$name]}; return; }
    fi
  done
  admin_show NODES >"$tmp/nodes-start.txt"
  admin_show SERVICES >>"$tmp/nodes-start.txt"
  note "pgplex (pid $pgplex_pid) sees:"
  sed 's/^/    /' "$tmp/nodes-start.txt" >&2
}

# ---- measuring ------------------------------------------------------------------------------

clock_ticks=$(getconf CLK_TCK)

# cpu_ticks PID: utime + stime of the whole process (every thread), in clock ticks.
cpu_ticks() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo ""; return; }
  stat=${stat##*\) }
  awk '{ print $12 + $13 }' <<<"$stat"
}

declare -A tps=() latency=() transactions=() cpu_s=() on_replica=() load=()
declare -A pg_query_share=() route_share=()

# PROFILE=1: perf samples pgplex from 2 s + DURATION/4 into the run (clients logged in)
# for DURATION/2 s. Self samples only: the share is what libpg_query's code (the parser and
# its JSON output) and pgplex::route:: (classifier, hints, router) spent themselves; the
# malloc, free and tolower they call count under libc, so the figure is a lower bound.
profile_start=$((2 + DURATION / 4))
profile_window=$((DURATION / 2))

# profile_from PERF_DATA KEY: the shares into the arrays.
profile_from() {
  local data=$1 key=$2 shares
  shares=$(perf report -i "$data" --no-children --sort dso,sym --stdio -g none 2>/dev/null |
    awk '/^ +[0-9.]+%/ { p = $1 + 0; total += p
           if ($2 ~ /libpg_query/) q += p
           else if ($2 == "pgplex" && /pgplex::route::/) r += p }
         END { if (total > 0) printf "%.2f %.2f", q, r }')
  [ -n "$shares" ] || { note "perf recorded nothing for $key"; return; }
  read -r "pg_query_share[$key]" "route_share[$key]" <<<"$shares"
}

skip_reason() {
  if [ "$1" = bouncer ] && [ "$2" = prepared ]; then
    echo "PgBouncer 1.18 does not support -M prepared in transaction pooling" \
         "(\"prepared statement does not exist\")"
  fi
}

# run_pgbench TARGET PROTOCOL CLIENTS KEY: one pgbench -S run; results into the arrays.
run_pgbench() {
  local target=$1 protocol=$2 clients=$3 key=$4 pid="" before="" after="" out rc
  local p0 r0 p1 r1
  case $target in
    bouncer) pid=$pgbouncer_pid ;;
    plain|service|routed) pid=$pgplex_pid ;;
  esac
  if [ -n "${failed[$target]:-}" ]; then tps[$key]=FAILED; return; fi
  if [ -n "$(skip_reason "$target" "$protocol")" ]; then tps[$key]=skipped; return; fi
  if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
    failed[$target]="process $pid is gone"
    note "$target failed: ${failed[$target]}"
    tps[$key]=FAILED
    return
  fi
  wait_backends_drained
  p0=$(commits_at "$primary_port"); r0=$(commits_at "$replica_port")
  [ -n "$pid" ] && before=$(cpu_ticks "$pid")
  local perf_data=""
  if [ "$PROFILE" = 1 ] && [ -n "$pid" ] && [ "$target" != bouncer ]; then
    perf_data=$tmp/perf-${key//\//-}.data
    perf record -q -F 499 -D $((profile_start * 1000)) -p "$pid" -o "$perf_data" \
      -- sleep $((profile_start + profile_window)) >/dev/null 2>&1 &
    perf_pid=$!
  fi
  # -n: no VACUUM before the run (the replica cannot, and pgbench -i has just done it).
  out=$(PGPASSWORD=$BENCH_PASSWORD timeout $((DURATION + 120)) pgbench -n -S \
          -M "$protocol" -j "$THREADS" -c "$clients" -T "$DURATION" -h 127.0.0.1 \
          -p "${port_of[$target]}" -U "$BENCH_USER" "${db_of[$target]}" 2>&1)
  rc=$?
  [ -n "$pid" ] && after=$(cpu_ticks "$pid")
  if [ -n "$perf_pid" ]; then
    wait "$perf_pid"
    perf_pid=""
    profile_from "$perf_data" "$key"
  fi
  load[$key]=$(cut -d' ' -f1 /proc/loadavg)
  printf '== %s %s\n%s\n' "$key" "$(date -u +%T)" "$out" >>"$tmp/pgbench-$target.log"
  tps[$key]=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | tail -1)
  latency[$key]=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' <<<"$out" | tail -1)
  transactions[$key]=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' \
                         <<<"$out" | tail -1)
  if [ $rc -ne 0 ] || [ -z "${tps[$key]}" ] || [ -z "${transactions[$key]}" ] ||
     [ "${transactions[$key]}" = 0 ]; then
    note "$target: pgbench -S -M $protocol -c $clients failed (exit $rc):"
    tail -n 5 <<<"$out" | sed 's/^/    /' >&2
    tps[$key]=FAILED
    return
  fi
  if [ -n "$pid" ] && [ -n "$before" ] && [ -n "$after" ]; then
    cpu_s[$key]=$(awk -v t=$((after - before)) -v hz="$clock_ticks" -v n="${transactions[$key]}" \
                    'BEGIN { if (n > 0) printf "%.4f", (t / hz) / (n / 1000); }')
  fi
  # Where the transactions went: the servers' statistics are complete once they have exited.
  wait_backends_drained
  p1=$(commits_at "$primary_port"); r1=$(commits_at "$replica_port")
  if [[ "$p0$r0$p1$r1" =~ ^[0-9]+$ ]]; then
    on_replica[$key]=$(awk -v p=$((p1 - p0)) -v r=$((r1 - r0)) \
                         'BEGIN { if (p + r > 0) printf "%.1f", 100 * r / (p + r); }')
    [ $((p1 - p0)) -gt 100 ] &&
      note "warning: $key: $((p1 - p0)) transactions committed on the primary" \
           "(replica: $((r1 - r0)))"
  fi
  local message="$key: tps ${tps[$key]}, latency ${latency[$key]} ms"
  [ -n "${cpu_s[$key]:-}" ] && message+=", proxy CPU ${cpu_s[$key]} s per 1000 tx"
  [ -n "${on_replica[$key]:-}" ] && message+=", ${on_replica[$key]}% of commits on the replica"
  note "$message (load ${load[$key]})"
}

# ---- report ---------------------------------------------------------------------------------

ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || b + 0 == 0) print "-";
    else printf "%.2f", a / b; }'
}

cell() {
  awk -v v="${1:-}" -v d="$2" 'BEGIN {
    if (v == "") print "-"; else if (v !~ /^[0-9.]+$/) print v; else printf "%.*f\n", d, v; }'
}

# mean_into ARRAY OUT_KEY KEY...: as bench/run.sh's: the mean over the runs that succeeded.
mean_into() {
  local array=$1 out=$2; shift 2
  local -n values_of=$array
  local values="" k skipped=1
  for k in "$@"; do
    [ "${tps[$k]:-}" = skipped ] || skipped=0
    [ -n "${values_of[$k]:-}" ] && [ "${tps[$k]:-}" != FAILED ] &&
      [ "${tps[$k]:-}" != skipped ] && values+="${values_of[$k]} "
  done
  values_of[$out]=$(awk -v v="$values" 'BEGIN { n = split(v, a, " "); if (n == 0) exit;
    s = 0; for (i = 1; i <= n; i++) s += a[i]; printf "%.6f", s / n; }')
  if [ -z "${values_of[$out]}" ]; then
    if [ "$array" != tps ]; then unset "values_of[$out]"
    elif [ $skipped = 1 ]; then values_of[$out]=skipped
    else values_of[$out]=FAILED; fi
  fi
}

row_format='%-8s %7s %5s | %8s %8s %8s %8s %8s | %5s %5s %5s %5s | %7s %7s %7s %7s'
row_format+=' | %5s %5s | %5s\n'

# round_load KEY: the mean of the 1-minute load averages read at the end of the round's runs.
round_load() {
  local t values=""
  for t in $TARGETS; do values+="${load[$t/$1]:-} "; done
  awk -v v="$values" 'BEGIN { n = split(v, a, " "); if (n == 0) { print "-"; exit; }
    s = 0; for (i = 1; i <= n; i++) s += a[i]; printf "%.1f", s / n; }'
}

row() {
  local protocol=$1 clients=$2 round=$3 k="$1/$2/$3"
  # shellcheck disable=SC2059
  printf "$row_format" "$protocol" "$clients" "$round" \
    "$(cell "${tps[direct/$k]:-}" 0)" "$(cell "${tps[plain/$k]:-}" 0)" \
    "$(cell "${tps[service/$k]:-}" 0)" "$(cell "${tps[routed/$k]:-}" 0)" \
    "$(cell "${tps[bouncer/$k]:-}" 0)" \
    "$(ratio "${tps[service/$k]:-}" "${tps[plain/$k]:-}")" \
    "$(ratio "${tps[routed/$k]:-}" "${tps[plain/$k]:-}")" \
    "$(ratio "${tps[routed/$k]:-}" "${tps[bouncer/$k]:-}")" \
    "$(ratio "${tps[plain/$k]:-}" "${tps[bouncer/$k]:-}")" \
    "$(cell "${cpu_s[plain/$k]:-}" 4)" "$(cell "${cpu_s[service/$k]:-}" 4)" \
    "$(cell "${cpu_s[routed/$k]:-}" 4)" "$(cell "${cpu_s[bouncer/$k]:-}" 4)" \
    "$(cell "${on_replica[service/$k]:-}" 1)" "$(cell "${on_replica[routed/$k]:-}" 1)" \
    "$(round_load "$k")"
}

# share KEY: libpg_query + pgplex::route:: share of pgplex's samples, in %.
share() {
  awk -v q="${pg_query_share[$1]:-}" -v r="${route_share[$1]:-}" 'BEGIN {
    if (q == "" || r == "") print "-"; else printf "%.1f", q + r; }'
}

# share_us KEY: that share of pgplex's CPU per transaction (cpu/1k of the whole run), in µs.
share_us() {
  awk -v q="${pg_query_share[$1]:-}" -v r="${route_share[$1]:-}" -v c="${cpu_s[$1]:-}" 'BEGIN {
    if (q == "" || r == "" || c == "") print "-"; else printf "%.1f", (q + r) / 100 * c * 1000; }'
}

profile_format='%-8s %7s %5s | %7s %7s %7s | %7s %7s | %7s %7s %7s\n'

profile_row() {
  local k="$1/$2/$3"
  # shellcheck disable=SC2059
  printf "$profile_format" "$1" "$2" "$3" \
    "$(share "plain/$k")" "$(share "service/$k")" "$(share "routed/$k")" \
    "$(cell "${pg_query_share[routed/$k]:-}" 1)" "$(cell "${route_share[routed/$k]:-}" 1)" \
    "$(share_us "plain/$k")" "$(share_us "service/$k")" "$(share_us "routed/$k")"
}

profile_table() {
  local protocol clients round
  echo
  echo "perf record -F 499 -p PGPLEX_PID, from ${profile_start} s into each run for" \
       "${profile_window} s, self samples: share (%) of pgplex's samples in libpg_query and in" \
       "pgplex::route:: (lpq, route), and that share of pgplex's CPU per transaction (us/tx)"
  # shellcheck disable=SC2059
  printf "$profile_format" proto clients round "b %" "c %" "d %" "d lpq %" "d rte %" \
    "b us/tx" "c us/tx" "d us/tx"
  for protocol in $PROTOCOL; do
    for clients in $CLIENTS; do
      for ((round = 1; round <= ROUNDS; round++)); do
        profile_row "$protocol" "$clients" "$round"
      done
      [ "$ROUNDS" -gt 1 ] && profile_row "$protocol" "$clients" mean
    done
  done
}

header() {
  echo "pgplex routing overhead, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine: $(nproc) CPUs, $(uname -r)," \
       "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo);" \
       "load average at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "PostgreSQL $(pg_at "$primary_port" -c 'SHOW server_version' 2>/dev/null | cut -d' ' -f1)" \
       "primary + 1 streaming replica (scripts/pgcluster.sh, fsync and synchronous_commit off)," \
       "$("$PGBOUNCER_BIN" --version 2>/dev/null | head -1)," \
       "$("$pgplex_bin" --version 2>/dev/null || echo 'pgplex (version unknown)')"
  echo "pgbench -n -S -j $THREADS -T $DURATION, scale $SCALE, all at the replica over TCP" \
       "127.0.0.1; proxies: transaction pooling, pool size $POOL_SIZE, SCRAM both sides"
  echo "a direct: the replica; b plain: pgplex alias host/port = replica;" \
       "c service: pgplex [clusters.$CLUSTER.services.replica];"
  echo "d routed: pgplex alias cluster = \"$CLUSTER\" (per-statement routing);" \
       "e bouncer: PgBouncer -> replica"
  echo "cpu/1k: proxy CPU seconds (utime+stime) per 1000 transactions;" \
       "rep%: share of the run's commits in the bench database that were on the replica;"
  echo "load: 1-minute load average at the end of the round's runs (mean; the run's own" \
       "pgbench and backends count in it)"
  local t p reason
  for t in $TARGETS; do
    [ -n "${failed[$t]:-}" ] && echo "FAILED target $t: ${failed[$t]}"
  done
  for p in $PROTOCOL; do
    reason=$(skip_reason bouncer "$p")
    [ -n "$reason" ] && echo "skipped: bouncer with -M $p: $reason"
  done
  echo
  # shellcheck disable=SC2059
  printf "$row_format" proto clients round "a direct" "b plain" "c svc" "d routed" "e bnc" \
    c/b d/b d/e b/e "b cpu" "c cpu" "d cpu" "e cpu" "c rep%" "d rep%" load
}

# ---- main -----------------------------------------------------------------------------------

start_postgres
write_userlist
start_pgbouncer
start_pgplex

runs=0
for protocol in $PROTOCOL; do for c in $CLIENTS; do for t in $TARGETS; do
  [ -z "$(skip_reason "$t" "$protocol")" ] && runs=$((runs + ROUNDS))
done; done; done
note "$runs pgbench runs of ${DURATION}s (about $((runs * (DURATION + 4) / 60 + 1)) min)"

for protocol in $PROTOCOL; do
  for clients in $CLIENTS; do
    for ((round = 1; round <= ROUNDS; round++)); do
      for t in $TARGETS; do
        run_pgbench "$t" "$protocol" "$clients" "$t/$protocol/$clients/$round"
      done
    done
  done
done

if [ -n "$pgplex_pid" ]; then
  admin_show NODES >"$tmp/nodes-end.txt"
  admin_show SERVICES >>"$tmp/nodes-end.txt"
fi

mkdir -p "$results_dir"
{
  header
  for protocol in $PROTOCOL; do
    for clients in $CLIENTS; do
      for ((round = 1; round <= ROUNDS; round++)); do
        row "$protocol" "$clients" "$round"
      done
      if [ "$ROUNDS" -gt 1 ]; then
        for t in $TARGETS; do
          keys=()
          for ((round = 1; round <= ROUNDS; round++)); do
            keys+=("$t/$protocol/$clients/$round")
          done
          mean_into latency "$t/$protocol/$clients/mean" "${keys[@]}"
          mean_into cpu_s "$t/$protocol/$clients/mean" "${keys[@]}"
          mean_into on_replica "$t/$protocol/$clients/mean" "${keys[@]}"
          mean_into load "$t/$protocol/$clients/mean" "${keys[@]}"
          mean_into pg_query_share "$t/$protocol/$clients/mean" "${keys[@]}"
          mean_into route_share "$t/$protocol/$clients/mean" "${keys[@]}"
          mean_into tps "$t/$protocol/$clients/mean" "${keys[@]}"
        done
        row "$protocol" "$clients" mean
      fi
    done
  done
  [ "$PROFILE" = 1 ] && profile_table
  if [ -f "$tmp/pgplex.log" ]; then
    echo
    echo "pgplex log: $(wc -l <"$tmp/pgplex.log") lines," \
         "$(grep -ciE 'error|warn|fatal|panic' "$tmp/pgplex.log") with error/warning/fatal/panic"
    grep -iE 'error|warn|fatal|panic' "$tmp/pgplex.log" | sort | uniq -c | sort -rn | head -10
    [ -s "$tmp/nodes-end.txt" ] && { echo "pgplex at the end:"; cat "$tmp/nodes-end.txt"; }
  fi
} | tee "$results_dir/routing.txt"
note "table written to bench/results/routing.txt"
