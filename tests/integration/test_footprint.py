"""What an idle gateway maps and holds (docs/PERFORMANCE.md, "Idle memory"): libcurl is loaded
only by a process that posts a callback (worker/curl_dl.cpp), libsystemd not at all
(master/sd_notify.cpp); each would add megabytes of RSS to every process. After start-up the
processes give back the pages only start-up needed (common/startup_memory.cpp)."""

from __future__ import annotations

import glob
import os
import time

import pytest

import netsvr_harness as h
from netsvr_harness import Cmd, pb


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


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "lws"])
def test_a_plain_client_holds_one_descriptor_and_no_lws_state(gateway_factory, ws, direct):
    """Issue 12: a plain connection without compression is upgraded by the gateway itself and
    never given to libwebsockets (its ~1.4 KiB per connection, docs/PERFORMANCE.md): one
    descriptor per client. Through lws (NETSVR_DIRECT=0) there are two: lws's and our reader's
    duplicate."""
    gw = gateway_factory({"Workers": 1, "LogLevel": "debug"}, start=False)
    gw.start(env={} if direct else {"NETSVR_DIRECT": "0"})
    if "client frames are sent one send(2) each" in gw.log_path.read_text():
        pytest.skip("this kernel refuses io_uring: every connection goes through lws")
    pid = gw.status()["workers"][0]["pid"]
    before = len(os.listdir(f"/proc/{pid}/fd"))
    clients = ws.connect_many([gw.ws_url(query=f"fd={i}") for i in range(40)])
    h.wait_for(lambda: gw.worker_clients() == {0: 40} or None, message="40 clients counted")
    after = len(os.listdir(f"/proc/{pid}/fd"))
    assert (after - before) / 40 == (1 if direct else 2), (before, after)
    task = gw.task()
    task.send(Cmd.Broadcast, pb.Broadcast(data=b"to all"))
    assert ws.recv_all(clients) == ["to all"] * 40
