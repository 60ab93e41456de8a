#!/usr/bin/env bash
# Benchmark of the gateway with the load tools in tests/stress (netsvr-loadgen, netsvr-bizsim).
#
#   make bench             quick mode: a few thousand connections, about 1-2 minutes
#   BENCH=full make bench  full mode: 50,000 connections with 2 KiB sessions, ~100k msgs/s group chat
#   NETSVR_GO_BIN=/path/to/go/netsvr make bench
#                          side by side: every scenario also runs against the Go netsvr, after ours,
#                          and the report shows both columns and the ratio C++ / Go
#
# Builds nothing itself (the Makefile builds first); uses $BUILD (default build/). Starts its own
# gateways on free ports with generated configs, so a running development gateway is not
# disturbed. Writes docs/BENCHMARKS.md (replacing the section of this mode) and prints the table;
# logs and JSON reports stay in a temporary directory (printed at the start).
set -euo pipefail
cd "$(dirname "$0")/.."

MODE="${BENCH:-quick}"
BUILD_DIR="${BUILD:-build}"
PYTHON="${PYTHON:-/usr/bin/python3}"

case "$MODE" in
  quick|full) ;;
  *) echo "bench: BENCH must be quick or full (got '$MODE')" >&2; exit 2 ;;
esac

# Every client connection is a file descriptor in loadgen and one in a gateway worker.
# Raise the hard limit where allowed (root with CAP_SYS_RESOURCE), then the soft limit to it.
ulimit -Hn 1048576 2>/dev/null || true
ulimit -Sn "$(ulimit -Hn)" 2>/dev/null || true
echo "bench: open-files limit $(ulimit -Sn)"

for b in netsvr netsvr-loadgen netsvr-bizsim; do
  if [ ! -x "$BUILD_DIR/$b" ]; then
    echo "bench: $BUILD_DIR/$b is missing; build first (make build)" >&2
    exit 2
  fi
done

if [ -n "${MAKELEVEL:-}" ]; then CMD="make bench"; else CMD="scripts/bench.sh"; fi
[ "$BUILD_DIR" != build ] && CMD="BUILD=$BUILD_DIR $CMD"
[ "$MODE" = full ] && CMD="BENCH=full $CMD"
if [ -n "${NETSVR_GO_BIN:-}" ]; then
  if [ ! -x "$NETSVR_GO_BIN" ]; then
    echo "bench: NETSVR_GO_BIN=$NETSVR_GO_BIN is not an executable file" >&2
    exit 2
  fi
  CMD="NETSVR_GO_BIN=$NETSVR_GO_BIN $CMD"
fi

exec "$PYTHON" tests/stress/bench.py --mode "$MODE" --build "$BUILD_DIR" --command "$CMD"
