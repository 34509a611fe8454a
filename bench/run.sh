#!/usr/bin/env bash
# bench/run.sh PATH_TO_PGPLEX [PATH_TO_BASELINE_PGPLEX]
#
# Runs pgbench straight at PostgreSQL, through PgBouncer and through pgplex, in one
# invocation and against the same PostgreSQL 15 instance, so the three figures of a row
# come from the same machine, the same data and the same minute. For each run it also
# reads the CPU time each proxy process used (utime + stime from /proc/PID/stat, all
# threads) and reports it per 1000 transactions: on a small machine where PostgreSQL,
# pgbench and the proxy share the cores, that is the figure that decides throughput.
#
# With a second binary (a baseline, e.g. a build of an older commit), that binary runs as
# a fourth target, "pgplex-base", with the same generated config as pgplex but its own
# port (BENCH_PORT + 3). It takes its turn in every round like the other targets (in even
# rounds before pgplex, in odd rounds after it, so neither always runs first), and the
# table gains its tps, latency and CPU per 1000 transactions and the ratio
# "plex/base" = pgplex tps / baseline tps of the same round: a before/after comparison
# from one run. Without the second binary the output is as it always was.
#
# Environment overrides (defaults in brackets):
#   DURATION    seconds per pgbench run                      [15]
#   CLIENTS     client counts to run                         ["16 128 512"]
#   ROUNDS      rounds of each (mode, clients)               [2]
#   MODES       "select" (pgbench -S) and/or "tpcb" (TPC-B)  ["select tpcb"]
#   PROTOCOL    pgbench -M for every target: "simple", "prepared" and/or "extended" ["simple"]
#   SCALE       pgbench scale factor                         [10]
#   POOL_MODE   "session" or "transaction", for both proxies ["session"]
#   POOL_SIZE   server connections per pool   [largest CLIENTS in session mode, else 20]
#   THREADS     pgbench -j                                   [2]
#   BENCH_PORT  first of the four loopback ports used        [26432]
#               (PostgreSQL, PgBouncer, pgplex, baseline pgplex or spare)
#   BENCH_KEEP  1: keep the temporary directory (logs, configs) after the run
#   TLS         1: every target over TLS (pgbench sslmode=require; PostgreSQL ssl = on,
#               PgBouncer and pgplex client_tls_sslmode = require), with a self-signed
#               P-256 certificate made for the run                                [0]
#   BASE_PLAIN  1 (with TLS=1 and a baseline binary): the baseline pgplex serves its
#               clients in clear, so "plex/base" is the cost of TLS to pgplex itself  [0]
#   SYSCALLS    1: also count each proxy's syscalls with perf stat over the middle half
#               of every run, and print them per transaction after the table   [0]
#
# PgBouncer 1.18 does not support protocol-level prepared statements in transaction pooling
# (a named statement is prepared on one server connection and executed on another, and fails
# with "prepared statement ... does not exist"), so with POOL_MODE=transaction and
# PROTOCOL=prepared the PgBouncer runs are skipped and shown as "skipped", not measured.
#
# Runs as root (it starts PostgreSQL and PgBouncer as the postgres user). Everything it
# starts is stopped on exit, by PID. A target that fails to start or to run is reported as
# FAILED in the table, with the reason on stderr; the other targets still run.
set -uo pipefail

DURATION=${DURATION:-15}
CLIENTS=${CLIENTS:-"16 128 512"}
ROUNDS=${ROUNDS:-2}
MODES=${MODES:-"select tpcb"}
PROTOCOL=${PROTOCOL:-simple}
SCALE=${SCALE:-10}
POOL_MODE=${POOL_MODE:-session}
case "$POOL_MODE" in session|transaction) ;; *) echo "bench: POOL_MODE must be session or transaction" >&2; exit 2 ;; esac
THREADS=${THREADS:-2}
BENCH_PORT=${BENCH_PORT:-26432}
BENCH_KEEP=${BENCH_KEEP:-0}
SYSCALLS=${SYSCALLS:-0}

PG_BIN=/usr/lib/postgresql/15/bin
PGBOUNCER_BIN=/usr/sbin/pgbouncer
BENCH_USER=bench
BENCH_PASSWORD=bench-$RANDOM$RANDOM
BENCH_DB=bench

repo=$(cd "$(dirname "$0")/.." && pwd)
results_dir=$repo/bench/results

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

