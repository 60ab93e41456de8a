"""What an idle gateway maps and holds (docs/PERFORMANCE.md, "Idle memory"): libcurl is loaded
only by a process that posts a callback (worker/curl_dl.cpp), libsystemd not at all
(master/sd_notify.cpp); each would add megabytes of RSS to every process. After start-up the
processes give back the pages only start-up needed (common/startup_memory.cpp)."""

from __future__ import annotations

import glob
import os
import time


def mapped_libraries(pid: int) -> set[str]:
    libs = set()
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and ".so" in parts[5]:
                libs.add(parts[5].rsplit("/", 1)[-1])
    return libs


def test_idle_gateway_maps_neither_libcurl_nor_libsystemd(gateway):
    st = gateway.status()
    pids = [st["master"]] + [w["pid"] for w in st["workers"]]
    assert len(pids) == 3, st
    for pid in pids:
        libs = mapped_libraries(pid)
        assert not [x for x in libs if x.startswith(("libcurl", "libsystemd", "libgnutls"))], (pid, libs)


def gateway_memory_kib(st: dict) -> int:
    """Sum over master and workers of VmRSS - RssShmem, plus the instance's shared-memory files
    counted once (their allocated blocks)."""
    total = 0
    for pid in [st["master"]] + [w["pid"] for w in st["workers"]]:
        fields = {}
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                k, _, v = line.partition(":")
                fields[k] = v
        total += int(fields["VmRSS"].split()[0]) - int(fields["RssShmem"].split()[0])
    for p in glob.glob(f"/dev/shm/netsvr-{st['instance']}-*"):
        total += os.stat(p).st_blocks * 512 // 1024
    return total


def test_idle_gateway_takes_at_most_16_mib(gateway):
    """Issue 12: an idle gateway with 2 workers, shared memory counted once, within the Go
    gateway's 16 MiB. The workers give back the linker's tables at their first sweep, as their
    loop starts."""
    st = gateway.status()
    deadline = time.monotonic() + 10
    while (kib := gateway_memory_kib(st)) > 16 * 1024 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert kib <= 16 * 1024, f"{kib} KiB"
    for w in st["workers"]:
        with open(f"/proc/{w['pid']}/environ", "rb") as f:
            assert b"LD_BIND_NOW=1" in f.read().split(b"\0")
