# Thin wrapper around CMake. `make run` and `make test` work on a fresh Debian machine.
BUILD ?= build
ASAN_BUILD ?= build-san
JOBS ?= $(shell nproc)
CONFIG ?= etc/netsvr.toml
PYTHON ?= /usr/bin/python3
FUZZ_SECONDS ?= 60

.PHONY: deps build run demo demo-screenshots test unit san-build unit-asan fuzz integration bench long soak reload-go deb clean format

deps:
	@bash scripts/install-deps.sh

# The gateway and the load tools (the unit tests are built under sanitizers by unit-asan).
build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS) --target netsvr netsvr-loadgen netsvr-bizsim netsvr_proto_py

run: build
	$(BUILD)/netsvr start -c $(CONFIG)

# The chat example (examples/chat/) on a gateway with its status page; Ctrl-C stops both.
demo: build
	@BUILD=$(abspath $(BUILD)) PYTHON=$(PYTHON) bash examples/chat/run.sh

# docs/img/chat.png and docs/img/status.png, taken by the browser test in headless chromium.
demo-screenshots: build
	@ulimit -n 65536 2>/dev/null; NETSVR_BIN=$(abspath $(BUILD))/netsvr NETSVR_PROTO_PY=$(abspath $(BUILD))/proto_py \
	  NETSVR_SCREENSHOTS=$(abspath docs/img) $(PYTHON) -m pytest -q tests/integration/test_demo_browser.py

# Unit tests and the fuzz targets, built once with clang under ASan+UBSan (the fuzz targets
# reuse the unit tests' objects); ctest runs the unit tests and each fuzz target for a few seconds.
san-build: deps
	@CC=clang CXX=clang++ cmake -S . -B $(ASAN_BUILD) -DNETSVR_SANITIZE=ON -DNETSVR_UNIT_ONLY=ON \
	  -DNETSVR_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-g -O1" >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

unit-asan: san-build
	@cd $(ASAN_BUILD) && ctest --output-on-failure

# Every fuzz target for FUZZ_SECONDS (scripts/fuzz.sh).
fuzz: san-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) bash scripts/fuzz.sh $(ASAN_BUILD)

unit: build
	@cmake --build $(BUILD) -j $(JOBS)
	@cd $(BUILD) && ctest --output-on-failure

# The client edge once more with every plain connection through lws (NETSVR_DIRECT=0: the path
# of wss, compression and kernels without io_uring), then everything (its summary line last).
integration: build
	@NETSVR_DIRECT=0 NETSVR_BIN=$(abspath $(BUILD))/netsvr NETSVR_PROTO_PY=$(abspath $(BUILD))/proto_py \
	  $(PYTHON) -m pytest -q tests/integration/test_conformance.py tests/integration/test_websocket.py \
	  tests/integration/test_hostile_clients.py tests/integration/test_write_path.py
	@ulimit -n 65536 2>/dev/null; NETSVR_BIN=$(abspath $(BUILD))/netsvr NETSVR_PROTO_PY=$(abspath $(BUILD))/proto_py \
	  $(PYTHON) -m pytest -q tests/integration tests/stress

# Unit tests under sanitizers first, then the integration tests (the summary line comes last).
test: unit-asan integration

# netsvr_<version>_amd64.deb (CPack, packaging/deb.cmake) in $(BUILD)/deb.
deb: build
	@cd $(BUILD) && cpack -G DEB -B $(abspath $(BUILD))/deb >/dev/null
	@ls $(abspath $(BUILD))/deb/*.deb

bench: build
	@bash scripts/bench.sh

# Tests that take minutes each (a client held past lws's 310 s validity window).
long: build
	@NETSVR_LONG=1 NETSVR_BIN=$(abspath $(BUILD))/netsvr NETSVR_PROTO_PY=$(abspath $(BUILD))/proto_py \
	  $(PYTHON) -m pytest -q tests/integration/test_long_lived.py

# Steady load with faults (reloads, worker kills, churn, hostile clients) for SOAK_MINUTES
# (default 10); appends its table to docs/RELIABILITY.md.
soak: build
	@ulimit -n 65536 2>/dev/null; NETSVR_BIN=$(abspath $(BUILD))/netsvr NETSVR_PROTO_PY=$(abspath $(BUILD))/proto_py \
	  $(PYTHON) tests/soak/soak.py

# The Go netsvr's own business and stress tool (../shared/anchor-go, heavy profile) against our
# gateway with a reload every 5 s (RELOAD_EVERY): the business must see no reconnect.
reload-go: build
	@NETSVR_BIN=$(abspath $(BUILD))/netsvr bash scripts/reload-under-go-load.sh

format:
	@clang-format -i $$(git ls-files '*.cpp' '*.hpp')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
