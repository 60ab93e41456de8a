#!/usr/bin/python3
"""RSS per active connection of the probe server with and without permessage-deflate.

For each mode a fresh server (tests/unit/pm_deflate_probe_server, path in PMD_PROBE) gets
WARM connections first (pools, caches, lws tables), then N more; every connection sends
ROUNDS messages of 3 KB and reads the echo, and stays open. The server's VmRSS is read before
and after the N: the difference divided by N is the cost of one active connection.
Mode "midmessage" leaves each connection inside a compressed message (first fragment sent,
FIN not yet), the case where an inflater is held.

    PMD_PROBE=/tmp/pmd/probe /usr/bin/python3 tests/unit/pm_deflate_memory.py [N]
"""
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pm_deflate_probe_test import Client, Server, deflate, send_compressed, expect_echo  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
WARM = 50
ROUNDS = 3
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])


def activate(cl, compressed, rnd_text):
    for _ in range(ROUNDS):
        if compressed:
            send_compressed(cl, rnd_text)
        else:
            cl.send_frame(1, rnd_text)
        expect_echo(cl, rnd_text, "memory")


def run(mode):
    srv = Server(level=6)
    compressed = mode != "plain"
    offer = "permessage-deflate; client_max_window_bits" if compressed else None
    text = (" ".join(str(i * 7919 % 10007) for i in range(700))).encode()[:3072]
    keep = []
    try:
        for _ in range(WARM):
            cl = Client(srv.port, ext=offer)
            activate(cl, compressed, text)
            keep.append(cl)
        time.sleep(0.3)
        before = rss_kb(srv.proc.pid)
        for _ in range(N):
            cl = Client(srv.port, ext=offer)
            assert (cl.ext is not None) == compressed
            activate(cl, compressed, text)
            if mode == "midmessage":
                comp = deflate(text * 4)
                cl.send_frame(1, comp[: len(comp) // 2], fin=False, rsv=0x40)
            keep.append(cl)
        time.sleep(0.5)
        after = rss_kb(srv.proc.pid)
        return before, after
    finally:
        for cl in keep:
            cl.close()
        srv.stop()


if __name__ == "__main__":
    results = {}
    for mode in ("plain", "compressed", "midmessage"):
        before, after = run(mode)
        per = (after - before) * 1024 / N
        results[mode] = per
        print(f"{mode:11s}: VmRSS {before} kB -> {after} kB for {N} connections: {per / 1024:.2f} KiB each")
    diff = results["compressed"] - results["plain"]
    print(f"compressed - plain: {diff / 1024:.2f} KiB per active connection (budget 16 KiB)")
    sys.exit(0 if diff < 16 * 1024 else 1)
