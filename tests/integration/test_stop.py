"""Stop under load (issue #4, DESIGN §5): `netsvr stop` (SIGTERM) and SIGINT close every client
with 1001, deliver a ConnClose for each of them to the business before its link closes, and
end the instance within ShutdownWaitTime, leaving no process, no /dev/shm/netsvr-<instance>-*
object and no pid file.

Load helpers (EchoBusiness, LoadClients) come from test_reload.py."""

from __future__ import annotations

import os
import signal
import time

import netsvr_harness as h
from test_reload import LOAD_OVERRIDES, EchoBusiness, LoadClients, assign_uids, fmt_workers, wait_counted

SHUTDOWN_WAIT = 5.0
MARGIN = 2.0
N_CLIENTS = 200


def _loaded_gateway(gateway_factory, ws):
    gw = gateway_factory(dict(LOAD_OVERRIDES, ShutdownWaitTime=f"{SHUTDOWN_WAIT:g}s"))
    # the business does not reconnect: the gateway is going away
    biz = EchoBusiness(gw, reconnect=False)
    load = LoadClients(ws, gw, interval=0.05)
    clients = load.connect(N_CLIENTS, "stop")
    assign_uids(clients, biz)
    st = wait_counted(gw, N_CLIENTS)
    assert all(w["clients"] > 0 for w in st), f"clients not spread: {fmt_workers(st)}"
    load.start_sending()
    load.wait_progress(clients, 10, 15)
    full = gw.status()
    pids = [full["master"]] + [w["pid"] for w in full["workers"]]
    assert gw.shm_files(), "no shared memory while running"
    return gw, biz, load, clients, pids, full["workers"]


def by_worker(uids, before: list[dict]) -> str:
    """Diagnostics: group uniqIds by the worker serial in the high byte of their counter
    (DESIGN §3 rule 4) and say which worker held the business link."""
    groups: dict = {}
    for u in uids:
        groups[int(u[20:22], 16)] = groups.get(int(u[20:22], 16), 0) + 1
    return (f"missing by owner worker serial {groups}; before the stop: {fmt_workers(before)}")


def _check_stopped(gw, biz, load, clients, pids, t_signal, before):
    # every client saw 1001
    load.wait_closed(clients, SHUTDOWN_WAIT + MARGIN)
    codes = {}
    for c in clients:
        codes.setdefault((c.close_code, c.close_reason), []).append(c.tag)
    assert set(k[0] for k in codes) == {1001}, \
        f"close codes: { {k: len(v) for k, v in codes.items()} }"
    late = max(c.closed_at for c in clients) - t_signal
    # the business got every ConnClose, and only then saw its link close
    h.wait_for(lambda: biz.link_closed_at, SHUTDOWN_WAIT + MARGIN,
               message="the gateway to close the business link")
    closed_at, closes_before_eof = biz.link_closed_at[0]
    closes = biz.closes()
    uids = {c.uniq_id for c in clients}
    missing = uids - set(closes)
    assert not missing, (f"{len(missing)} of {len(uids)} ConnClose events never reached the business "
                         f"before its link closed; {by_worker(missing, before)}; e.g. {sorted(missing)[:4]}")
    assert closes_before_eof == len(uids) and set(closes) == uids
    assert all(n == 1 for n in closes.values()), f"duplicate ConnClose: {closes}"
    assert not biz.errs(), biz.errs()
    # nothing is left
    for pid in pids:
        h.wait_for(lambda: not h.pid_alive(pid), 2, message=f"gateway pid {pid} to be gone")
    assert not gw.pid_file.exists(), "pid file left behind"
    assert gw.shm_files() == [], f"shared memory left behind: {gw.shm_files()}"
    return late, closed_at - t_signal


def test_stop_under_load(gateway_factory, ws):
    gw, biz, load, clients, pids, before = _loaded_gateway(gateway_factory, ws)
    try:
        t0 = time.monotonic()
        cp = gw.stop(timeout=SHUTDOWN_WAIT + 15)
        took = time.monotonic() - t0
        assert cp.returncode == 0, f"`netsvr stop` exited {cp.returncode}: {cp.stderr}"
        assert took <= SHUTDOWN_WAIT + MARGIN, f"`netsvr stop` took {took:.2f}s"
        assert gw.proc.returncode == 0, f"master exit status {gw.proc.returncode}"
        last_close, link_close = _check_stopped(gw, biz, load, clients, pids, t0, before)
        print(f"stop: `netsvr stop` returned after {took:.2f}s; last client closed after "
              f"{last_close:.2f}s, business link after {link_close:.2f}s")
    finally:
        biz.stop()
        load.cancel()


def test_sigint_under_load(gateway_factory, ws):
    gw, biz, load, clients, pids, before = _loaded_gateway(gateway_factory, ws)
    try:
        gw.expected_exit = True
        t0 = time.monotonic()
        os.kill(gw.proc.pid, signal.SIGINT)
        rc = gw.proc.wait(timeout=SHUTDOWN_WAIT + 15)
        took = time.monotonic() - t0
        assert rc == 0, f"master exit status {rc} after SIGINT"
        assert took <= SHUTDOWN_WAIT + MARGIN, f"the master took {took:.2f}s to exit"
        last_close, link_close = _check_stopped(gw, biz, load, clients, pids, t0, before)
        print(f"SIGINT: master exited after {took:.2f}s; last client closed after "
              f"{last_close:.2f}s, business link after {link_close:.2f}s")
    finally:
        biz.stop()
        load.cancel()
