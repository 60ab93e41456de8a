#!/usr/bin/env python3
"""Memory of an idle gateway (issue 12, docs/PERFORMANCE.md "Idle memory"): starts one with
Workers = 2 (stresslib.Gateway: free ports, MaxOnlineNum 0, so the routing tables are sized for
100,000 connections), waits until its memory has settled, and prints for each process VmRSS and
its parts (anonymous, file, shared memory) and Pss, then the total with shared memory counted
once (bench.py's "RSS private + shm"), and the mappings that hold the most.

  NETSVR_BIN=build/netsvr /usr/bin/python3 tests/stress/idle_memory.py [--top N]
"""

from __future__ import annotations

import argparse
import collections
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402
import stresslib as sl  # noqa: E402


def status(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            m = re.match(r"(VmRSS|RssAnon|RssFile|RssShmem):\s+(\d+)", line)
            if m:
                out[m.group(1)] = int(m.group(2))
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Pss:"):
                out["Pss"] = int(line.split()[1])
    return out


def mappings(pid: int) -> collections.Counter:
    """RSS KiB by (file name, permissions), anonymous mappings as [anon]/[heap]/[stack]."""
    held: collections.Counter = collections.Counter()
    key = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                parts = line.split()
                key = (parts[5].rsplit("/", 1)[-1] if len(parts) > 5 else "[anon]", parts[1])
            elif line.startswith("Rss:"):
                held[key] += int(line.split()[1])
    return held


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--top", type=int, default=15, help="mappings to list (summed over the processes)")
    args = ap.parse_args()
    gw = sl.Gateway(sl.gateway_binary(), Path(tempfile.mkdtemp(prefix="netsvr-idle-memory-")), workers=2)
    gw.start()
    try:
        mem = bench.Bench.settled_memory(gw)
        held: collections.Counter = collections.Counter()
        print(f"{'process':8} {'pid':>7} {'VmRSS':>7} {'anon':>7} {'file':>7} {'shmem':>7} {'Pss':>7}  KiB")
        for name, pid in [("master", gw.master)] + [(f"worker{i}", p) for i, p in enumerate(gw.worker_pids)]:
            st = status(pid)
            print(f"{name:8} {pid:7} {st['VmRSS']:7} {st['RssAnon']:7} {st['RssFile']:7} {st['RssShmem']:7} "
                  f"{st['Pss']:7}")
            held.update(mappings(pid))
        print(f"total: {mem['total_kib'] / 1024:.1f} MiB = private (VmRSS - RssShmem) {mem['private_kib'] / 1024:.1f}"
              f" MiB + shared memory counted once {mem['shm_kib'] / 1024:.1f} MiB; VmRSS sum {mem['rss_kib'] / 1024:.1f} MiB")
        print("largest mappings, RSS KiB summed over the processes:")
        for (name, perms), kib in held.most_common(args.top):
            print(f"  {kib:6} {perms} {name}")
    finally:
        gw.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
