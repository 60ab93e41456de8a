"""What an idle gateway maps (docs/PERFORMANCE.md, "Idle memory"): libcurl is loaded only by a
process that posts a callback (worker/curl_dl.cpp), and libsystemd not at all
(master/sd_notify.cpp). Each would add megabytes of RSS to every process."""

from __future__ import annotations


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
