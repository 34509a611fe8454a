#!/usr/bin/env bash
# bench/run.sh [PATH_TO_PGPLEX [PATH_TO_BASELINE_PGPLEX]]     (make bench)
#
# Runs pgbench straight at PostgreSQL, through pgplex and through every peer pooler that is
# installed (PgBouncer from Debian's package; Odyssey if an `odyssey` binary is found), in
# one invocation and against the same PostgreSQL 15 instance, so the figures of a row come
# from the same machine, the same data and the same minute, and prints one table: a row per
# cell (MODE-PROTOCOL-CLIENTS) with each target's tps, pgplex's tps over the best peer's,
# pgplex's CPU per transaction over that peer's (utime + stime of the process from
# /proc/PID/stat, all threads), and p50/p99 latency per transaction (pgbench --log) for
# pgplex, the peers and direct at the client counts in BENCH_LATENCY_CLIENTS.
#
# pgplex: the first argument, else $PGPLEX, else build/pgplex. With a second binary (a
# baseline, e.g. a build of an older commit), that binary runs as one more target,
# "pgplex-base", with pgplex's generated config but its own port, next to pgplex in every
# round (after it in odd rounds, before it in even ones), and the table gains its tps and
# "plex/base" = pgplex tps / baseline tps.
#
# Environment overrides (defaults in brackets):
#   BENCH_SECONDS  seconds per pgbench run (DURATION is still read)                   [15]
#   BENCH_ROUNDS   rounds of each cell (ROUNDS is still read)                          [2]
#   BENCH_CELLS    cells, MODE-PROTOCOL-CLIENTS; MODE select (pgbench -S) or tpcb (TPC-B),
#                  PROTOCOL simple, prepared or extended (pgbench -M)
#                  ["select-simple-16 select-simple-128 select-simple-512
#                    select-prepared-16 select-prepared-128 tpcb-simple-128"]
#   BENCH_LATENCY_CLIENTS  client counts whose runs log every transaction (pgbench --log)
#                  for p50/p99                                                 ["16 128"]
#   SCALE          pgbench scale factor                                                [10]
#   POOL_MODE      "session" or "transaction", for every proxy                  ["session"]
#   POOL_SIZE      server connections per pool  [largest client count in session mode, else 20]
#   THREADS        pgbench -j                                                           [2]
#   BENCH_PORT     PostgreSQL's port; PgBouncer +1, pgplex +2, baseline +3, Odyssey +4 [26432]
#   BENCH_KEEP     1: keep the temporary directory (logs, configs) after the run
#   ODYSSEY_BIN    Odyssey's binary                              [`command -v odyssey`]
#   TLS            1: every target's clients over TLS (pgbench sslmode=require; PostgreSQL
#                  ssl = on, proxies client_tls_sslmode = require), self-signed P-256    [0]
#   BASE_PLAIN     1 (with TLS=1 and a baseline): the baseline serves its clients in clear [0]
#   SYSCALLS       1: also count each proxy's syscalls with perf stat over the middle half
#                  of every run, and print them per transaction after the table         [0]
#
# Smoke run: BENCH_SECONDS=2 BENCH_ROUNDS=1 BENCH_CELLS=select-simple-16 bench/run.sh
#
# PgBouncer 1.18 does not support protocol-level prepared statements in transaction pooling,
# so with POOL_MODE=transaction its -M prepared runs are "skipped", not measured.
#
# Runs as root (it starts PostgreSQL and PgBouncer as the postgres user). Everything it
# starts is stopped on exit, by PID. A target that fails to start or to run is reported as
# FAILED in the table, with the reason on stderr; the other targets still run.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

