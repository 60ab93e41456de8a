#!/usr/bin/env bash
# Reloads our gateway every RELOAD_EVERY seconds (5) while the Go netsvr's own sample business and
# stress tool (../shared/anchor-go, heavy profile) run against it, then shows what the business
# saw: its log must show no reconnect. Driven by the anchor's perf/side_by_side.sh (which runs
# the Go gateway first, without reloads, as the reference).
#   scripts/reload-under-go-load.sh [OUTDIR]
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${NETSVR_BIN:-$here/build/netsvr}
anchor=${GO_ANCHOR:-$here/../shared/anchor-go}
every=${RELOAD_EVERY:-5}
out=${1:-$(mktemp -d -t reload-go.XXXXXX)}
mkdir -p "$out"
[ -x "$anchor/perf/side_by_side.sh" ] || { echo "no Go anchor at $anchor"; exit 2; }

"$anchor/perf/side_by_side.sh" -p heavy -l cpp -o "$out" "$bin start -c {config}" >"$out/report.txt" 2>&1 &
sbs=$!
reloads=0 failed=0
: >"$out/reloads.log"
while kill -0 "$sbs" 2>/dev/null; do
  if [ -f "$out/cpp/events" ] && ! grep -q stress_end "$out/cpp/events"; then
    sleep "$every"
    grep -q stress_end "$out/cpp/events" && continue
    if "$bin" reload -c "$out/cpp/netsvr.toml" >>"$out/reloads.log" 2>&1; then
      reloads=$((reloads + 1))
    else
      failed=$((failed + 1))
    fi
  else
    sleep 0.2
  fi
done
wait "$sbs"
rc=$?
echo "== side_by_side.sh (exit $rc): the Go gateway without reloads, then ours with them"
tail -n 12 "$out/report.txt"
echo "== reloads during our run: $reloads succeeded, $failed failed (log: $out/reloads.log)"
echo "== our gateway's log: handovers"
grep -E "reload done|reload refused|business links moved|stayed" "$out/cpp/gateway.log" | tail -n 6
echo "== the Go business's log, our run vs the Go run (lines mentioning connect/register/close/error)"
for run in go cpp; do
  n=$(grep -ciE "connect|regist|clos|error|fail|EOF" "$out/$run/business.log")
  echo "$run: $n such lines"
  grep -iE "connect|regist|clos|error|fail|EOF" "$out/$run/business.log" | head -n 8
done
echo "output in $out"
[ "$rc" -eq 0 ] && [ "$failed" -eq 0 ]
