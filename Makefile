# pgplex: a thin wrapper over meson. The two commands a newcomer needs, as root on Debian 12:
#   make demo    install what is missing, build, run a primary + replica with pgplex in front
#   make check   install what is missing, build, run every test
BUILD       ?= build
ASAN_BUILD  ?= build-asan
FUZZ_BUILD  ?= build-fuzz
FUZZ_SECONDS ?= 10
PYTHON      ?= /usr/bin/python3
KEEP        ?= 0

.PHONY: all deps build check unit sim tidy integration asan asan-build fuzz fuzz-build demo bench \
        bench-deps bench-routing bench-failover deb clean

all: build

# scripts/check.sh sets PGPLEX_DEPS_CHECKED once make check has run this, so that its stages
# and background builds, which run at once, do not each run it (and apt-get) again.
deps:
	@[ -n "$$PGPLEX_DEPS_CHECKED" ] || scripts/deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=debugoptimized

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

# The Criterion unit tests and the bounded run of the gossip simulation (meson suite sim).
unit: build
	meson test -C $(BUILD) --suite unit --suite sim --print-errorlogs

tidy:
	$(PYTHON) tests/tidy

# JOBS=2 runs two pytest-xdist workers (each its own PostgreSQL and port range, see
# conftest.py). One by default: timing-bound tests are not yet all steady under two.
JOBS        ?= 1
XDIST        = $(if $(filter-out 1,$(JOBS)),-n $(JOBS) --dist loadfile)

# INTEGRATION_IGNORE=FILES leaves those files of tests/integration out, INTEGRATION_FILES=PATHS
# runs only those (make check runs test_package.py on its own, once its .deb is built).
INTEGRATION_IGNORE ?=
INTEGRATION_FILES  ?= tests/integration
integration: build
	PGPLEX_BIN=$(CURDIR)/$(BUILD)/pgplex $(if $(SOAK_SECONDS),SOAK_SECONDS=$(SOAK_SECONDS)) \
	  $(PYTHON) -m pytest -q -p no:cacheprovider $(XDIST) \
	  $(foreach f,$(INTEGRATION_IGNORE),--ignore=tests/integration/$(f)) $(INTEGRATION_FILES)

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false

# One run under ASan + UBSan (leak checks on): the unit tests, the gossip simulation (both
# deciders) and the integration tests. The randomized tests run fewer seeds here (the
# simulation 1-30, the soak 15 s, pooldiff seeds 1-3, 200 fuzzed sessions): every code path
# they reach is reached by their first seeds, and the plain run above runs them all. Some
# files are left to the plain run (ASAN_IGNORE), to keep make check near its 30 minutes:
# test_package runs the packaged binary, not this one; test_gossip's, test_promote's and
# test_dcs's appliances spend their minutes waiting out probe, failover and lease timers, and
# the code they drive (membership, quorum, promotion, the etcd store) runs here under the
# simulation, its unit tests and fuzz_etcd instead; test_patroni waits out Patroni's own
# timers (its leader key's ttl), over code test_failover_wait and the monitor's unit tests
# drive here; test_systemd, test_shutdown and test_reload wait out watchdog, signal and
# shutdown timers around the control thread, whose parsers (config, sd_notify's socket
# names) the unit tests and fuzz_config run here.
# `make asan SMOKE=1` runs only the integration tests marked smoke; ASAN_IGNORE= runs all.
# test_metrics and test_pool_options wait out scrape and pool timers around code whose parser
# fuzz_http and the unit tests run here. The files make check runs under ASan only are
# named in scripts/check.sh (ASAN_ONLY); none is named in both.
ASAN_IGNORE ?= test_package.py test_gossip.py test_promote.py test_patroni.py test_dcs.py \
  test_systemd.py test_shutdown.py test_reload.py test_metrics.py test_pool_options.py
asan-build: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)

asan: asan-build
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  meson test -C $(ASAN_BUILD) --suite unit --timeout-multiplier 4 --print-errorlogs
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  $(ASAN_BUILD)/sim_gossip --seeds 1-30
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  $(ASAN_BUILD)/sim_gossip --store --seeds 1-30
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  PGPLEX_BIN=$(CURDIR)/$(ASAN_BUILD)/pgplex SOAK_SECONDS=15 POOLDIFF_SEEDS=1-3 \
	  PGPLEX_FUZZ_SESSIONS=200 \
	  $(PYTHON) -m pytest -q -p no:cacheprovider $(XDIST) $(if $(SMOKE),-m smoke) \
	  $(foreach f,$(ASAN_IGNORE),--ignore=tests/integration/$(f)) tests/integration

$(FUZZ_BUILD)/build.ninja:
	CXX=clang++ meson setup $(FUZZ_BUILD) -Dfuzz=true --buildtype=debug -Dwerror=false

fuzz-build: deps $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD)

# Every fuzz target for a bounded time, starting from its seed corpus.
fuzz: fuzz-build
	tests/fuzz/run $(FUZZ_BUILD) $(FUZZ_SECONDS)

