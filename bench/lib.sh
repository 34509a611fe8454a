# bench/lib.sh: the helpers bench/run.sh and bench/routing.sh share. Sourced, not run.
#
# It sets the role and database pgbench uses (BENCH_USER, BENCH_PASSWORD, BENCH_DB), the
# defaults of SCALE, THREADS, BENCH_KEEP and TLS, and repo (the repository's root);
# bench_prepare makes $tmp. With TLS=1 a script calls bench_make_tls_cert.
# Everything a script starts goes through bench_track, so the EXIT trap set by
# bench_install_cleanup stops exactly those PIDs (and the PostgreSQL under $pg_dir).
# shellcheck shell=bash
# The arrays and variables set here are read by the scripts that source this file.
# shellcheck disable=SC2034

PG_BIN=/usr/lib/postgresql/15/bin
PGBOUNCER_BIN=${PGBOUNCER_BIN:-/usr/sbin/pgbouncer}
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
results_dir=$repo/bench/results
clock_ticks=$(getconf CLK_TCK)

declare -A failed=()        # target -> why it cannot run at all
declare -A tps=() latency=() transactions=() cpu_s=()
declare -a bench_pids=()    # "PID NAME" of every process started, in start order
pg_dir=""                   # PostgreSQL's directory (scripts/pgcluster.sh), once started
pg_started=0
perf_pid=""                 # a perf started by start_perf, while it runs
BENCH_KEEP=${BENCH_KEEP:-0}
TLS=${TLS:-0}
SCALE=${SCALE:-10}              # pgbench -i -s
THREADS=${THREADS:-2}           # pgbench -j
BENCH_USER=bench                # the role and database pgbench uses
BENCH_PASSWORD=bench-$RANDOM$RANDOM
BENCH_DB=bench

die() { echo "bench: $*" >&2; exit 1; }
note() { echo "bench: $*" >&2; }

# ---- checks -------------------------------------------------------------------------------

# bench_check_host: root, a postgres user, PostgreSQL 15, pgbench, scripts/pgcluster.sh.
bench_check_host() {
  [ "$(id -u)" -eq 0 ] || die "run as root (PostgreSQL and PgBouncer are started as postgres)"
  id postgres >/dev/null 2>&1 || die "no postgres user; install postgresql-15 (scripts/deps.sh)"
  [ -x "$PG_BIN/initdb" ] || die "$PG_BIN/initdb missing; install postgresql-15"
  [ -x "$repo/scripts/pgcluster.sh" ] || die "scripts/pgcluster.sh missing"
  command -v pgbench >/dev/null || die "pgbench missing; install postgresql-client-15"
}

# check_positive INT...: every argument a positive integer.
check_positive() {
  local n
  for n in "$@"; do
    if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -eq 0 ]; then die "not a positive integer: '$n'"; fi
  done
}

check_protocol() {
  case $1 in
    simple|prepared|extended) ;;
    *) die "unknown protocol '$1' (simple, prepared, extended)" ;;
  esac
}

# check_ports_free PORT...: nothing listens on any of them.
check_ports_free() {
  local p
  for p in "$@"; do
    if ss -Hltn "sport = :$p" | grep -q .; then die "port $p is in use; set BENCH_PORT"; fi
  done
}

# raise_open_files: every proxy client holds a socket and so does its server connection.
raise_open_files() {
  local want=10000
  if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $want ]; then
    ulimit -n $want 2>/dev/null || note "could not raise ulimit -n to $want"
  fi
}

# ---- the temporary directory, the processes and cleanup ----------------------------------

# bench_make_tmp PREFIX: $tmp, readable by the postgres user (it runs PostgreSQL, PgBouncer).
bench_make_tmp() {
  tmp=$(mktemp -d "/tmp/$1.XXXXXX") || die "mktemp failed"
  chmod 755 "$tmp"
  chown postgres: "$tmp"
  pg_dir=$tmp/pg
}

# bench_make_tls_cert: a self-signed P-256 certificate for the run, in $tmp/tls.{crt,key}.
bench_make_tls_cert() {
  command -v openssl >/dev/null || die "TLS=1 needs openssl"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -keyout "$tmp/tls.key" -out "$tmp/tls.crt" >/dev/null 2>&1 ||
    die "could not make the TLS certificate"
  chown postgres: "$tmp/tls.key" "$tmp/tls.crt"
  chmod 600 "$tmp/tls.key"
}

# bench_track PID NAME: stop PID on exit.
bench_track() { bench_pids+=("$1 $2"); }

