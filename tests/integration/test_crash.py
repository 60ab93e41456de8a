"""Crash recovery (issue #4, DESIGN §5, DECISIONS 3): a worker killed with SIGKILL is respawned
within a second in the same slot; its connections vanish from every table and query; the
registered business gets exactly one ConnClose per client that was on it (sent by a live worker);
the other workers never stop serving, and a business link that was on the dead worker is gone
(the business reconnects, and the ConnClose events wait for it).

Load helpers (EchoBusiness, LoadClients) come from test_reload.py."""

from __future__ import annotations

import os
import signal
import threading
import time

import netsvr_harness as h
from test_reload import (LOAD_OVERRIDES, EchoBusiness, LoadClients, assign_uids, check_exact,
                         fmt_workers, query_count, query_list, wait_counted, workers)

RESPAWN_LIMIT = 1.0  # seconds from SIGKILL to a new pid for the slot in `netsvr status`


def wait_respawn(gw: h.Gateway, victim: dict, t_kill: float) -> tuple[dict, float]:
    """Poll status until the victim's slot shows a worker with another pid (any state) and
    return it with the time it took; fails if that takes more than RESPAWN_LIMIT."""
    def respawned():
        for w in workers(gw):
            if w["slot"] == victim["slot"] and w["pid"] != victim["pid"] and w["state"] != "exited":
                return w
        return None
    w = h.wait_for(respawned, RESPAWN_LIMIT, interval=0.01,
                   message=lambda: f"a new worker in slot {victim['slot']} after SIGKILL of pid "
                                   f"{victim['pid']} (status: {fmt_workers(workers(gw))})")
    took = time.monotonic() - t_kill
    h.wait_for(lambda: any(x["pid"] == w["pid"] and x["state"] == "running" for x in workers(gw)), 5,
               message=f"respawned worker {w['pid']} to be running")
    return w, took


def task_link_off(gw: h.Gateway, avoid_serial: int, tries: int = 40) -> h.BusinessLink:
    """A task link accepted by another worker than avoid_serial (from the tasks= counts)."""
    for _ in range(tries):
        before = {w["serial"]: w.get("tasks", 0) for w in workers(gw)}
        link = gw.task()
        after = h.wait_for(lambda: (lambda a: a if sum(a.values()) > sum(before.values()) else None)(
            {w["serial"]: w.get("tasks", 0) for w in workers(gw)}), 3, message="tasks= to grow")
        grown = [s for s in after if after[s] > before.get(s, 0)]
        if grown and avoid_serial not in grown:
            return link
        link.close()
        h.wait_for(lambda: sum(w.get("tasks", 0) for w in workers(gw)) == sum(before.values()), 3,
                   message="closed task link to be counted off")
    raise AssertionError(f"no task link landed off serial {avoid_serial} in {tries} tries")


def test_kill_worker_under_load(gateway_factory, ws):
    gw = gateway_factory(dict(LOAD_OVERRIDES, Workers=3))
    biz = EchoBusiness(gw)
    load = LoadClients(ws, gw, interval=0.05)
    try:
        clients = load.connect(100, "crash")
        assign_uids(clients, biz)
        st = wait_counted(gw, 100)
        # the victim holds clients but neither the business link nor its task link, so every
        # survivor's echo path stays intact
        cands = [w for w in st if w["clients"] > 0 and w["links"] == 0 and w["tasks"] == 0]
        assert cands, f"no worker with clients and no business link: {fmt_workers(st)}"
        victim = cands[0]
        load.start_sending()
        load.wait_progress(clients, 10, 15)

        os.kill(victim["pid"], signal.SIGKILL)
        t_kill = time.monotonic()
        neww, took = wait_respawn(gw, victim, t_kill)
        # exactly the victim's clients are disconnected
        h.wait_for(lambda: sum(1 for c in clients if c.closed_at) >= victim["clients"], 5,
                   message=lambda: f"{victim['clients']} clients of the killed worker to see their "
                                   f"connection end ({sum(1 for c in clients if c.closed_at)} did)")
        lost = [c for c in clients if c.closed_at]
        survivors = [c for c in clients if not c.closed_at]
        assert len(lost) == victim["clients"], \
            f"{len(lost)} clients disconnected, the killed worker had {victim['clients']}"
        # the survivors keep being served
        load.wait_progress(survivors, 20, 10)
        # the business hears of each lost client once (checked again for duplicates at the end)
        biz.wait_closes([c.uniq_id for c in lost], 5)
        # every table forgot the dead worker's clients
        task = gw.task()
        assert query_count(task) == len(survivors)
        assert sorted(query_list(task)) == sorted(c.uniq_id for c in survivors)
        ws_ = workers(gw)
        assert sum(w["clients"] for w in ws_) == len(survivors), fmt_workers(ws_)
        # new clients connect, also to the respawned worker, and are served
        new = load.connect(30, "after")
        assign_uids(new, biz)
        ws_ = wait_counted(gw, len(survivors) + 30)
        on_new = [w["clients"] for w in ws_ if w["pid"] == neww["pid"]]
        assert on_new and on_new[0] > 0, f"no new client on the respawned worker: {fmt_workers(ws_)}"
        load.start_sending(new)
        load.wait_progress(survivors + new, 10, 10)
        load.stop_sending()
        load.wait_echoes(survivors + new, biz=biz)
        assert not any(c.closed_at for c in survivors + new)
        check_exact(survivors + new, biz)
        closes = biz.closes()
        dup = {u: n for u, n in closes.items() if n != 1}
        assert not dup, f"ConnClose more than once: {dup}"
        assert set(closes) == {c.uniq_id for c in lost}, \
            f"ConnClose for clients that are still open: {set(closes) - {c.uniq_id for c in lost}}"
        assert biz.reconnects == 0 and not biz.errs(), biz.errs()
        print(f"killed slot {victim['slot']} pid {victim['pid']} with {len(lost)} of 100 clients; "
              f"slot respawned as pid {neww['pid']} after {took:.3f}s")
    finally:
        biz.stop()
        load.cancel()


