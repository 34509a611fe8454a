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
#   DURATION    seconds per pgbench run (or BENCH_SECONDS)         [10]
#   CLIENTS     client counts to run                               ["16"]
#   ROUNDS      rounds of each (protocol, clients) (or BENCH_ROUNDS) [2]
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
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"

DURATION=${BENCH_SECONDS:-${DURATION:-10}}
CLIENTS=${CLIENTS:-"16"}
ROUNDS=${BENCH_ROUNDS:-${ROUNDS:-2}}
PROTOCOL=${PROTOCOL:-"simple prepared"}
POOL_SIZE=${POOL_SIZE:-20}
BENCH_PORT=${BENCH_PORT:-28400}
PROFILE=${PROFILE:-0}

ROUTED_DB=bench_routed           # the pgplex alias with cluster = "$CLUSTER"
CLUSTER=bench
MONITOR_USER=pgplex_monitor      # a pg_monitor member the node monitor logs in as
MONITOR_PASSWORD=monitor-$RANDOM$RANDOM
TARGETS="direct plain service routed pgbouncer"

[ $# -eq 1 ] || die "usage: bench/routing.sh PATH_TO_PGPLEX"
pgplex_bin=$1
case $pgplex_bin in /*) ;; *) pgplex_bin=$PWD/$pgplex_bin ;; esac
cd /
bench_check_host
# shellcheck disable=SC2086
check_positive "$DURATION" "$ROUNDS" "$SCALE" "$THREADS" "$BENCH_PORT" "$POOL_SIZE" $CLIENTS
if [ "$PROFILE" = 1 ]; then
  command -v perf >/dev/null || die "PROFILE=1 needs perf (apt-get install linux-perf)"
  [ "$DURATION" -ge 8 ] || die "PROFILE=1 needs DURATION >= 8 (it samples the middle half)"
fi
[ -n "${PROTOCOL// /}" ] || die "PROTOCOL is empty (simple, prepared, extended)"
for p in $PROTOCOL; do check_protocol "$p"; done

primary_port=$BENCH_PORT
replica_port=$((BENCH_PORT + 1))
pgbouncer_port=$((BENCH_PORT + 2))
pgplex_port=$((BENCH_PORT + 3))
service_port=$((BENCH_PORT + 4))
declare -A port_of=([direct]=$replica_port [plain]=$pgplex_port [service]=$service_port
                    [routed]=$pgplex_port [pgbouncer]=$pgbouncer_port)
declare -A db_of=([direct]=$BENCH_DB [plain]=$BENCH_DB [service]=$BENCH_DB
                  [routed]=$ROUTED_DB [pgbouncer]=$BENCH_DB)
check_ports_free "$primary_port" "$replica_port" "$pgbouncer_port" "$pgplex_port" "$service_port"

clients_max=0
for c in $CLIENTS; do [ "$c" -gt "$clients_max" ] && clients_max=$c; done
# pgcluster.sh gives every node 300 connections: the direct runs need one per client.
max_connections=$(( clients_max + 50 > 300 ? clients_max + 50 : 300 ))
max_client_conn=$(( clients_max + 100 > 1000 ? clients_max + 100 : 1000 ))

bench_prepare pgplex-routing
pgbouncer_pid=""
pgplex_pid=""
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- PostgreSQL: primary + 1 replica --------------------------------------------------------

# start_cluster: the primary, one replica, the monitor role; waits until the replica has
# replayed pgbench -i.
start_cluster() {
  local lsn deadline=$((SECONDS + 120))
  start_postgres "$primary_port" 1 "$max_connections"
  pg_at "$primary_port" \
    -c "CREATE ROLE $MONITOR_USER LOGIN PASSWORD '$MONITOR_PASSWORD' IN ROLE pg_monitor" \
    >/dev/null || die "could not create the monitor role"
  # The replica must have replayed it all before the first run reads from it.
  lsn=$(pg_at "$primary_port" -c "SELECT pg_current_wal_lsn()") || die "no LSN from the primary"
  until [ "$(pg_at "$replica_port" -c "SELECT pg_last_wal_replay_lsn() >= '$lsn'")" = t ]; do
    [ $SECONDS -lt $deadline ] || die "the replica did not replay up to $lsn within 120 s"
    sleep 0.2
  done
  note "replica caught up (replayed past $lsn)"
}

# Transactions committed in the bench database on a node so far.
commits_at() {
  pg_at "$1" -c "SELECT xact_commit FROM pg_stat_database WHERE datname = '$BENCH_DB'" \
    2>/dev/null || true
}

# ---- proxies --------------------------------------------------------------------------------

# One pgplex for (b), (c) and (d). Alias $BENCH_DB is the plain one (host/port = the
# replica) and also gives the replica service's clients their login (a service listener
# uses the alias of the database name the client asks for); alias $ROUTED_DB routes per
# statement over the cluster. admin_users lets the script read SHOW NODES / SHOW SERVICES.
write_pgplex_toml() {
  {
    pgplex_toml_head "$pgplex_port" transaction "$POOL_SIZE" "$max_client_conn"
    cat <<EOF
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
  } >"$tmp/pgplex.toml"
}

# admin_show WHAT: pgplex's SHOW WHAT, from its management database.
admin_show() {
  PGPASSWORD=$BENCH_PASSWORD PGCONNECT_TIMEOUT=2 timeout 5 psql -X -h 127.0.0.1 \
    -p "$pgplex_port" -U "$BENCH_USER" -d pgplex -c "SHOW $1" 2>&1 || true
}

# start_pgplex_targets: one pgplex process for plain, service and routed.
start_pgplex_targets() {
  local t
  write_pgplex_toml
  start_pgplex pgplex "$pgplex_bin" "$tmp/pgplex.toml" pgplex_pid "$pgplex_port:$BENCH_DB" \
    "$service_port:$BENCH_DB" "$pgplex_port:$ROUTED_DB"
  if [ -z "$pgplex_pid" ]; then
    for t in plain service routed; do failed[$t]=${failed[pgplex]}; done
    return 0
  fi
  admin_show NODES >"$tmp/nodes-start.txt"
  admin_show SERVICES >>"$tmp/nodes-start.txt"
  note "pgplex (pid $pgplex_pid) sees:"
  sed 's/^/    /' "$tmp/nodes-start.txt" >&2
}

# ---- measuring ------------------------------------------------------------------------------

declare -A on_replica=() load=() pg_query_share=() route_share=()

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
  [ -n "$shares" ] || { note "perf recorded nothing for $key"; return 0; }
  read -r "pg_query_share[$key]" "route_share[$key]" <<<"$shares"
}

# run_pgbench TARGET PROTOCOL CLIENTS KEY: one pgbench -S run; results into the arrays.
run_pgbench() {
  local target=$1 protocol=$2 clients=$3 key=$4 pid="" p0 r0 p1 r1 perf_data=""
  case $target in
    pgbouncer) pid=$pgbouncer_pid ;;
    plain|service|routed) pid=$pgplex_pid ;;
  esac
  if [ -n "$(skip_reason "$target" "$protocol" transaction)" ]; then
    tps[$key]=skipped
    return 0
  fi
  target_alive "$target" "$key" "$pid" || return 0
  wait_backends_drained "$primary_port" "$replica_port"
  p0=$(commits_at "$primary_port"); r0=$(commits_at "$replica_port")
  if [ "$PROFILE" = 1 ] && [ -n "$pid" ] && [ "$target" != pgbouncer ]; then
    perf_data=$tmp/perf-${key//\//-}.data
    start_perf record -q -F 499 -D $((profile_start * 1000)) -p "$pid" -o "$perf_data" \
      -- sleep $((profile_start + profile_window))
  fi
  # -n: no VACUUM before the run (the replica cannot, and pgbench -i has just done it).
  measure_pgbench "$target" "$key" "$pid" disable "$DURATION" -n -S -M "$protocol" \
    -j "$THREADS" -c "$clients" -h 127.0.0.1 -p "${port_of[$target]}" -U "$BENCH_USER" \
    "${db_of[$target]}" || true
  wait_perf
  [ -n "$perf_data" ] && profile_from "$perf_data" "$key"
  load[$key]=$(cut -d' ' -f1 /proc/loadavg)
  [ "${tps[$key]}" = FAILED ] && return 0
  # Where the transactions went: the servers' statistics are complete once they have exited.
  wait_backends_drained "$primary_port" "$replica_port"
  p1=$(commits_at "$primary_port"); r1=$(commits_at "$replica_port")
  if [[ "$p0$r0$p1$r1" =~ ^[0-9]+$ ]]; then
    on_replica[$key]=$(awk -v p=$((p1 - p0)) -v r=$((r1 - r0)) \
                         'BEGIN { if (p + r > 0) printf "%.1f", 100 * r / (p + r); }')
    if [ $((p1 - p0)) -gt 100 ]; then
      note "warning: $key: $((p1 - p0)) transactions committed on the primary" \
           "(replica: $((r1 - r0)))"
    fi
  fi
  local message="$key: tps ${tps[$key]}, latency ${latency[$key]} ms"
  [ -n "${cpu_s[$key]:-}" ] && message+=", proxy CPU ${cpu_s[$key]} s per 1000 tx"
  [ -n "${on_replica[$key]:-}" ] && message+=", ${on_replica[$key]}% of commits on the replica"
  note "$message (load ${load[$key]})"
}

# ---- report ---------------------------------------------------------------------------------

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
    "$(cell "${tps[pgbouncer/$k]:-}" 0)" \
    "$(ratio "${tps[service/$k]:-}" "${tps[plain/$k]:-}")" \
    "$(ratio "${tps[routed/$k]:-}" "${tps[plain/$k]:-}")" \
    "$(ratio "${tps[routed/$k]:-}" "${tps[pgbouncer/$k]:-}")" \
    "$(ratio "${tps[plain/$k]:-}" "${tps[pgbouncer/$k]:-}")" \
    "$(cell "${cpu_s[plain/$k]:-}" 4)" "$(cell "${cpu_s[service/$k]:-}" 4)" \
    "$(cell "${cpu_s[routed/$k]:-}" 4)" "$(cell "${cpu_s[pgbouncer/$k]:-}" 4)" \
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
  return 0
}

header() {
  echo "pgplex routing overhead, $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "$(machine_line);" \
       "load average at start $load_start, at end $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "PostgreSQL $(pg_version "$primary_port")" \
       "primary + 1 streaming replica (scripts/pgcluster.sh, fsync and synchronous_commit off)," \
       "$(version_of "$PGBOUNCER_BIN" --version), $(version_of "$pgplex_bin" --version)"
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
    reason=$(skip_reason pgbouncer "$p" transaction)
    [ -n "$reason" ] && echo "skipped: bouncer with -M $p: $reason"
  done
  echo
  # shellcheck disable=SC2059
  printf "$row_format" proto clients round "a direct" "b plain" "c svc" "d routed" "e bnc" \
    c/b d/b d/e b/e "b cpu" "c cpu" "d cpu" "e cpu" "c rep%" "d rep%" load
  return 0
}

# ---- main -----------------------------------------------------------------------------------

start_cluster
write_userlist
write_pgbouncer_ini "$pgbouncer_port" "$replica_port" transaction "$POOL_SIZE" "$max_client_conn"
start_pgbouncer "$pgbouncer_port"
start_pgplex_targets

runs=0
for protocol in $PROTOCOL; do for c in $CLIENTS; do for t in $TARGETS; do
  [ -z "$(skip_reason "$t" "$protocol" transaction)" ] && runs=$((runs + ROUNDS))
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
    { grep -iE 'error|warn|fatal|panic' "$tmp/pgplex.log" || true; } | sort | uniq -c | sort -rn |
      head -10
    [ -s "$tmp/nodes-end.txt" ] && { echo "pgplex at the end:"; cat "$tmp/nodes-end.txt"; }
  fi
  true
} | tee "$results_dir/routing.txt"
note "table written to bench/results/routing.txt"