# bench_untrack PID: PID was stopped (or is gone) already; never signal it again.
bench_untrack() {
  local i
  for i in "${!bench_pids[@]}"; do
    [ "${bench_pids[$i]%% *}" = "$1" ] && unset "bench_pids[$i]"
  done
  return 0
}

# stop_pid PID NAME: SIGTERM, then SIGKILL after 10 s. Only ever a PID this script started.
stop_pid() {
  local pid=$1 name=$2 i
  [ -n "$pid" ] || return 0
  bench_untrack "$pid"
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  note "$name (pid $pid) did not stop in 10 s; SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}

# The EXIT trap: every tracked PID, last started first, then PostgreSQL, then $tmp.
bench_cleanup() {
  local rc=$? i entry
  local -a indices
  trap - EXIT INT TERM
  set +e
  indices=("${!bench_pids[@]}")
  for ((i = ${#indices[@]} - 1; i >= 0; i--)); do
    entry=${bench_pids[${indices[$i]}]:-}
    [ -n "$entry" ] && stop_pid "${entry%% *}" "${entry#* }"
  done
  [ "$pg_started" = 1 ] && "$repo/scripts/pgcluster.sh" stop "$pg_dir" >/dev/null 2>&1
  if [ -n "${tmp:-}" ]; then
    if [ "$BENCH_KEEP" = 1 ]; then note "kept $tmp"; else rm -rf "$tmp"; fi
  fi
  exit "$rc"
}

bench_install_cleanup() {
  trap bench_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# bench_prepare PREFIX: the open-files limit raised, $tmp made, the EXIT trap set.
bench_prepare() {
  raise_open_files
  bench_make_tmp "$1"
  bench_install_cleanup
}

# start_perf ARGS...: perf ARGS in the background (it stops by itself), into perf_pid.
start_perf() {
  perf "$@" >/dev/null 2>&1 &
  perf_pid=$!
  bench_track "$perf_pid" perf
}

# wait_perf: waits for the perf started by start_perf, if any.
wait_perf() {
  [ -n "${perf_pid:-}" ] || return 0
  wait "$perf_pid" || true
  bench_untrack "$perf_pid"
  perf_pid=""
}

# ---- PostgreSQL ---------------------------------------------------------------------------

# pg_at PORT ARGS...: superuser psql on a node over its Unix socket (local trust), bounded.
pg_at() {
  local port=$1; shift
  timeout 60 psql -X -q -At -v ON_ERROR_STOP=1 -h "$pg_dir" -p "$port" -U postgres \
    -d postgres "$@"
}

# start_postgres PORT REPLICAS MAX_CONNECTIONS: a PostgreSQL 15 primary on PORT and REPLICAS
# streaming replicas on PORT+1.. (scripts/pgcluster.sh: fsync and synchronous_commit off,
# SCRAM for TCP logins), with at least MAX_CONNECTIONS connection slots on every node, the
# bench role and database, and pgbench's tables (scale $SCALE) on the primary.
start_postgres() {
  local port=$1 replicas=$2 max_connections=$3 node current i
  note "starting PostgreSQL 15 on 127.0.0.1:$port with $replicas replica(s) (scripts/pgcluster.sh)"
  pg_started=1
  "$repo/scripts/pgcluster.sh" start "$pg_dir" "$port" "$replicas" >"$tmp/pgcluster.log" 2>&1 ||
    { cat "$tmp/pgcluster.log" >&2; die "scripts/pgcluster.sh start failed"; }
  current=$(pg_at "$port" -c "SHOW max_connections") || die "PostgreSQL does not answer"
  if [ "$current" -lt "$max_connections" ]; then
    # A standby needs max_connections >= the primary's: raise the replicas' first.
    note "restarting PostgreSQL for max_connections = $max_connections"
    for ((i = replicas; i >= 0; i--)); do
      node=primary
      [ "$i" -gt 0 ] && node=replica$i
      echo "max_connections = $max_connections" >>"$pg_dir/$node/postgresql.conf"
      runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$pg_dir/$node" -m fast -w -t 60 restart \
        -l "$pg_dir/$node.log" >/dev/null || die "pg_ctl restart of $node failed"
    done
  fi
  if [ "$TLS" = 1 ]; then
    pg_at "$port" -c "ALTER SYSTEM SET ssl_cert_file = '$tmp/tls.crt'" \
      -c "ALTER SYSTEM SET ssl_key_file = '$tmp/tls.key'" -c "ALTER SYSTEM SET ssl = on" \
      -c "SELECT pg_reload_conf()" >/dev/null || die "could not turn ssl on"
  fi
  pg_at "$port" -c "CREATE ROLE $BENCH_USER LOGIN PASSWORD '$BENCH_PASSWORD'" \
    -c "CREATE DATABASE $BENCH_DB OWNER $BENCH_USER" >/dev/null ||
    die "could not create the bench role and database"
  note "initialising pgbench data (scale $SCALE)"
  pgbench -i -q -s "$SCALE" -h "$pg_dir" -p "$port" -U "$BENCH_USER" "$BENCH_DB" \
    >"$tmp/pgbench-init.log" 2>&1 ||
    { tail -20 "$tmp/pgbench-init.log" >&2; die "pgbench -i failed"; }
}

pg_version() {
  pg_at "$1" -c 'SHOW server_version' 2>/dev/null | cut -d' ' -f1
}

# bench_backends PORT...: server connections of the bench role still open on those nodes.
bench_backends() {
  local port n total=0
  for port in "$@"; do
    n=$(pg_at "$port" -c "SELECT count(*) FROM pg_stat_activity WHERE usename = '$BENCH_USER'") ||
      return 1
    total=$((total + n))
  done
  echo "$total"
}

# wait_backends_drained PORT...: waits (at most 60 s) until the bench role's server
# connections are gone from those nodes. The proxies close idle servers after 2 s, so
# PostgreSQL never holds two full pools, and a backend flushes its statistics as it exits.
wait_backends_drained() {
  local n deadline=$((SECONDS + 60))
  while [ $SECONDS -lt $deadline ]; do
    n=$(bench_backends "$@" 2>/dev/null) || n=unknown
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

# The proxies get the same settings where they have the same setting: SCRAM to clients from
# the same auth file, the same pool mode and size, connection logging off, idle servers
# closed after 2 s, DISCARD ALL on release, the server over TCP to 127.0.0.1.

# write_pgbouncer_ini LISTEN_PORT SERVER_PORT POOL_MODE POOL_SIZE MAX_CLIENT_CONN
write_pgbouncer_ini() {
  cat >"$tmp/pgbouncer.ini" <<EOF
[databases]
$BENCH_DB = host=127.0.0.1 port=$2 dbname=$BENCH_DB

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $1
unix_socket_dir =
pidfile = $tmp/pgbouncer.pid
auth_type = scram-sha-256
auth_file = $tmp/userlist.txt
pool_mode = $3
default_pool_size = $4
max_client_conn = $5
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

# pgplex_toml_head LISTEN_PORT POOL_MODE POOL_SIZE MAX_CLIENT_CONN [plain]: the [pgplex]
# section on stdout; "plain" leaves TLS out. The caller appends its databases.
pgplex_toml_head() {
  echo "[pgplex]"
  if [ "$TLS" = 1 ] && [ "${5:-}" != plain ]; then
    printf '%s\n' 'client_tls_sslmode = "require"' \
      "client_tls_cert_file = \"$tmp/tls.crt\"" "client_tls_key_file = \"$tmp/tls.key\""
  fi
  cat <<EOF
listen = ["127.0.0.1:$1"]
workers = 2
max_client_conn = $4
pool_mode = "$2"
default_pool_size = $3
auth_type = "scram-sha-256"
auth_file = "userlist.txt"
server_reset_query = "DISCARD ALL"
server_idle_timeout = "2s"
log_connections = false
log_disconnections = false
EOF
}

# ready PORT DB: a real query goes through within 3 s.
ready() {
  PGPASSWORD=$BENCH_PASSWORD PGCONNECT_TIMEOUT=2 timeout 3 psql -X -At -h 127.0.0.1 \
    -p "$1" -U "$BENCH_USER" -d "$2" -c "SELECT 1" >/dev/null 2>&1
}

# wait_ready NAME PID PORT DB...: true when a query goes through to every DB within 30 s
# (logins through a proxy that is still starting, on a loaded 2-CPU machine).
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
      sleep 0.1
    done
  done
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
  return 0
}

# start_pgbouncer LISTEN_PORT: PgBouncer with $tmp/pgbouncer.ini (write_pgbouncer_ini),
# as target "pgbouncer"; its PID into pgbouncer_pid, empty if it failed.
start_pgbouncer() {
  local port=$1 runner i
  pgbouncer_pid=""
  # PgBouncer refuses to run as root. runuser keeps a parent process for the PAM session,
  # so the PID to measure is PgBouncer's own, from its pidfile. runuser's pam_limits puts the
  # soft RLIMIT_NOFILE back to 1024 and PgBouncer does not raise it, which session pooling
  # at 512 clients (512 client + 512 server sockets) exceeds: raise it to the hard limit,
  # as pgplex does for itself.
  # shellcheck disable=SC2016
  runuser -u postgres -- bash -c 'ulimit -S -n "$(ulimit -H -n)" && exec "$0" "$@"' \
    "$PGBOUNCER_BIN" "$tmp/pgbouncer.ini" >"$tmp/pgbouncer.log" 2>&1 &
  runner=$!
  bench_track "$runner" runuser-pgbouncer
  for ((i = 0; i < 100; i++)); do
    [ -s "$tmp/pgbouncer.pid" ] && break
    kill -0 "$runner" 2>/dev/null || break
    sleep 0.1
  done
  pgbouncer_pid=$(cat "$tmp/pgbouncer.pid" 2>/dev/null) || pgbouncer_pid=""
  if [ -z "$pgbouncer_pid" ] || [ "$(cat "/proc/$pgbouncer_pid/comm" 2>/dev/null)" != pgbouncer ]
  then
    pgbouncer_pid=""
    failed[pgbouncer]="did not start"
    show_log pgbouncer "$tmp/pgbouncer.log"
    return 0
  fi
  bench_track "$pgbouncer_pid" pgbouncer
  note "pgbouncer (pid $pgbouncer_pid): $(grep 'Max open files' "/proc/$pgbouncer_pid/limits" |
    awk '{ print "open files limit " $4 }')"
  if ! wait_ready pgbouncer "$pgbouncer_pid" "$port" "$BENCH_DB"; then
    show_log pgbouncer "$tmp/pgbouncer.log"
    # A proxy that does not work must not keep taking CPU from the other targets' runs.
    stop_pid "$pgbouncer_pid" pgbouncer
    pgbouncer_pid=""
  fi
}

# start_pgplex NAME BINARY TOML PID_VARIABLE PORT:DB...: pgplex (--check first) with TOML,
# logging to $tmp/NAME.log, as target NAME; ready once a query goes through every PORT:DB.
# Its PID into PID_VARIABLE, empty if it failed (the reason in failed[NAME]).
start_pgplex() {
  local name=$1 bin=$2 toml=$3 pid_var=$4 pid target port db; shift 4
  printf -v "$pid_var" '%s' ""
  if [ ! -x "$bin" ]; then
    failed[$name]="$bin is not an executable (run 'make build' first)"
    note "$name failed: ${failed[$name]}"
    return 0
  fi
  if ! "$bin" --check "$toml" >"$tmp/$name-check.log" 2>&1; then
    failed[$name]="--check refused the generated config: $(head -1 "$tmp/$name-check.log")"
    note "$name failed: ${failed[$name]}"
    return 0
  fi
  "$bin" "$toml" >"$tmp/$name.log" 2>&1 &
  pid=$!
  bench_track "$pid" "$name"
  for target in "$@"; do
    IFS=: read -r port db <<<"$target"
    if ! wait_ready "$name" "$pid" "$port" "$db"; then
      show_log "$name" "$tmp/$name.log"
      # A proxy that does not work must not keep taking CPU from the other targets' runs.
      stop_pid "$pid" "$name"
      return 0
    fi
  done
  printf -v "$pid_var" '%s' "$pid"
}

# skip_reason TARGET PROTOCOL POOL_MODE: why this target does not run this protocol; empty
# if it does.
skip_reason() {
  if [ "$1" = pgbouncer ] && [ "$3" = transaction ] && [ "$2" = prepared ]; then
    echo "PgBouncer 1.18 does not support -M prepared in transaction pooling" \
         "(\"prepared statement does not exist\")"
  fi
  return 0
}

# ---- measuring ----------------------------------------------------------------------------

# cpu_ticks PID: utime + stime of the whole process (every thread), in clock ticks.
# Fields are counted after the last ')' because the command name may hold spaces.
cpu_ticks() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || { echo ""; return 0; }
  stat=${stat##*\) }
  # After "pid (comm) ", field 3 (state) is the first: utime is field 14, stime 15.
  awk '{ print $12 + $13 }' <<<"$stat"
}

# measure_pgbench TARGET KEY PID SSLMODE SECONDS PGBENCH_ARGS...: one pgbench -T SECONDS run
# (bounded by SECONDS + 120 s), its output appended to $tmp/pgbench-TARGET.log and kept in pgbench_out;
# tps, latency (average, ms), transactions and, with a PID, cpu_s (the process's CPU seconds
# per 1000 transactions) into the arrays. False, with tps[KEY]=FAILED and the reason on
# stderr, if the run failed or completed no transaction.
measure_pgbench() {
  local target=$1 key=$2 pid=$3 sslmode=$4 seconds=$5 before="" after="" rc=0
  shift 5
  [ -n "$pid" ] && before=$(cpu_ticks "$pid")
  pgbench_out=$(PGSSLMODE=$sslmode PGPASSWORD=$BENCH_PASSWORD timeout $((seconds + 120)) \
                  pgbench -T "$seconds" "$@" 2>&1) || rc=$?
  [ -n "$pid" ] && after=$(cpu_ticks "$pid")
  printf '== %s %s\n%s\n' "$key" "$(date -u +%T)" "$pgbench_out" >>"$tmp/pgbench-$target.log"
  tps[$key]=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$pgbench_out" | tail -1)
  latency[$key]=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' <<<"$pgbench_out" |
                    tail -1)
  transactions[$key]=$(sed -n \
    's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$pgbench_out" | tail -1)
  if [ "${transactions[$key]}" = 0 ]; then
    note "$target: $key completed no transaction (with many clients, logging them all in" \
         "can take longer than the run)"
    tps[$key]=FAILED
    return 1
  fi
  if [ $rc -ne 0 ] || [ -z "${tps[$key]}" ] || [ -z "${transactions[$key]}" ]; then
    note "$target: $key failed (pgbench exit $rc):"
    tail -n 5 <<<"$pgbench_out" | sed 's/^/    /' >&2
    tps[$key]=FAILED
    return 1
  fi
  if [ -n "$before" ] && [ -n "$after" ]; then
    cpu_s[$key]=$(awk -v t=$((after - before)) -v hz="$clock_ticks" -v n="${transactions[$key]}" \
                    'BEGIN { if (n > 0) printf "%.4f", (t / hz) / (n / 1000); }')
  fi
  return 0
}

# target_alive TARGET KEY PID: false, with tps[KEY]=FAILED, if TARGET failed to start or
# its process has gone since.
target_alive() {
  local target=$1 key=$2 pid=$3
  if [ -z "${failed[$target]:-}" ] && [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
    failed[$target]="process $pid is gone"
    note "$target failed: ${failed[$target]}"
  fi
  if [ -n "${failed[$target]:-}" ]; then
    tps[$key]=FAILED
    return 1
  fi
  return 0
}

# ---- report -------------------------------------------------------------------------------

# ratio A B: A / B to two decimals, "-" unless both are numbers and B is not 0.
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

# mean_into ARRAY OUT_KEY KEY...: ARRAY[OUT_KEY] = mean of ARRAY over the keys whose run
# succeeded; a tps mean with no successful run is FAILED, or skipped when every run was
# skipped. Call it for tps last (the others look at tps of the rounds).
# shellcheck disable=SC2004
mean_into() {
  local array=$1 out=$2; shift 2
  local -n values_of=$array
  local values="" k skipped=1
  for k in "$@"; do
    [ "${tps[$k]:-}" = skipped ] || skipped=0
    if [ -n "${values_of[$k]:-}" ] && [ "${tps[$k]:-}" != FAILED ] &&
       [ "${tps[$k]:-}" != skipped ]; then
      values+="${values_of[$k]} "
    fi
  done
  values_of[$out]=$(awk -v v="$values" 'BEGIN { n = split(v, a, " "); if (n == 0) exit;
    s = 0; for (i = 1; i <= n; i++) s += a[i]; printf "%.6f", s / n; }')
  if [ -z "${values_of[$out]}" ]; then
    if [ "$array" != tps ]; then unset "values_of[$out]"
    elif [ $skipped = 1 ]; then values_of[$out]=skipped
    else values_of[$out]=FAILED; fi
  fi
  return 0
}

# machine_line: the header line that says what the figures were measured on.
machine_line() {
  echo "machine: $(nproc) CPUs, $(uname -r)," \
       "$(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
}

# version_of BINARY ARGS...: the first line of its version output, or "BINARY (version unknown)".
version_of() {
  local v
  v=$("$@" 2>/dev/null | head -1) || true
  echo "${v:-$1 (version unknown)}"
}