# pooldiff (tests/integration/pooldiff.py): concurrent clients through transaction pooling,
# each compared with its own direct connection. `make fuzz-pool SEEDS=1-200` runs those seeds;
# MINUTES=M runs seeds from the first of SEEDS on until M minutes have passed; MODE=session
# runs them through session pooling, killing servers between steps.
SEEDS       ?= 1-200
.PHONY: fuzz-pool
fuzz-pool: build
	PGPLEX_BIN=$(CURDIR)/$(BUILD)/pgplex POOLDIFF_SEEDS=$(SEEDS) \
	  $(if $(MINUTES),POOLDIFF_MINUTES=$(MINUTES)) $(if $(MODE),POOLDIFF_MODE=$(MODE)) \
	  $(PYTHON) -m pytest -q -p no:cacheprovider -s tests/integration/test_pool_differential.py

# The soak (tests/integration/soak.py): about twenty clients over a small transaction pool
# for DURATION seconds; `make check` runs its bounded form (60 s) with the integration tests.
DURATION    ?= 3600
SEED        ?= 1
.PHONY: soak
soak: build
	PGPLEX_BIN=$(CURDIR)/$(BUILD)/pgplex SOAK_SECONDS=$(DURATION) SOAK_SEED=$(SEED) \
	  $(PYTHON) -m pytest -q -p no:cacheprovider -s tests/integration/test_soak.py

# The deterministic gossip simulation (tests/sim/sim_gossip.cc) over a range of seeds, with
# the appliances' quorum and then with a modelled decision store ([dcs]):
# `make sim SEEDS=1-5000`. A failing seed prints the command line that replays it.
sim: build
	$(BUILD)/sim_gossip --seeds $(SEEDS)
	$(BUILD)/sim_gossip --store --seeds $(SEEDS)

# make check: unit, tidy, integration, asan, fuzz (test_package.py after asan, once its .deb is
# built), run by scripts/check.sh, which compiles what the later stages need (the ASan build,
# the .deb, the fuzz build) at nice 19 in the background while the tests run; those builds
# log to $(CHECK_DIR)/prep.log, and any that fails fails make check with that log's tail.
CHECK_DIR   ?= build-check
check: deps build
	MAKE="$(MAKE)" CHECK_DIR=$(CHECK_DIR) scripts/check.sh

demo: build
	KEEP=$(KEEP) scripts/demo.sh $(BUILD)/pgplex

# make bench: the comparison table of bench/README.md (pgplex, PgBouncer, Odyssey if
# installed, direct). PGPLEX=PATH benchmarks that binary and builds nothing; PgBouncer is
# installed from Debian's package if missing. BENCH_SECONDS, BENCH_ROUNDS, BENCH_CELLS, ...
# are read from the environment (bench/run.sh).
PGPLEX      ?=
bench_pgplex = $(or $(PGPLEX),$(BUILD)/pgplex)

bench-deps:
	@[ -x /usr/sbin/pgbouncer ] || { apt-get update && apt-get install -y pgbouncer; }

bench: $(if $(PGPLEX),,build) bench-deps
	bench/run.sh $(bench_pgplex)

bench-routing: $(if $(PGPLEX),,build) bench-deps
	bench/routing.sh $(bench_pgplex)

# make bench-failover: HAProxy + Patroni next to pgplex + Patroni on one real Patroni cluster
# (bench/failover.py: switchover, failover, killed postmaster, crashed leader; about 4
# minutes, as root). HAProxy, Patroni and etcd are installed from Debian's packages if missing.
# FAILOVER_ARGS are passed on (e.g. --scenarios switchover --seconds 30).
FAILOVER_ARGS ?=

bench-failover: $(if $(PGPLEX),,build) bench-deps
	@[ -x /usr/sbin/haproxy ] || { apt-get update && apt-get install -y haproxy; }
	$(PYTHON) bench/failover.py --pgplex $(bench_pgplex) $(FAILOVER_ARGS)

# The Debian package, left as $(DEB_DIR)/pgplex_<version>_<arch>.deb (debian/rules binary, so
# no .buildinfo or .changes lands in the parent directory), then lintian on it. DEB_CLEAN=0
# rebuilds only what changed since the last `make deb`. debhelper runs ninja -j1 unless
# DEB_BUILD_OPTIONS says parallel=N: this passes parallel=$(DEB_JOBS) (every CPU) unless the
# caller's DEB_BUILD_OPTIONS already names one.
DEB_DIR     ?= build-deb
DEB_CLEAN   ?= 1
DEB_JOBS    ?= $(shell nproc)
deb_options  = $(strip $(DEB_BUILD_OPTIONS) \
                 $(if $(findstring parallel=,$(DEB_BUILD_OPTIONS)),,parallel=$(DEB_JOBS)))
deb: deps
	dpkg-checkbuilddeps
	mkdir -p $(DEB_DIR)
	rm -f $(DEB_DIR)/pgplex_*.deb $(DEB_DIR)/pgplex-dbgsym_*.deb
	$(if $(filter 1,$(DEB_CLEAN)),debian/rules clean)
	PGPLEX_DEB_DIR=$(CURDIR)/$(DEB_DIR) DEB_BUILD_OPTIONS="$(deb_options)" nice debian/rules binary
	lintian --info $(DEB_DIR)/pgplex_*.deb

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD) $(DEB_DIR) $(CHECK_DIR)