[ $# -eq 1 ] || [ $# -eq 2 ] ||
  die "usage: bench/run.sh PATH_TO_PGPLEX [PATH_TO_BASELINE_PGPLEX]"
pgplex_bin=$1
case $pgplex_bin in /*) ;; *) pgplex_bin=$PWD/$pgplex_bin ;; esac
# The baseline pgplex, if any: one more target, "pgplex-base", configured as pgplex is.
base_bin=${2:-}
[ $# -eq 2 ] && [ -z "$base_bin" ] && die "the baseline pgplex path is empty"
case $base_bin in /*|"") ;; *) base_bin=$PWD/$base_bin ;; esac
targets="direct pgbouncer pgplex"
[ -n "$base_bin" ] && targets+=" pgplex-base"
# The postgres user runs initdb, pg_ctl and PgBouncer; a cwd it cannot read makes them warn.
cd /
[ "$(id -u)" -eq 0 ] || die "run as root (PostgreSQL and PgBouncer are started as postgres)"
id postgres >/dev/null 2>&1 || die "no postgres user; install postgresql-15 (scripts/deps.sh)"
[ -x "$PG_BIN/initdb" ] || die "$PG_BIN/initdb missing; install postgresql-15"
command -v pgbench >/dev/null || die "pgbench missing; install postgresql-client-15"
for n in $DURATION $ROUNDS $SCALE $THREADS $BENCH_PORT $CLIENTS; do
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -gt 0 ] || die "not a positive integer: '$n'"
done
for m in $MODES; do
  [ "$m" = select ] || [ "$m" = tpcb ] || die "unknown mode '$m' (select, tpcb)"
done
if [ "$SYSCALLS" = 1 ]; then
  command -v perf >/dev/null || die "SYSCALLS=1 needs perf (apt-get install linux-perf)"
  [ "$DURATION" -ge 8 ] || die "SYSCALLS=1 needs DURATION >= 8 (it counts over the middle half)"
fi
[ -n "${PROTOCOL// /}" ] || die "PROTOCOL is empty (simple, prepared, extended)"
for p in $PROTOCOL; do
  case $p in
    simple|prepared|extended) ;;
    *) die "unknown protocol '$p' (simple, prepared, extended)" ;;
  esac
done

pg_port=$BENCH_PORT
pgbouncer_port=$((BENCH_PORT + 1))
pgplex_port=$((BENCH_PORT + 2))
base_port=$((BENCH_PORT + 3))
declare -A port_of=([direct]=$pg_port [pgbouncer]=$pgbouncer_port [pgplex]=$pgplex_port
                    [pgplex-base]=$base_port)
for p in $pg_port $pgbouncer_port $pgplex_port ${base_bin:+$base_port}; do
  if ss -Hltn "sport = :$p" | grep -q .; then die "port $p is in use; set BENCH_PORT"; fi
done

clients_max=0
for c in $CLIENTS; do [ "$c" -gt "$clients_max" ] && clients_max=$c; done
# Session pooling needs one server connection per client, so each proxy's pool is as large
# as the largest client count. PostgreSQL must take one proxy's full pool at a time (the
# script waits for the previous target's servers to go before the next run) plus room.
pool_size=$clients_max
# Transaction pooling shares a few server connections among all clients.
[ "$POOL_MODE" = transaction ] && pool_size=20
pool_size=${POOL_SIZE:-$pool_size}
max_connections=$(( clients_max + 20 > 700 ? clients_max + 20 : 700 ))
max_client_conn=$(( clients_max + 100 > 1000 ? clients_max + 100 : 1000 ))

# Every proxy client holds a socket and so does its server connection.
want_files=10000
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $want_files ]; then
  ulimit -n $want_files 2>/dev/null || note "could not raise ulimit -n to $want_files"
fi

tmp=$(mktemp -d /tmp/pgplex-bench.XXXXXX) || die "mktemp failed"
TLS=${TLS:-0}
BASE_PLAIN=${BASE_PLAIN:-0}
if [ "$TLS" = 1 ]; then
  command -v openssl >/dev/null || die "TLS=1 needs openssl"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -keyout "$tmp/tls.key" -out "$tmp/tls.crt" >/dev/null 2>&1 ||
    die "could not make the TLS certificate"
  chown postgres: "$tmp/tls.key" "$tmp/tls.crt"
  chmod 600 "$tmp/tls.key"
fi
chmod 755 "$tmp"
chown postgres: "$tmp"
pg_dir=$tmp/pg
pg_started_by=""        # "pgcluster" or "pg_ctl"
pgbouncer_pid=""
pgplex_pid=""
base_pid=""
perf_pid=""
declare -A failed=()    # target -> reason it cannot run at all

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  stop_pid "$perf_pid" perf
  stop_pid "$base_pid" pgplex-base
  stop_pid "$pgplex_pid" pgplex
  stop_pid "$pgbouncer_pid" pgbouncer
  case $pg_started_by in
    pgcluster) "$repo/scripts/pgcluster.sh" stop "$pg_dir" >/dev/null 2>&1 ;;
    pg_ctl) runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$pg_dir/data" -m fast -w stop \
              >/dev/null 2>&1 ;;
  esac
  if [ "$BENCH_KEEP" = 1 ]; then
    note "kept $tmp"
  else
    rm -rf "$tmp"
  fi
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

# ---- PostgreSQL ---------------------------------------------------------------------------

pg_socket_dir=""

# Superuser psql over the Unix socket (local trust); bounded like every wait here.
pg_admin() {
  timeout 60 psql -X -q -At -v ON_ERROR_STOP=1 -h "$pg_socket_dir" -p "$pg_port" -U postgres \
    -d postgres "$@"
}

start_postgres() {
  if [ -x "$repo/scripts/pgcluster.sh" ]; then
    note "starting PostgreSQL 15 on 127.0.0.1:$pg_port with scripts/pgcluster.sh"
    "$repo/scripts/pgcluster.sh" start "$pg_dir" "$pg_port" 0 >"$tmp/pgcluster.log" 2>&1 ||
      { cat "$tmp/pgcluster.log" >&2; die "scripts/pgcluster.sh start failed"; }
    pg_started_by=pgcluster
    local s
    s=$(find "$pg_dir" -maxdepth 3 -name ".s.PGSQL.$pg_port" -print -quit 2>/dev/null)
    [ -n "$s" ] || die "no Unix socket .s.PGSQL.$pg_port under $pg_dir"
    pg_socket_dir=$(dirname "$s")
  else
    note "starting PostgreSQL 15 on 127.0.0.1:$pg_port (own initdb)"
    runuser -u postgres -- "$PG_BIN/initdb" -D "$pg_dir/data" -U postgres -E UTF8 \
      --auth-local=trust --auth-host=scram-sha-256 >"$tmp/initdb.log" 2>&1 ||
      { cat "$tmp/initdb.log" >&2; die "initdb failed"; }
    cat >>"$pg_dir/data/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $pg_port
unix_socket_directories = '$pg_dir'
max_connections = $max_connections
password_encryption = 'scram-sha-256'
logging_collector = off
EOF
    runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$pg_dir/data" -l "$tmp/postgresql.log" \
      -w -t 60 start >/dev/null ||
      { tail -20 "$tmp/postgresql.log" >&2; die "pg_ctl start failed"; }
    pg_started_by=pg_ctl
    pg_socket_dir=$pg_dir
  fi
  configure_postgres
}

# The same settings whichever way PostgreSQL was started: enough connection slots for one
# proxy's full pool, and commits that do not wait for the disk (synchronous_commit and
# fsync off, as scripts/pgcluster.sh sets them), so the figures show the cost of the path
# to PostgreSQL rather than the disk's latency.
configure_postgres() {
  local current data_dir owner
  pg_admin -c "ALTER SYSTEM SET synchronous_commit = off" -c "ALTER SYSTEM SET fsync = off" \
           -c "ALTER SYSTEM SET max_connections = $max_connections" ||
    die "could not configure PostgreSQL"
  current=$(pg_admin -c "SHOW max_connections")
  if [ "$current" -lt "$max_connections" ]; then
    data_dir=$(pg_admin -c "SHOW data_directory")
    owner=$(stat -c %U "$data_dir")
    note "restarting PostgreSQL for max_connections = $max_connections"
    runuser -u "$owner" -- "$PG_BIN/pg_ctl" -D "$data_dir" -m fast -w -t 60 restart \
      -l "$tmp/postgresql-restart.log" >/dev/null || die "pg_ctl restart failed"
  else
    pg_admin -c "SELECT pg_reload_conf()" >/dev/null
  fi
  if [ "$TLS" = 1 ]; then
    pg_admin -c "ALTER SYSTEM SET ssl_cert_file = '$tmp/tls.crt'" \
             -c "ALTER SYSTEM SET ssl_key_file = '$tmp/tls.key'" -c "ALTER SYSTEM SET ssl = on" \
             -c "SELECT pg_reload_conf()" >/dev/null || die "could not turn ssl on"
  fi
  pg_admin -c "CREATE ROLE $BENCH_USER LOGIN PASSWORD '$BENCH_PASSWORD'" \
           -c "CREATE DATABASE $BENCH_DB OWNER $BENCH_USER" >/dev/null ||
    die "could not create the bench role and database"
  note "initialising pgbench data (scale $SCALE)"
  pgbench -i -q -s "$SCALE" -h "$pg_socket_dir" -p "$pg_port" -U "$BENCH_USER" "$BENCH_DB" \
    >"$tmp/pgbench-init.log" 2>&1 ||
    { tail -20 "$tmp/pgbench-init.log" >&2; die "pgbench -i failed"; }
}

# Server connections of the bench role still open (a proxy's pool, or a run's leftovers).
bench_backends() {
  pg_admin -c "SELECT count(*) FROM pg_stat_activity WHERE usename = '$BENCH_USER'"
}

# Waits (at most 60 s) until the previous target's server connections are gone: both
# proxies close idle servers after 2 s (server_idle_timeout), so PostgreSQL never has to
# hold two full pools at once.
wait_backends_drained() {
  local n deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ]; do
    n=$(bench_backends 2>/dev/null) || n=unknown
    [ "$n" = 0 ] && return 0
    sleep 0.1
  done
  note "warning: $n server connections of $BENCH_USER still open after 60 s"
}

# ---- proxies ------------------------------------------------------------------------------

write_userlist() {
  printf '"%s" "%s"\n' "$BENCH_USER" "$BENCH_PASSWORD" >"$tmp/userlist.txt"
  chown postgres: "$tmp/userlist.txt"
  chmod 600 "$tmp/userlist.txt"
}

# Both proxies get the same settings where they have the same setting: session pooling,
# SCRAM to clients from the same auth file, pool size = largest client count, connection
# logging off, idle servers closed after 2 s, server over TCP to 127.0.0.1.
write_pgbouncer_ini() {
  cat >"$tmp/pgbouncer.ini" <<EOF
[databases]
$BENCH_DB = host=127.0.0.1 port=$pg_port dbname=$BENCH_DB

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $pgbouncer_port
unix_socket_dir =
pidfile = $tmp/pgbouncer.pid
auth_type = scram-sha-256
auth_file = $tmp/userlist.txt
pool_mode = $POOL_MODE
default_pool_size = $pool_size
max_client_conn = $max_client_conn
server_idle_timeout = 2
server_reset_query = DISCARD ALL
log_connections = 0
log_disconnections = 0
listen_backlog = 1024
ignore_startup_parameters = extra_float_digits
EOF
  if [ "$TLS" = 1 ]; then
    printf '%s\n' "client_tls_sslmode = require" "client_tls_cert_file = $tmp/tls.crt" \
      "client_tls_key_file = $tmp/tls.key" >>"$tmp/pgbouncer.ini"
  fi
  chown postgres: "$tmp/pgbouncer.ini"
}

# write_pgplex_toml FILE PORT [plain]: the baseline pgplex gets the same file but for its
# port (and, with "plain", no TLS).
write_pgplex_toml() {
  local tls_lines=""
  if [ "$TLS" = 1 ] && [ "${3:-}" != plain ]; then
    tls_lines=$(printf '%s\n' 'client_tls_sslmode = "require"' \
                  "client_tls_cert_file = \"$tmp/tls.crt\"" "client_tls_key_file = \"$tmp/tls.key\"")
  fi
  cat >"$1" <<EOF
[pgplex]
$tls_lines
listen = ["127.0.0.1:$2"]
workers = 2
max_client_conn = $max_client_conn
pool_mode = "$POOL_MODE"
default_pool_size = $pool_size
auth_type = "scram-sha-256"
auth_file = "userlist.txt"
server_reset_query = "DISCARD ALL"
server_idle_timeout = "2s"
log_connections = false
log_disconnections = false

[databases.$BENCH_DB]
host = "127.0.0.1"
port = $pg_port
dbname = "$BENCH_DB"
EOF
}

# wait_ready NAME PID PORT: true when a real query goes through the proxy within 20 s.
wait_ready() {
  local name=$1 pid=$2 port=$3
  local deadline=$((SECONDS + 20))
  while [ $SECONDS -lt $deadline ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      failed[$name]="exited during startup"
      return 1
    fi
    if PGPASSWORD=$BENCH_PASSWORD PGCONNECT_TIMEOUT=2 timeout 3 psql -X -At -h 127.0.0.1 \
         -p "$port" -U "$BENCH_USER" -d "$BENCH_DB" -c "SELECT 1" >/dev/null 2>&1; then
      return 0
    fi
    sleep 0.1
  done
  failed[$name]="no working connection through 127.0.0.1:$port within 20 s"
  return 1
}

# show_log NAME LOG: why a target failed, with the start and the end of its log (a
# process that fails in a loop can write the same line thousands of times).
show_log() {
  local name=$1 log=$2 lines
  lines=$(wc -l <"$log" 2>/dev/null || echo 0)
  note "$name failed: ${failed[$name]}; its log ($lines lines) begins and ends:"
  head -n 10 "$log" 2>/dev/null | sed 's/^/    /' >&2
  if [ "$lines" -gt 20 ]; then
    echo "    ..." >&2
    tail -n 5 "$log" 2>/dev/null | sed 's/^/    /' >&2
  elif [ "$lines" -gt 10 ]; then
    tail -n $((lines - 10)) "$log" 2>/dev/null | sed 's/^/    /' >&2
  fi
}

start_pgbouncer() {
  local runner i
  write_pgbouncer_ini
  # PgBouncer refuses to run as root. runuser keeps a parent process for the PAM session,
  # so the PID to measure is PgBouncer's own, from its pidfile. runuser's pam_limits puts the
  # soft RLIMIT_NOFILE back to 1024 and PgBouncer does not raise it, which session pooling
  # at 512 clients (512 client + 512 server sockets) exceeds: raise it to the hard limit,
  # as pgplex does for itself.
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
    failed[pgbouncer]="did not start"
    show_log pgbouncer "$tmp/pgbouncer.log"
    return
  fi
  note "pgbouncer (pid $pgbouncer_pid): $(grep 'Max open files' "/proc/$pgbouncer_pid/limits" |
    awk '{ print "open files limit " $4 }')"
  if ! wait_ready pgbouncer "$pgbouncer_pid" "$pgbouncer_port"; then
    show_log pgbouncer "$tmp/pgbouncer.log"
    # A proxy that does not work must not keep taking CPU from the other targets' runs.
    stop_pid "$pgbouncer_pid" pgbouncer
    pgbouncer_pid=""
  fi
}

# start_pgplex NAME BINARY PORT PID_VARIABLE: pgplex (NAME pgplex) or the baseline
# (NAME pgplex-base), with $tmp/NAME.toml and $tmp/NAME.log; its PID into PID_VARIABLE.
start_pgplex() {
  local name=$1 bin=$2 port=$3 pid_var=$4 pid
  if [ ! -x "$bin" ]; then
    failed[$name]="$bin is not an executable (run 'make build' first)"
    note "$name failed: ${failed[$name]}"
    return
  fi
  local plain=""
  [ "$name" = pgplex-base ] && [ "$BASE_PLAIN" = 1 ] && plain=plain
  write_pgplex_toml "$tmp/$name.toml" "$port" $plain
  if ! "$bin" --check "$tmp/$name.toml" >"$tmp/$name-check.log" 2>&1; then
    failed[$name]="--check refused the generated config: $(head -1 "$tmp/$name-check.log")"
    note "$name failed: ${failed[$name]}"
    return
  fi
  "$bin" "$tmp/$name.toml" >"$tmp/$name.log" 2>&1 &
  pid=$!
  printf -v "$pid_var" '%s' "$pid"
  if ! wait_ready "$name" "$pid" "$port"; then
    show_log "$name" "$tmp/$name.log"
    # A proxy that does not work must not keep taking CPU from the other targets' runs.
    stop_pid "$pid" "$name"
    printf -v "$pid_var" '%s' ""
  fi
}

# ---- measuring ----------------------------------------------------------------------------

clock_ticks=$(getconf CLK_TCK)

# cpu_ticks PID: utime + stime of the whole process (every thread), in clock ticks.
# Fields are counted after the last ')' because the command name may hold spaces.
cpu_ticks() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo ""; return; }
  stat=${stat##*\) }
  # After "pid (comm) ", field 3 (state) is the first: utime is field 14, stime 15.
  awk '{ print $12 + $13 }' <<<"$stat"
}

declare -A tps=() latency=() transactions=() cpu_s=()

# SYSCALLS=1: perf counts every syscall the proxy's threads enter (raw_syscalls:sys_enter,
# one tracepoint) and the common ones by name, from 2 s + DURATION/4 into the run (the
# clients are logged in by then) for DURATION/2 s, which ends before pgbench does.
# Transactions in that window are the sum of pgbench's per-second progress (-P 1) over it
# (the rate varies by 2x or more from second to second on a shared 2-CPU machine).
syscalls_start=$((2 + DURATION / 4))
syscalls_window=$((DURATION / 2))
syscall_names="io_uring_enter epoll_wait recvfrom sendto read write recvmsg sendmsg futex"
declare -A syscalls_tx=() syscalls_by_name=()
perf_events=(-e raw_syscalls:sys_enter)
for name in $syscall_names; do perf_events+=(-e "syscalls:sys_enter_$name"); done

# syscalls_from PERF_CSV PGBENCH_OUTPUT KEY: syscalls per transaction, in all and by name,
# into the arrays.
syscalls_from() {
  local csv=$1 out=$2 key=$3 total name count by_name=""
  local window_tx
  # "progress: 7.0 s, 12345.6 tps, ..." covers the second that ends at 7.0 s.
  window_tx=$(awk -v from="$syscalls_start" -v to=$((syscalls_start + syscalls_window)) '
    /^progress: / { t = $2 + 0; if (t > from && t <= to + 0.01) { n += $4; seconds++ } }
    END { printf "%.0f", (seconds > 0 ? n : 0) }' <<<"$out")
  total=$(awk -F, '$3 == "raw_syscalls:sys_enter" { print $1 }' "$csv" 2>/dev/null)
  if ! [[ $total =~ ^[0-9]+$ ]] || [ "$window_tx" -eq 0 ]; then
    note "perf counted nothing for $key (see $csv with BENCH_KEEP=1)"
    return
  fi
  syscalls_tx[$key]=$(awk -v n="$total" -v t="$window_tx" 'BEGIN { printf "%.3f", n / t }')
  for name in $syscall_names; do
    count=$(awk -F, -v e="syscalls:sys_enter_$name" '$3 == e { print $1 }' "$csv")
    [[ $count =~ ^[0-9]+$ ]] && [ "$count" -gt 0 ] &&
      by_name+=$(awk -v s="$name" -v n="$count" -v t="$window_tx" \
                   'BEGIN { printf "%s %.2f, ", s, n / t }')
  done
  syscalls_by_name[$key]=${by_name%, }
}

# skip_reason TARGET PROTOCOL: why this target does not run this protocol; empty if it does.
skip_reason() {
  if [ "$1" = pgbouncer ] && [ "$POOL_MODE" = transaction ] && [ "$2" = prepared ]; then
    echo "PgBouncer 1.18 does not support -M prepared in transaction pooling" \
         "(\"prepared statement does not exist\")"
  fi
}

# run_pgbench TARGET PORT MODE PROTOCOL CLIENTS KEY: one pgbench run; results into the arrays.
run_pgbench() {
  local target=$1 port=$2 mode=$3 protocol=$4 clients=$5 key=$6 pid="" before="" after="" out rc
  local -a mode_args=()
  [ "$mode" = select ] && mode_args=(-S)
  case $target in
    pgbouncer) pid=$pgbouncer_pid ;;
    pgplex) pid=$pgplex_pid ;;
    pgplex-base) pid=$base_pid ;;
  esac
  if [ -n "${failed[$target]:-}" ]; then
    tps[$key]=FAILED
    return
  fi
  if [ -n "$(skip_reason "$target" "$protocol")" ]; then
    tps[$key]=skipped
    return
  fi
  if [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
    failed[$target]="process $pid is gone"
    note "$target failed: ${failed[$target]}"
    tps[$key]=FAILED
    return
  fi
  wait_backends_drained
  [ -n "$pid" ] && before=$(cpu_ticks "$pid")
  local perf_csv=""
  [ "$SYSCALLS" = 1 ] && mode_args+=(-P 1)
  if [ "$SYSCALLS" = 1 ] && [ -n "$pid" ]; then
    perf_csv=$tmp/perf-${key//\//-}.csv
    perf stat -x, -o "$perf_csv" -D $((syscalls_start * 1000)) "${perf_events[@]}" -p "$pid" \
      -- sleep $((syscalls_start + syscalls_window)) >/dev/null 2>&1 &
    perf_pid=$!
  fi
  local sslmode=disable
  [ "$TLS" = 1 ] && sslmode=require
  [ "$target" = pgplex-base ] && [ "$BASE_PLAIN" = 1 ] && sslmode=disable
  out=$(PGSSLMODE=$sslmode PGPASSWORD=$BENCH_PASSWORD timeout $((DURATION + 120)) \
          pgbench "${mode_args[@]}" \
          -M "$protocol" -j "$THREADS" -c "$clients" -T "$DURATION" -h 127.0.0.1 -p "$port" \
          -U "$BENCH_USER" "$BENCH_DB" 2>&1)
  rc=$?
  [ -n "$pid" ] && after=$(cpu_ticks "$pid")
  if [ -n "$perf_pid" ]; then
    wait "$perf_pid"
    perf_pid=""
  fi
  printf '%s\n' "$out" >>"$tmp/pgbench-$target.log"
  tps[$key]=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | tail -1)
  latency[$key]=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' <<<"$out" | tail -1)
  transactions[$key]=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' \
                         <<<"$out" | tail -1)
  if [ "${transactions[$key]:-}" = 0 ]; then
    note "$target: pgbench $mode -M $protocol -c $clients completed no transaction" \
         "(with many clients," \
         "logging them all in can take longer than DURATION=$DURATION s)"
    tps[$key]=FAILED
    return
  fi
  if [ $rc -ne 0 ] || [ -z "${tps[$key]}" ] || [ -z "${transactions[$key]}" ]; then
    note "$target: pgbench $mode -M $protocol -c $clients failed (exit $rc):"
    tail -n 5 <<<"$out" | sed 's/^/    /' >&2
    tps[$key]=FAILED
    return
  fi
  if [ -n "$pid" ] && [ -n "$before" ] && [ -n "$after" ]; then
    cpu_s[$key]=$(awk -v t=$((after - before)) -v hz="$clock_ticks" -v n="${transactions[$key]}" \
                    'BEGIN { if (n > 0) printf "%.4f", (t / hz) / (n / 1000); }')
  fi
  [ -n "$perf_csv" ] && syscalls_from "$perf_csv" "$out" "$key"
  note "$target $mode $protocol c=$clients: tps ${tps[$key]}, latency ${latency[$key]} ms" \
       "${cpu_s[$key]:+(proxy CPU ${cpu_s[$key]} s per 1000 transactions)}" \
       "${syscalls_tx[$key]:+(${syscalls_tx[$key]} syscalls per transaction)}"
}

# ---- report -------------------------------------------------------------------------------

ratio() {
  awk -v a="$1" -v b="$2" 'BEGIN {
    if (a !~ /^[0-9.]+$/ || b !~ /^[0-9.]+$/ || b + 0 == 0) print "-";
    else printf "%.2f", a / b; }'
}

# cell VALUE DECIMALS: a number rounded for the table, FAILED as is, "-" when missing.
cell() {
  awk -v v="${1:-}" -v d="$2" 'BEGIN {
    if (v == "") print "-"; else if (v !~ /^[0-9.]+$/) print v; else printf "%.*f\n", d, v; }'
}

# table_line MODE PROTO CLIENTS ROUND D_TPS D_LAT B_TPS B_LAT P_TPS P_LAT X_TPS X_LAT
#            PLEX/BNC PLEX/DIR PLEX/BASE B_CPU P_CPU X_CPU: one line of the table, D direct,
# B PgBouncer, P pgplex, X the baseline pgplex, whose columns are left out without one.
table_line() {
  if [ -z "$base_bin" ]; then
    printf '%-6s %-8s %7s %5s | %10s %7s | %10s %7s | %10s %7s | %8s %8s | %9s %9s\n' \
      "${@:1:10}" "${@:13:2}" "${@:16:2}"
  else
    printf '%-6s %-8s %7s %5s | %10s %7s | %10s %7s | %10s %7s | %10s %7s | %8s %8s %9s |'\
' %9s %9s %11s\n' "$@"
  fi
}

row() {
  local mode=$1 protocol=$2 clients=$3 round=$4 d=$5 b=$6 p=$7 x=$8
  table_line "$mode" "$protocol" "$clients" "$round" \
    "$(cell "${tps[$d]:-}" 1)" "$(cell "${latency[$d]:-}" 3)" \
    "$(cell "${tps[$b]:-}" 1)" "$(cell "${latency[$b]:-}" 3)" \
    "$(cell "${tps[$p]:-}" 1)" "$(cell "${latency[$p]:-}" 3)" \
    "$(cell "${tps[$x]:-}" 1)" "$(cell "${latency[$x]:-}" 3)" \
    "$(ratio "${tps[$p]:-}" "${tps[$b]:-}")" "$(ratio "${tps[$p]:-}" "${tps[$d]:-}")" \
    "$(ratio "${tps[$p]:-}" "${tps[$x]:-}")" \
    "$(cell "${cpu_s[$b]:-}" 4)" "$(cell "${cpu_s[$p]:-}" 4)" "$(cell "${cpu_s[$x]:-}" 4)"
}

# mean_into ARRAY OUT_KEY KEY...: ARRAY[OUT_KEY] = mean of ARRAY over the keys whose run
# succeeded (tps, latency or cpu_s); a tps mean with no successful run is FAILED, or
# skipped when every run was skipped.
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

header() {
  echo "pgplex benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine: $(nproc) CPUs, $(uname -r)," \
       "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
  echo "PostgreSQL $(pg_admin -c 'SHOW server_version' 2>/dev/null | cut -d' ' -f1)" \
       "(max_connections $max_connections, fsync and synchronous_commit off)," \
       "$("$PGBOUNCER_BIN" --version 2>/dev/null | head -1)," \
       "$("$pgplex_bin" --version 2>/dev/null || echo 'pgplex (version unknown)')"
  [ -n "$base_bin" ] &&
    echo "pgplex: $pgplex_bin; baseline pgplex (pgplex-base): $base_bin," \
         "$("$base_bin" --version 2>/dev/null || echo 'version unknown')"
  echo "pgbench -j $THREADS -T $DURATION, scale $SCALE, -M as in the proto column;" \
       "all targets over TCP 127.0.0.1;" \
       "proxies: $POOL_MODE pooling, pool size $pool_size, SCRAM to clients and PostgreSQL"
  if [ "$TLS" = 1 ]; then
    echo "TLS: clients of every target over TLS (sslmode=require, P-256 certificate)," \
         "$([ "$BASE_PLAIN" = 1 ] && echo "pgplex-base in clear,") proxies to PostgreSQL in clear"
  fi
  echo "tps: transactions/s (without connection time); lat: average latency in ms;"
  echo "ratios: pgplex tps / PgBouncer tps and pgplex tps / direct tps;"
  [ -n "$base_bin" ] &&
    echo "plex/base: pgplex tps / baseline pgplex tps (same config, same round)"
  echo "cpu/1k: proxy CPU seconds (utime+stime from /proc) per 1000 transactions"
  for t in $targets; do
    [ "$t" = direct ] && continue
    [ -n "${failed[$t]:-}" ] && echo "FAILED target $t: ${failed[$t]}"
    for p in $PROTOCOL; do
      reason=$(skip_reason "$t" "$p")
      [ -n "$reason" ] && echo "skipped: $t with -M $p: $reason"
    done
  done
  echo
  table_line mode proto clients round "direct tps" lat "bouncer tps" lat "pgplex tps" lat \
    "base tps" lat plex/bnc plex/dir plex/base "bnc cpu/1k" "plex cpu/1k" "base cpu/1k"
}

# syscalls_line MODE PROTO CLIENTS ROUND B P X BY_NAME: X (the baseline) left out without one.
syscalls_line() {
  if [ -z "$base_bin" ]; then
    printf '%-6s %-8s %7s %5s | %10s %10s | %s\n' "${@:1:6}" "$8"
  else
    printf '%-6s %-8s %7s %5s | %10s %10s %10s | %s\n' "$@"
  fi
}

syscalls_row() {
  local mode=$1 protocol=$2 clients=$3 round=$4 b=$5 p=$6 x=$7 by_name=""
  [ -n "${syscalls_by_name[$b]:-}" ] && by_name="PgBouncer: ${syscalls_by_name[$b]}"
  [ -n "${syscalls_by_name[$p]:-}" ] && by_name+="${by_name:+; }pgplex: ${syscalls_by_name[$p]}"
  [ -n "${syscalls_by_name[$x]:-}" ] &&
    by_name+="${by_name:+; }pgplex-base: ${syscalls_by_name[$x]}"
  syscalls_line "$mode" "$protocol" "$clients" "$round" \
    "$(cell "${syscalls_tx[$b]:-}" 2)" "$(cell "${syscalls_tx[$p]:-}" 2)" \
    "$(cell "${syscalls_tx[$x]:-}" 2)" "$by_name"
}

syscalls_table() {
  local mode protocol clients round k
  echo
  echo "syscalls per transaction: perf stat -e raw_syscalls:sys_enter -p PROXY_PID, from" \
       "${syscalls_start} s into each run for ${syscalls_window} s; transactions: pgbench's" \
       "per-second progress (-P 1) summed over that window; by syscall:" \
       "syscalls:sys_enter_NAME per transaction"
  syscalls_line mode proto clients round "bnc sys/tx" "plex sys/tx" "base sys/tx" "by syscall"
  for mode in $MODES; do
    for protocol in $PROTOCOL; do
      for clients in $CLIENTS; do
        for ((round = 1; round <= ROUNDS; round++)); do
          k="$mode/$protocol/$clients/$round"
          syscalls_row "$mode" "$protocol" "$clients" "$round" "pgbouncer/$k" "pgplex/$k" \
            "pgplex-base/$k"
        done
        if [ "$ROUNDS" -gt 1 ]; then
          k="$mode/$protocol/$clients/mean"
          syscalls_row "$mode" "$protocol" "$clients" mean "pgbouncer/$k" "pgplex/$k" \
            "pgplex-base/$k"
        fi
      done
    done
  done
}

# ---- main ---------------------------------------------------------------------------------

start_postgres
write_userlist
start_pgbouncer
start_pgplex pgplex "$pgplex_bin" "$pgplex_port" pgplex_pid
[ -n "$base_bin" ] && start_pgplex pgplex-base "$base_bin" "$base_port" base_pid

runs=0
for mode in $MODES; do for protocol in $PROTOCOL; do for c in $CLIENTS; do
  for t in $targets; do
    [ -z "$(skip_reason "$t" "$protocol")" ] && runs=$((runs + ROUNDS))
  done
done; done; done
note "$runs pgbench runs of ${DURATION}s (about $((runs * (DURATION + 5) / 60)) min)"

for mode in $MODES; do
  for protocol in $PROTOCOL; do
    for clients in $CLIENTS; do
      for ((round = 1; round <= ROUNDS; round++)); do
        # Targets alternate within each round so that drift (caches, thermal, autovacuum)
        # spreads over all of them instead of favouring whichever ran first. The baseline
        # pgplex runs after pgplex in odd rounds and before it in even ones.
        order=$targets
        [ -n "$base_bin" ] && [ $((round % 2)) -eq 0 ] &&
          order="direct pgbouncer pgplex-base pgplex"
        for t in $order; do
          run_pgbench "$t" "${port_of[$t]}" "$mode" "$protocol" "$clients" \
            "$t/$mode/$protocol/$clients/$round"
        done
      done
    done
  done
done

mkdir -p "$results_dir"
{
  header
  for mode in $MODES; do
    for protocol in $PROTOCOL; do
      for clients in $CLIENTS; do
        for ((round = 1; round <= ROUNDS; round++)); do
          k="$mode/$protocol/$clients/$round"
          row "$mode" "$protocol" "$clients" "$round" "direct/$k" "pgbouncer/$k" "pgplex/$k" \
            "pgplex-base/$k"
        done
        if [ "$ROUNDS" -gt 1 ]; then
          for t in $targets; do
            keys=()
            for ((round = 1; round <= ROUNDS; round++)); do
              keys+=("$t/$mode/$protocol/$clients/$round")
            done
            mean_into latency "$t/$mode/$protocol/$clients/mean" "${keys[@]}"
            mean_into cpu_s "$t/$mode/$protocol/$clients/mean" "${keys[@]}"
            mean_into syscalls_tx "$t/$mode/$protocol/$clients/mean" "${keys[@]}"
            mean_into tps "$t/$mode/$protocol/$clients/mean" "${keys[@]}"
          done
          k="$mode/$protocol/$clients/mean"
          row "$mode" "$protocol" "$clients" mean "direct/$k" "pgbouncer/$k" "pgplex/$k" \
            "pgplex-base/$k"
        fi
      done
    done
  done
  [ "$SYSCALLS" = 1 ] && syscalls_table
} | tee "$results_dir/latest.txt"
note "table written to bench/results/latest.txt"
