#!/usr/bin/env bash
# make check, after `make deps build`: the stages unit, tidy, integration, asan and fuzz, each
# a make target of its own, in that order, but for test_package.py, which runs (with the same
# make integration) after asan, once its .deb is built. Every test those targets run, runs.
#
# The three builds the later stages need (the ASan build, the Debian package test_package.py
# inspects, the fuzz build) are compiled meanwhile, in that order, at nice 19 in the
# background: the integration tests spend most of their time waiting on sockets and timers,
# and nice 19 leaves them the CPU whenever they want it. Those builds write to
# CHECK_DIR/prep.log; a stage that needs one waits for it, and if it failed, make check fails
# here with that build's name and the log's tail. An interrupted or failed make check stops
# the background builds.
set -euo pipefail
cd "$(dirname "$0")/.."

MAKE=${MAKE:-make}
export PGPLEX_DEPS_CHECKED=1  # make check ran make deps before this script
CHECK_DIR=${CHECK_DIR:-build-check}
mkdir -p "$CHECK_DIR"
log="$CHECK_DIR/prep.log"
rm -f "$log" "$CHECK_DIR"/*.status

# One background build: make TARGET, its exit status left in CHECK_DIR/TARGET.status.
prep() {
    local target=$1 status=0
    echo "=== make $target ($(date +%T))"
    nice -n 19 "$MAKE" --no-print-directory "$target" || status=$?
    echo "=== make $target: exit $status ($(date +%T))"
    echo "$status" >"$CHECK_DIR/$target.status"
}

set -m  # the background builds get a process group of their own, to stop them as one
( prep asan-build; prep deb; prep fuzz-build ) >"$log" 2>&1 </dev/null &
builds=$!
set +m
trap 'kill -- -$builds 2>/dev/null || true' EXIT
trap 'exit 130' INT TERM

# Waits until the background build of TARGET is done; fails make check if it failed.
await() {
    local target=$1 status_file="$CHECK_DIR/$1.status" waited=0
    while [ ! -f "$status_file" ]; do
        if [ $waited -eq 0 ]; then echo "check: waiting for the background make $target ($log)"; fi
        waited=1
        if ! kill -0 "$builds" 2>/dev/null && [ ! -f "$status_file" ]; then
            echo "check: the background builds stopped before make $target finished ($log)" >&2
            exit 1
        fi
        sleep 2
    done
    if [ "$(cat "$status_file")" != 0 ]; then
        echo "check: the background make $target failed; the end of $log:" >&2
        tail -n 40 "$log" >&2
        exit 1
    fi
}

"$MAKE" --no-print-directory unit
"$MAKE" --no-print-directory tidy
# The files whose tests are about what pgplex answers, not about timing, load or other
# processes run once, under ASan + UBSan (make asan, below): the release build runs the rest,
# and every file runs in at least one of the two builds (ASAN_IGNORE, in the Makefile, names
# the files only the release build runs). `make integration` alone still runs them all.
ASAN_ONLY="test_protocol.py test_psycopg.py test_aliases.py test_auth_query.py
  test_session_state.py test_import_pgbouncer.py test_console.py test_admin_clusters.py
  test_routing.py test_tls.py test_listen.py test_isolation.py test_prepared.py"
"$MAKE" --no-print-directory integration INTEGRATION_IGNORE="test_package.py $(echo $ASAN_ONLY)" \
  SOAK_SECONDS=30
await asan-build
"$MAKE" --no-print-directory asan
await deb
"$MAKE" --no-print-directory integration INTEGRATION_FILES=tests/integration/test_package.py
await fuzz-build
"$MAKE" --no-print-directory fuzz
echo "check: every stage passed"
