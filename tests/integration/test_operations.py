"""Operations (issue 4): --daemon, LogFile with one line per process and SIGUSR1 reopen, an
incompatible binary refused by reload, ShutdownWaitTime cutting a stop short."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import time

import netsvr_harness as h


def test_daemon_returns_once_accepting_and_stop_ends_it(gateway_factory):
    gw = gateway_factory(start=False)
    t0 = time.monotonic()
    cp = subprocess.run([gw.binary, "start", "--daemon", "-c", str(gw.config_path)],
                        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=15, cwd=gw.dir)
    assert cp.returncode == 0, cp.stderr
    # Without LogFile a daemon logs to netsvr.log beside its config file.
    assert (gw.dir / "netsvr.log").exists()
    try:
        # It returned only once every worker accepts: a websocket upgrade succeeds at once.
        st = h.parse_status(gw.cli("status").stdout)
        assert st["master"] and all(w["state"] == "running" for w in st["workers"]), st
        assert len(st["workers"]) == gw.workers
        with socket.create_connection(("127.0.0.1", gw.customer_port), timeout=2) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"Hello netsvr" in s.recv(4096)
        assert time.monotonic() - t0 < 10
        master = st["master"]
        assert master != os.getpid() and h.pid_alive(master)
    finally:
        stop = gw.cli("stop")
    assert stop.returncode == 0, stop.stderr
    h.wait_for(lambda: not h.pid_alive(master), 5, message="daemonised master to exit")
    assert not gw.pid_file.exists()


def test_log_file_names_each_process_and_sigusr1_reopens_it(gateway_factory):
    gw = gateway_factory({"LogFile": "gw.log", "LogLevel": "info"}, start=False)
    gw.start()
    log = gw.dir / "gw.log"
    h.wait_for(lambda: log.exists() and log.read_text().count("worker ready") == gw.workers, 5,
               message="both workers to log readiness into LogFile")
    text = log.read_text()
    assert "master[" in text and "worker 0/" in text and "worker 1/" in text, text[-2000:]
    # logrotate: move the file away, SIGUSR1 the master, new lines go to a fresh file
    rotated = gw.dir / "gw.log.1"
    os.rename(log, rotated)
    master = gw.status()["master"]
    os.kill(master, signal.SIGUSR1)
    # Every process says so in the new file once it has reopened it.
    h.wait_for(lambda: log.exists() and log.read_text().count("log file reopened") == gw.workers + 1, 5,
               message="the master and every worker to reopen LogFile after SIGUSR1")
    biz = gw.business(events=7)  # a worker logs the registration
    h.wait_for(lambda: log.exists() and "registered for events 7" in log.read_text(), 5,
               message="a worker to write into the reopened LogFile")
    assert "registered for events 7" not in rotated.read_text()
    biz.close()


def _gateway_on_own_copy(gateway_factory, netsvr_bin, bin_dir):
    """A started gateway running from its own copy of the binary (bin_dir/netsvr), so that a test
    can replace the binary on disk. Returns (gateway, path of the copy)."""
    own = bin_dir / "netsvr"
    bin_dir.mkdir()
    shutil.copy2(netsvr_bin, own)
    gw = gateway_factory(start=False)
    gw.binary = str(own)
    gw.start()
    return gw, own


def _install_other_layout(own, real) -> None:
    """Puts at `own` a wrapper that runs `real` as a binary of another shared-memory layout."""
    own.write_text(f"#!/bin/sh\nNETSVR_LAYOUT_VERSION=999 exec {real} \"$@\"\n")
    own.chmod(own.stat().st_mode | stat.S_IEXEC)


def test_reload_into_a_binary_of_another_shm_layout_is_refused(gateway_factory, netsvr_bin, tmp_path):
    gw, own = _gateway_on_own_copy(gateway_factory, netsvr_bin, tmp_path / "bin")
    before = gw.status()
    # The new binary on disk reads another shared-memory layout.
    real = tmp_path / "bin" / "netsvr.real"
    os.rename(own, real)
    _install_other_layout(own, real)
    gw.binary = str(real)  # the CLI itself stays the old one
    cp = gw.cli("reload", timeout=40)
    assert cp.returncode == 1, (cp.stdout, cp.stderr)
    assert "refused" in cp.stderr, cp.stderr
    after = gw.status()
    assert [w["pid"] for w in after["workers"]] == [w["pid"] for w in before["workers"]]
    assert all(w["state"] == "running" for w in after["workers"])
    assert "layout" in gw.log_path.read_text()
    # ... and the running generation still serves.
    with socket.create_connection(("127.0.0.1", gw.customer_port), timeout=2) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"Hello netsvr" in s.recv(4096)


def test_shutdown_wait_time_cuts_a_stuck_stop_short_with_status_1(gateway_factory):
    gw = gateway_factory({"ShutdownWaitTime": "1s"}, start=False)
    gw.start()
    st = gw.status()
    # A worker that does not stop (SIGSTOP) must not hold the instance: the master kills it
    # after ShutdownWaitTime and exits with status 1.
    stuck = st["workers"][0]["pid"]
    os.kill(stuck, signal.SIGSTOP)
    t0 = time.monotonic()
    gw.expected_exit = True
    os.kill(st["master"], signal.SIGTERM)
    rc = gw.proc.wait(timeout=10)
    took = time.monotonic() - t0
    assert rc == 1, rc
    assert took < 5, took
    assert not h.pid_alive(stuck)
    instance = st["instance"]
    assert not [f for f in os.listdir("/dev/shm") if f.startswith(f"netsvr-{instance}-")]
    assert not gw.pid_file.exists()


def test_a_worker_that_cannot_start_is_retried_once_a_second_then_comes_back(
        gateway_factory, netsvr_bin, tmp_path):
    gw, own = _gateway_on_own_copy(gateway_factory, netsvr_bin, tmp_path / "bin2")
    real = tmp_path / "bin2" / "netsvr.real"
    shutil.copy2(own, real)
    # While the binary on disk cannot start a worker, a killed worker's slot is retried once a
    # second (not in a tight fork loop) and the other worker stays up.
    os.rename(own, tmp_path / "bin2" / "netsvr.saved")
    _install_other_layout(own, real)
    gw.binary = str(real)
    victim = gw.status()["workers"][0]
    os.kill(victim["pid"], signal.SIGKILL)
    time.sleep(2.5)  # the window in which retries are counted
    failures = gw.log_path.read_text().count("failed before it was ready; retrying in 1 s")
    assert 1 <= failures <= 4, f"{failures} respawn failures in 2.5 s"
    other = [w for w in gw.status()["workers"] if w["slot"] != victim["slot"]]
    assert other and all(w["state"] == "running" and h.pid_alive(w["pid"]) for w in other), other
    # A good binary again: the slot is back at the next retry.
    os.replace(tmp_path / "bin2" / "netsvr.saved", own)
    h.wait_for(lambda: (lambda st: len([w for w in st["workers"] if w["state"] == "running"]) == gw.workers
                        and victim["slot"] in [w["slot"] for w in st["workers"]] and st)(gw.status()),
               5, message="the slot to come back once the binary can start")


def test_a_burst_of_events_above_send_chan_cap_reaches_a_reading_business(gateway_factory, ws):
    # Worker.SendChanCap bounds the packets the kernel has not taken yet, not the packets of one
    # loop turn: 200 clients closing at once give 200 ConnClose events to a business that reads.
    gw = gateway_factory({"Worker": {"SendChanCap": 8}})
    biz = gw.business(events=3)
    clients = ws.connect_many([gw.ws_url(query=f"b={i}") for i in range(200)])
    h.collect_from_links([biz], h.Cmd.ConnOpen, h.pb.ConnOpen, 200, timeout=10)
    for c in clients:
        c.close()
    got = h.collect_from_links([biz], h.Cmd.ConnClose, h.pb.ConnClose, 200, timeout=10)
    assert len({m.uniqId for m in got[biz]}) == 200
