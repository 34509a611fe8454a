# pgplex: a thin wrapper over meson. The two commands a newcomer needs, as root on Debian 12:
#   make demo    install what is missing, build, run a primary + replica with pgplex in front
#   make check   install what is missing, build, run every test
BUILD       ?= build
ASAN_BUILD  ?= build-asan
FUZZ_BUILD  ?= build-fuzz
FUZZ_SECONDS ?= 20
PYTHON      ?= /usr/bin/python3
KEEP        ?= 0

.PHONY: all deps build check unit tidy integration asan fuzz demo bench bench-routing deb clean

all: build

deps:
	@scripts/deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) --buildtype=debugoptimized

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

unit: build
	meson test -C $(BUILD) --suite unit --print-errorlogs

tidy:
	$(PYTHON) tests/tidy

integration: build
	PGPLEX_BIN=$(CURDIR)/$(BUILD)/pgplex $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) --buildtype=debug -Db_sanitize=address,undefined -Db_lundef=false

# One run under ASan + UBSan (leak checks on): the unit tests and every integration test.
# `make asan SMOKE=1` runs only the integration tests marked smoke.
asan: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  meson test -C $(ASAN_BUILD) --suite unit --print-errorlogs
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  PGPLEX_BIN=$(CURDIR)/$(ASAN_BUILD)/pgplex SOAK_SECONDS=30 \
	  $(PYTHON) -m pytest -q -p no:cacheprovider $(if $(SMOKE),-m smoke) tests/integration

$(FUZZ_BUILD)/build.ninja:
	CXX=clang++ meson setup $(FUZZ_BUILD) -Dfuzz=true --buildtype=debug -Dwerror=false

# Every fuzz target for a bounded time, starting from its seed corpus.
fuzz: deps $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD)
	tests/fuzz/run $(FUZZ_BUILD) $(FUZZ_SECONDS)

# pooldiff (tests/integration/pooldiff.py): concurrent clients through transaction pooling,
# each compared with its own direct connection. `make fuzz-pool SEEDS=1-200` runs those seeds;
# MINUTES=M runs seeds from the first of SEEDS on until M minutes have passed.
SEEDS       ?= 1-200
.PHONY: fuzz-pool
fuzz-pool: build
	PGPLEX_BIN=$(CURDIR)/$(BUILD)/pgplex POOLDIFF_SEEDS=$(SEEDS) \
	  $(if $(MINUTES),POOLDIFF_MINUTES=$(MINUTES)) \
	  $(PYTHON) -m pytest -q -p no:cacheprovider -s tests/integration/test_pool_differential.py

# The soak (tests/integration/soak.py): about twenty clients over a small transaction pool
# for DURATION seconds; `make check` runs its bounded form (60 s) with the integration tests.
DURATION    ?= 3600
SEED        ?= 1
.PHONY: soak
soak: build
	PGPLEX_BIN=$(CURDIR)/$(BUILD)/pgplex SOAK_SECONDS=$(DURATION) SOAK_SEED=$(SEED) \
	  $(PYTHON) -m pytest -q -p no:cacheprovider -s tests/integration/test_soak.py

check: deps build unit tidy integration asan fuzz

demo: build
	KEEP=$(KEEP) scripts/demo.sh $(BUILD)/pgplex

bench: build
	bench/run.sh $(BUILD)/pgplex

bench-routing: build
	bench/routing.sh $(BUILD)/pgplex

deb: deps
	dpkg-buildpackage -us -uc -b

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
