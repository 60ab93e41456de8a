#!/usr/bin/env bash
# `make fuzz`: runs every fuzz target built in <build>/fuzz for FUZZ_SECONDS (default 60) each,
# from its committed seeds (tests/fuzz/<name>/) plus what earlier runs found
# (<build>/fuzz/corpus/<name>/), then prints one line per target. A crash leaves its input in
# <build>/fuzz/crash/ and makes the script fail after the other targets have run; add that input
# to tests/fuzz/<name>/ as crash-<what> with the fix, so that `make test` replays it.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-san}
SECS=${FUZZ_SECONDS:-60}
bins=("$BUILD"/fuzz/fuzz_*)
[ -x "${bins[0]}" ] || { echo "fuzz: no targets in $BUILD/fuzz" >&2; exit 1; }
mkdir -p "$BUILD/fuzz/logs" "$BUILD/fuzz/crash"
failed=0
summary=()
for bin in "${bins[@]}"; do
  name=${bin##*/fuzz_}
  log="$BUILD/fuzz/logs/$name.log"
  mkdir -p "$BUILD/fuzz/corpus/$name"
  dict=()
  [ -f "tests/fuzz/$name.dict" ] && dict=("-dict=tests/fuzz/$name.dict")
  echo "fuzz: $name for ${SECS}s (log: $log)"
  "$bin" -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 "${dict[@]}" \
    -artifact_prefix="$BUILD/fuzz/crash/$name-" "$BUILD/fuzz/corpus/$name" "tests/fuzz/$name" \
    >"$log" 2>&1
  rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  corpus=$(find "$BUILD/fuzz/corpus/$name" "tests/fuzz/$name" -type f | wc -l)
  result=ok
  if [ $rc -ne 0 ]; then
    result="FAILED (exit $rc): $(grep -m1 -E 'ERROR|check failed|deadly signal' "$log")"
    failed=1
  fi
  summary+=("$(printf '%-12s %12s executions  %6s inputs  %s' "$name" "${runs:-?}" "$corpus" "$result")")
done
printf '%s\n' "${summary[@]}"
exit $failed