def test_kill_worker_with_business_link_while_querying(gateway_factory, ws):
    gw = gateway_factory(dict(LOAD_OVERRIDES, Workers=3))
    biz = EchoBusiness(gw, echo=False)
    load = LoadClients(ws, gw)
    try:
        clients = load.connect(30, "q")
        assign_uids(clients, biz)
        st = wait_counted(gw, 30)
        victim = [w for w in st if w["links"] == 1][0]
        assert victim["clients"] > 0, f"the business link's worker has no client: {fmt_workers(st)}"
        task = task_link_off(gw, victim["serial"])

        rounds: list[tuple[float, int, list, float]] = []
        errors: list[BaseException] = []
        stop = threading.Event()

        def querier():
            try:
                while not stop.is_set():
                    t0 = time.monotonic()
                    n = query_count(task, 2.0)
                    lst = query_list(task, 2.0)
                    rounds.append((t0, n, sorted(lst), time.monotonic() - t0))
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)

        th = threading.Thread(target=querier, daemon=True)
        th.start()
        try:
            h.wait_for(lambda: len(rounds) >= 5 or errors, 5, message="five query rounds")
            os.kill(victim["pid"], signal.SIGKILL)
            t_kill = time.monotonic()
            neww, took = wait_respawn(gw, victim, t_kill)
            h.wait_for(lambda: sum(1 for c in clients if c.closed_at) >= victim["clients"], 5,
                       message="the killed worker's clients to see their connection end")
            lost = [c for c in clients if c.closed_at]
            survivors = [c for c in clients if not c.closed_at]
            assert len(lost) == victim["clients"]
            want = sorted(c.uniq_id for c in survivors)
            h.wait_for(lambda: errors or any(r[0] > t_kill + took and r[1] == len(survivors) and r[2] == want
                                             for r in list(rounds)), 5,
                       message=lambda: f"a query answer without the dead clients (last: count "
                                       f"{rounds[-1][1]}, {len(rounds[-1][2])} ids)")
            n = len(rounds)
            h.wait_for(lambda: errors or len(rounds) >= n + 5, 5, message="five more rounds")
        finally:
            stop.set()
            th.join(10)
        assert not th.is_alive(), "the query loop hangs"
        assert not errors, f"a query got no answer: {errors[0]!r}"
        during = [r for r in rounds if t_kill <= r[0] <= t_kill + took]
        slowest = max(r[3] for r in rounds)
        for r in rounds:
            assert set(want) <= set(r[2]), "a live client missing from UniqIdList"
        late = [r for r in rounds if r[0] > t_kill + took + 1.0]
        assert all(r[1] == len(survivors) and r[2] == want for r in late), \
            "the dead clients came back in a query"
        # the business lost its link with the worker, reconnected, and got every ConnClose once
        h.wait_for(lambda: biz.reconnects >= 1, 5, message="the business to reconnect")
        biz.wait_closes([c.uniq_id for c in lost], 12)
        # no late duplicates: a survivor leaves, and its ConnClose comes after the others
        load.close([survivors[0]])
        biz.wait_closes([survivors[0].uniq_id], 5)
        closes = biz.closes()
        assert {u: n for u, n in closes.items() if n != 1} == {}, f"duplicate ConnClose: {closes}"
        assert set(closes) == {c.uniq_id for c in lost} | {survivors[0].uniq_id}
        assert not biz.errs(), biz.errs()
        print(f"killed pid {victim['pid']} (business link, {len(lost)} clients); respawned after "
              f"{took:.3f}s; {len(rounds)} query rounds, {len(during)} during the respawn, slowest "
              f"{slowest:.3f}s; business reconnected {biz.reconnects}x")
    finally:
        biz.stop()
        load.cancel()