BENCH_SECONDS=${BENCH_SECONDS:-${DURATION:-15}}
BENCH_ROUNDS=${BENCH_ROUNDS:-${ROUNDS:-2}}
BENCH_CELLS=${BENCH_CELLS:-"select-simple-16 select-simple-128 select-simple-512
  select-prepared-16 select-prepared-128 tpcb-simple-128"}
BENCH_LATENCY_CLIENTS=${BENCH_LATENCY_CLIENTS:-"16 128"}
POOL_MODE=${POOL_MODE:-session}
BENCH_PORT=${BENCH_PORT:-26432}
SYSCALLS=${SYSCALLS:-0}
BASE_PLAIN=${BASE_PLAIN:-0}
ODYSSEY_BIN=${ODYSSEY_BIN:-$(command -v odyssey || true)}

[ $# -le 2 ] || die "usage: bench/run.sh [PATH_TO_PGPLEX [PATH_TO_BASELINE_PGPLEX]]"
pgplex_bin=${1:-${PGPLEX:-$repo/build/pgplex}}
case $pgplex_bin in /*) ;; *) pgplex_bin=$PWD/$pgplex_bin ;; esac
base_bin=${2:-}
[ $# -eq 2 ] && [ -z "$base_bin" ] && die "the baseline pgplex path is empty"
case $base_bin in /*|"") ;; *) base_bin=$PWD/$base_bin ;; esac
# The postgres user runs initdb, pg_ctl and PgBouncer; a cwd it cannot read makes them warn.
cd /

case "$POOL_MODE" in session|transaction) ;; *) die "POOL_MODE must be session or transaction" ;; esac
bench_check_host
check_positive "$BENCH_SECONDS" "$BENCH_ROUNDS" "$SCALE" "$THREADS" "$BENCH_PORT"
# shellcheck disable=SC2086
check_positive $BENCH_LATENCY_CLIENTS
[ -n "${BENCH_CELLS//[[:space:]]/}" ] || die "BENCH_CELLS is empty"
cells=()
clients_max=0
for cell in $BENCH_CELLS; do
  [[ $cell =~ ^(select|tpcb)-([a-z]+)-([0-9]+)$ ]] ||
    die "unknown cell '$cell' (MODE-PROTOCOL-CLIENTS, e.g. select-simple-16, tpcb-prepared-128)"
  clients=${BASH_REMATCH[3]}
  check_protocol "${BASH_REMATCH[2]}"
  check_positive "$clients"
  [ "$clients" -gt "$clients_max" ] && clients_max=$clients
  cells+=("$cell")
done
if [ "$SYSCALLS" = 1 ]; then
  command -v perf >/dev/null || die "SYSCALLS=1 needs perf (apt-get install linux-perf)"
  [ "$BENCH_SECONDS" -ge 8 ] || die "SYSCALLS=1 needs BENCH_SECONDS >= 8 (the middle half)"
fi
[ -x "$PGBOUNCER_BIN" ] ||
  note "no PgBouncer at $PGBOUNCER_BIN (apt-get install pgbouncer): its columns show FAILED"

# Targets in the order they take their turn in a round; peers: the other poolers.
targets="direct pgbouncer"
peers="pgbouncer"
if [ -n "$ODYSSEY_BIN" ]; then targets+=" odyssey"; peers+=" odyssey"; fi
targets+=" pgplex"
[ -n "$base_bin" ] && targets+=" pgplex-base"
declare -A label_of=([direct]=direct [pgbouncer]=PgBouncer [odyssey]=Odyssey [pgplex]=pgplex
                     [pgplex-base]=base)
declare -A short_of=([direct]=dir [pgbouncer]=bnc [odyssey]=ody [pgplex]=plex
                     [pgplex-base]=base)

pg_port=$BENCH_PORT
declare -A port_of=([direct]=$pg_port [pgbouncer]=$((BENCH_PORT + 1))
                    [pgplex]=$((BENCH_PORT + 2)) [pgplex-base]=$((BENCH_PORT + 3))
                    [odyssey]=$((BENCH_PORT + 4)))
ports=""
for t in $targets; do ports+=" ${port_of[$t]}"; done
# shellcheck disable=SC2086
check_ports_free $ports

# Session pooling needs one server connection per client, so each proxy's pool is as large
# as the largest client count. PostgreSQL must take one proxy's full pool at a time (the
# script waits for the previous target's servers to go before the next run) plus room.
pool_size=$clients_max
[ "$POOL_MODE" = transaction ] && pool_size=20
pool_size=${POOL_SIZE:-$pool_size}
check_positive "$pool_size"
max_connections=$(( clients_max + 20 > 700 ? clients_max + 20 : 700 ))
max_client_conn=$(( clients_max + 100 > 1000 ? clients_max + 100 : 1000 ))

bench_prepare pgplex-bench
[ "$TLS" = 1 ] && bench_make_tls_cert
mkdir -p "$tmp/txlog" "$tmp/latency"
declare -A pid_of=()

# ---- Odyssey ------------------------------------------------------------------------------

# The same settings as the other proxies' where Odyssey has them.
write_odyssey_conf() {
  local tls_line='tls "disable"'
  [ "$TLS" = 1 ] &&
    tls_line="tls \"require\"
    tls_cert_file \"$tmp/tls.crt\"
    tls_key_file \"$tmp/tls.key\""
  cat >"$tmp/odyssey.conf" <<EOF
daemonize no
log_to_stdout yes
log_debug no
log_config no
log_session no
log_query no
log_stats no
workers 2
resolvers 1
listen {
    host "127.0.0.1"
    port ${port_of[odyssey]}
    backlog 1024
    $tls_line
}
storage "postgres" {
    type "remote"
    host "127.0.0.1"
    port $pg_port
}
database "$BENCH_DB" {
    user "$BENCH_USER" {
        authentication "scram-sha-256"
        password "$BENCH_PASSWORD"
        storage "postgres"
        storage_db "$BENCH_DB"
        storage_user "$BENCH_USER"
        storage_password "$BENCH_PASSWORD"
        pool "$POOL_MODE"
        pool_size $pool_size
        pool_timeout 0
        pool_ttl 2
        pool_discard yes
        client_max $max_client_conn
    }
}
EOF
}

start_odyssey() {
  local pid
  write_odyssey_conf
  "$ODYSSEY_BIN" "$tmp/odyssey.conf" >"$tmp/odyssey.log" 2>&1 &
  pid=$!
  bench_track "$pid" odyssey
  if wait_ready odyssey "$pid" "${port_of[odyssey]}" "$BENCH_DB"; then
    pid_of[odyssey]=$pid
  else
    show_log odyssey "$tmp/odyssey.log"
    stop_pid "$pid" odyssey
  fi
}

# ---- syscalls (SYSCALLS=1) ----------------------------------------------------------------

# perf counts every syscall the proxy's threads enter (raw_syscalls:sys_enter, one
# tracepoint) and the common ones by name, from 2 s + BENCH_SECONDS/4 into the run (the
# clients are logged in by then) for BENCH_SECONDS/2 s, which ends before pgbench does.
# Transactions in that window are the sum of pgbench's per-second progress (-P 1) over it
# (the rate varies by 2x or more from second to second on a shared 2-CPU machine).
syscalls_start=$((2 + BENCH_SECONDS / 4))
syscalls_window=$((BENCH_SECONDS / 2))
syscall_names="io_uring_enter epoll_wait recvfrom sendto read write recvmsg sendmsg futex"
declare -A syscalls_tx=() syscalls_by_name=()
perf_events=(-e raw_syscalls:sys_enter)
for name in $syscall_names; do perf_events+=(-e "syscalls:sys_enter_$name"); done

# syscalls_from PERF_CSV KEY: syscalls per transaction of the run in pgbench_out, in all
# and by name, into the arrays.
syscalls_from() {
  local csv=$1 key=$2 total name count by_name="" window_tx
  # "progress: 7.0 s, 12345.6 tps, ..." covers the second that ends at 7.0 s.
  window_tx=$(awk -v from="$syscalls_start" -v to=$((syscalls_start + syscalls_window)) '
    /^progress: / { t = $2 + 0; if (t > from && t <= to + 0.01) { n += $4; seconds++ } }
    END { printf "%.0f", (seconds > 0 ? n : 0) }' <<<"$pgbench_out")
  total=$(awk -F, '$3 == "raw_syscalls:sys_enter" { print $1 }' "$csv" 2>/dev/null) || true
  if ! [[ $total =~ ^[0-9]+$ ]] || [ "$window_tx" -eq 0 ]; then
    note "perf counted nothing for $key (see $csv with BENCH_KEEP=1)"
    return 0
  fi
  syscalls_tx[$key]=$(awk -v n="$total" -v t="$window_tx" 'BEGIN { printf "%.3f", n / t }')
  for name in $syscall_names; do
    count=$(awk -F, -v e="syscalls:sys_enter_$name" '$3 == e { print $1 }' "$csv")
    if [[ $count =~ ^[0-9]+$ ]] && [ "$count" -gt 0 ]; then
      by_name+=$(awk -v s="$name" -v n="$count" -v t="$window_tx" \
                   'BEGIN { printf "%s %.2f, ", s, n / t }')
    fi
  done
  syscalls_by_name[$key]=${by_name%, }
}

# ---- one run ------------------------------------------------------------------------------

# logs_latency CLIENTS: whether runs with that many clients log every transaction.
logs_latency() {
  local c
  for c in $BENCH_LATENCY_CLIENTS; do [ "$c" = "$1" ] && return 0; done
  return 1
}

# run_target TARGET CELL ROUND: one pgbench run; results into the arrays, per-transaction
# latencies (µs) into $tmp/latency/TARGET-CELL-ROUND.
run_target() {
  local target=$1 cell=$2 round=$3 key="$1/$2/$3" mode protocol clients
  local pid=${pid_of[$target]:-} perf_csv="" sslmode=disable
  local -a args=()
  IFS=- read -r mode protocol clients <<<"$cell"
  if [ -n "$(skip_reason "$target" "$protocol" "$POOL_MODE")" ]; then
    tps[$key]=skipped
    return 0
  fi
  target_alive "$target" "$key" "$pid" || return 0
  [ "$mode" = select ] && args+=(-S)
  [ "$SYSCALLS" = 1 ] && args+=(-P 1)
  logs_latency "$clients" && args+=(--log "--log-prefix=$tmp/txlog/run")
  [ "$TLS" = 1 ] && sslmode=require
  [ "$target" = pgplex-base ] && [ "$BASE_PLAIN" = 1 ] && sslmode=disable
  wait_backends_drained "$pg_port"
  if [ "$SYSCALLS" = 1 ] && [ -n "$pid" ]; then
    perf_csv=$tmp/perf-${key//\//-}.csv
    start_perf stat -x, -o "$perf_csv" -D $((syscalls_start * 1000)) "${perf_events[@]}" \
      -p "$pid" -- sleep $((syscalls_start + syscalls_window))
  fi
  if measure_pgbench "$target" "$key" "$pid" "$sslmode" "$BENCH_SECONDS" "${args[@]}" \
       -M "$protocol" -j "$THREADS" -c "$clients" -h 127.0.0.1 -p "${port_of[$target]}" \
       -U "$BENCH_USER" "$BENCH_DB"; then
    # pgbench --log: one line per transaction, its third field the latency in µs.
    if logs_latency "$clients"; then
      awk '{ print $3 }' "$tmp"/txlog/run.* >"$tmp/latency/$target-$cell-$round" 2>/dev/null ||
        note "$target $cell round $round: no pgbench --log files"
    fi
  fi
  rm -f "$tmp"/txlog/run.*
  wait_perf
  [ -n "$perf_csv" ] && [ "${tps[$key]}" != FAILED ] && syscalls_from "$perf_csv" "$key"
  note "$target $cell round $round: tps ${tps[$key]:-}, latency ${latency[$key]:-} ms" \
       "${cpu_s[$key]:+(CPU $(awk -v c="${cpu_s[$key]}" 'BEGIN { printf "%.1f", c * 1000 }') µs per transaction)}" \
       "${syscalls_tx[$key]:+(${syscalls_tx[$key]} syscalls per transaction)}"
}

# ---- report -------------------------------------------------------------------------------

declare -A p50=() p99=()

# percentiles_into KEY FILE...: p50 and p99 (ms) of the latencies (µs, one a line) in FILEs.
percentiles_into() {
  local key=$1 values; shift
  [ $# -gt 0 ] || return 0
  values=$(cat "$@" | sort -n | awk '{ v[NR] = $1 } END {
    if (NR == 0) exit
    i50 = int(0.50 * NR + 0.999999); i99 = int(0.99 * NR + 0.999999)
    printf "%.3f %.3f", v[i50] / 1000, v[i99] / 1000 }')
  [ -n "$values" ] || return 0
  read -r "p50[$key]" "p99[$key]" <<<"$values"
}

# best_peer KEY_SUFFIX: the peer with the highest tps in that round (or mean), if any.
best_peer() {
  local peer best="" best_tps=0 v
  for peer in $peers; do
    v=${tps[$peer/$1]:-}
    [[ $v =~ ^[0-9.]+$ ]] || continue
    if [ -z "$best" ] || awk -v a="$v" -v b="$best_tps" 'BEGIN { exit !(a > b) }'; then
      best=$peer
      best_tps=$v
    fi
  done
  echo "$best"
}

# The table's columns: tps of every target (pgplex first), then the comparison with the best
# peer, then p50/p99 of pgplex, the peers and direct; baseline columns only with a baseline.
tps_columns="pgplex $peers direct"
[ -n "$base_bin" ] && tps_columns+=" pgplex-base"
latency_columns="pgplex $peers direct"

table_line() {
  local -a v=("$@")
  local line i t
  printf -v line '%-20s %5s |' "${v[0]}" "${v[1]}"; i=2
  for t in $tps_columns; do printf -v line '%s %13s' "$line" "${v[i]}"; i=$((i + 1)); done
  printf -v line '%s | %-9s %9s %9s %9s %9s' "$line" "${v[@]:i:5}"; i=$((i + 5))
  [ -n "$base_bin" ] && { printf -v line '%s %9s' "$line" "${v[i]}"; i=$((i + 1)); }
  line+=" |"
  for t in $latency_columns; do printf -v line '%s %15s' "$line" "${v[i]}"; i=$((i + 1)); done
  echo "$line"
}

# row CELL ROUND: ROUND a number or "mean".
row() {
  local k="$1/$2" t peer vals=()
  peer=$(best_peer "$k")
  vals+=("$1" "$2")
  for t in $tps_columns; do vals+=("$(cell "${tps[$t/$k]:-}" 1)"); done
  vals+=("${peer:+${label_of[$peer]}}")
  vals+=("$(ratio "${tps[pgplex/$k]:-}" "${tps[$peer/$k]:-}")")
  vals+=("$(ratio "${cpu_s[pgplex/$k]:-}" "${cpu_s[$peer/$k]:-}")")
  vals+=("$(us_per_tx "${cpu_s[pgplex/$k]:-}")" "$(us_per_tx "${cpu_s[$peer/$k]:-}")")
  [ -n "$base_bin" ] && vals+=("$(ratio "${tps[pgplex/$k]:-}" "${tps[pgplex-base/$k]:-}")")
  for t in $latency_columns; do
    if [ -n "${p50[$t/$k]:-}" ]; then vals+=("${p50[$t/$k]}/${p99[$t/$k]}")
    else vals+=("-"); fi
  done
  table_line "${vals[@]}"
}

# us_per_tx CPU_S: seconds per 1000 transactions as µs per transaction.
us_per_tx() {
  awk -v c="${1:-}" 'BEGIN { if (c !~ /^[0-9.]+$/) print "-"; else printf "%.1f", c * 1000 }'
}

header() {
  local t p reason
  echo "pgplex benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
  machine_line
  echo "PostgreSQL $(pg_version "$pg_port")" \
       "(max_connections $max_connections, fsync and synchronous_commit off)," \
       "$(version_of "$PGBOUNCER_BIN" --version)," \
       "${ODYSSEY_BIN:+$(version_of "$ODYSSEY_BIN" --version), }$(version_of "$pgplex_bin" --version)"
  [ -n "$base_bin" ] &&
    echo "pgplex: $pgplex_bin; baseline pgplex (base): $base_bin," \
         "$(version_of "$base_bin" --version)"
  echo "pgbench -j $THREADS -T $BENCH_SECONDS, scale $SCALE, $BENCH_ROUNDS round(s);" \
       "all targets over TCP 127.0.0.1; proxies: $POOL_MODE pooling, pool size $pool_size," \
       "SCRAM to clients and PostgreSQL"
  if [ "$TLS" = 1 ]; then
    echo "TLS: clients of every target over TLS (sslmode=require, P-256 certificate)," \
         "$([ "$BASE_PLAIN" = 1 ] && echo "base in clear,") proxies to PostgreSQL in clear"
  fi
  echo "cell: MODE-PROTOCOL-CLIENTS (select: pgbench -S; tpcb: TPC-B-like; pgbench -M PROTOCOL);"
  echo "tps: transactions/s without connection time; peer: the other pooler with the most" \
       "tps in that row; plex/peer: pgplex tps / that peer's tps;"
  echo "cpu plex/peer: pgplex CPU per transaction / that peer's (utime+stime from" \
       "/proc/PID/stat, all threads); plex µs/tx, peer µs/tx: those CPU times per transaction;"
  [ -n "$base_bin" ] && echo "plex/base: pgplex tps / baseline pgplex tps (same config)"
  echo "p50/p99: per-transaction latency percentiles in ms (pgbench --log), for clients in" \
       "\"$BENCH_LATENCY_CLIENTS\"; mean rows: all rounds' transactions together"
  for t in $targets; do
    [ "$t" = direct ] && continue
    [ -n "${failed[$t]:-}" ] && echo "FAILED target $t: ${failed[$t]}"
    for cell in "${cells[@]}"; do
      reason=$(skip_reason "$t" "$(cut -d- -f2 <<<"$cell")" "$POOL_MODE")
      [ -n "$reason" ] && echo "skipped: $t in $cell: $reason"
    done
  done
  echo
  local -a heads=(cell round)
  for t in $tps_columns; do heads+=("${label_of[$t]} tps"); done
  heads+=(peer plex/peer "cpu p/peer" "plex µs/tx" "peer µs/tx")
  [ -n "$base_bin" ] && heads+=(plex/base)
  for t in $latency_columns; do heads+=("${short_of[$t]} p50/p99"); done
  table_line "${heads[@]}"
  return 0
}

# syscalls_line CELL ROUND PEERS... PLEX [BASE] BY_NAME
syscalls_row() {
  local k="$1/$2" t line by_name=""
  printf -v line '%-20s %5s |' "$1" "$2"
  for t in $peers pgplex ${base_bin:+pgplex-base}; do
    printf -v line '%s %11s' "$line" "$(cell "${syscalls_tx[$t/$k]:-}" 2)"
    [ -n "${syscalls_by_name[$t/$k]:-}" ] &&
      by_name+="${by_name:+; }${label_of[$t]}: ${syscalls_by_name[$t/$k]}"
  done
  echo "$line | $by_name"
}

syscalls_table() {
  local cell round t line
  echo
  echo "syscalls per transaction: perf stat -e raw_syscalls:sys_enter -p PROXY_PID, from" \
       "${syscalls_start} s into each run for ${syscalls_window} s; transactions: pgbench's" \
       "per-second progress (-P 1) summed over that window; by syscall:" \
       "syscalls:sys_enter_NAME per transaction"
  printf -v line '%-20s %5s |' cell round
  for t in $peers pgplex ${base_bin:+pgplex-base}; do
    printf -v line '%s %11s' "$line" "${short_of[$t]} sys/tx"
  done
  echo "$line | by syscall"
  for cell in "${cells[@]}"; do
    for ((round = 1; round <= BENCH_ROUNDS; round++)); do syscalls_row "$cell" "$round"; done
    [ "$BENCH_ROUNDS" -gt 1 ] && syscalls_row "$cell" mean
  done
  return 0
}

# ---- main ---------------------------------------------------------------------------------

start_postgres "$pg_port" 0 "$max_connections"
write_userlist
if [ -x "$PGBOUNCER_BIN" ]; then
  write_pgbouncer_ini "${port_of[pgbouncer]}" "$pg_port" "$POOL_MODE" "$pool_size" \
    "$max_client_conn"
  start_pgbouncer "${port_of[pgbouncer]}"
  pid_of[pgbouncer]=$pgbouncer_pid
else
  failed[pgbouncer]="no PgBouncer at $PGBOUNCER_BIN"
fi
[ -n "$ODYSSEY_BIN" ] && start_odyssey
for t in pgplex ${base_bin:+pgplex-base}; do
  plain=""
  [ "$t" = pgplex-base ] && [ "$BASE_PLAIN" = 1 ] && plain=plain
  {
    pgplex_toml_head "${port_of[$t]}" "$POOL_MODE" "$pool_size" "$max_client_conn" $plain
    printf '\n[databases.%s]\nhost = "127.0.0.1"\nport = %s\ndbname = "%s"\n' \
      "$BENCH_DB" "$pg_port" "$BENCH_DB"
  } >"$tmp/$t.toml"
  bin=$pgplex_bin
  [ "$t" = pgplex-base ] && bin=$base_bin
  start_pgplex "$t" "$bin" "$tmp/$t.toml" "pid_of[$t]" "${port_of[$t]}:$BENCH_DB"
done

runs=0
for cell in "${cells[@]}"; do
  for t in $targets; do
    [ -z "$(skip_reason "$t" "$(cut -d- -f2 <<<"$cell")" "$POOL_MODE")" ] &&
      runs=$((runs + BENCH_ROUNDS))
  done
done
note "$runs pgbench runs of ${BENCH_SECONDS}s (about $((runs * (BENCH_SECONDS + 5) / 60 + 1)) min)"

for cell in "${cells[@]}"; do
  for ((round = 1; round <= BENCH_ROUNDS; round++)); do
    # Targets take turns within each round so that drift (caches, thermal, autovacuum)
    # spreads over all of them instead of favouring whichever ran first. The baseline
    # pgplex runs after pgplex in odd rounds and before it in even ones.
    order=$targets
    if [ -n "$base_bin" ] && [ $((round % 2)) -eq 0 ]; then
      order=${targets/pgplex pgplex-base/pgplex-base pgplex}
    fi
    for t in $order; do run_target "$t" "$cell" "$round"; done
  done
done

# Latency percentiles per round, and over all rounds for the mean rows; means of the rest.
for cell in "${cells[@]}"; do
  for t in $targets; do
    files=()
    for ((round = 1; round <= BENCH_ROUNDS; round++)); do
      f=$tmp/latency/$t-$cell-$round
      [ -s "$f" ] || continue
      percentiles_into "$t/$cell/$round" "$f"
      files+=("$f")
    done
    [ ${#files[@]} -gt 0 ] && percentiles_into "$t/$cell/mean" "${files[@]}"
    if [ "$BENCH_ROUNDS" -gt 1 ]; then
      keys=()
      for ((round = 1; round <= BENCH_ROUNDS; round++)); do keys+=("$t/$cell/$round"); done
      mean_into latency "$t/$cell/mean" "${keys[@]}"
      mean_into cpu_s "$t/$cell/mean" "${keys[@]}"
      mean_into syscalls_tx "$t/$cell/mean" "${keys[@]}"
      mean_into tps "$t/$cell/mean" "${keys[@]}"
    fi
  done
done

mkdir -p "$results_dir"
{
  header
  for cell in "${cells[@]}"; do
    for ((round = 1; round <= BENCH_ROUNDS; round++)); do row "$cell" "$round"; done
    [ "$BENCH_ROUNDS" -gt 1 ] && row "$cell" mean
  done
  [ "$SYSCALLS" = 1 ] && syscalls_table
  true
} | tee "$results_dir/latest.txt"
note "table written to bench/results/latest.txt"
