"""Reload handover of business links (issue #10, DESIGN "Lifecycle"): a reload closes no business
link. Every worker-port and task-port link of the old generation moves, as the live socket, to a
worker of the new one, with its registration, connId, place in the round robin and unprocessed
input; the business sees no EOF, no second RegisterResp, nothing lost, duplicated or reordered.
A move that fails leaves the link where it was, still served, and `netsvr reload` exits 1.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
import time

import netsvr_harness as h
from netsvr_harness import Cmd, pb
from test_reload import (LOAD_OVERRIDES, EchoBusiness, LoadClients, assign_uids, check_exact,
                         check_reloaded, do_reload, fmt_workers, newest_gen, of_gen, query_count,
                         query_list, wait_counted, wait_only_generation, workers)


def old_hold_no_links(gw: h.Gateway, gen: int):
    """Every worker older than `gen` holds no business link (they serve their clients only)."""
    ws_ = workers(gw)
    holders = [w for w in ws_ if w["gen"] < gen and (w.get("links", 0) or w.get("tasks", 0))]
    return None if holders else ws_


def no_eof(biz: EchoBusiness) -> None:
    with biz.lock:
        assert not biz.link_closed_at, f"the gateway closed the worker link: {biz.link_closed_at}"
        assert not biz.task_closed_at, f"the gateway closed the task link: {biz.task_closed_at}"
    assert biz.reconnects == 0 and biz.task_reconnects == 0


def test_business_links_survive_five_reloads_under_load(gateway_factory, ws, tmp_path):
    gw = gateway_factory(LOAD_OVERRIDES)
    gen = newest_gen(workers(gw))
    biz = EchoBusiness(gw, reconnect=False)  # one worker link, one task link (the echoes)
    query = gw.task()  # a second task link, asked after every reload
    copy = tmp_path / "upgrade" / "netsvr"
    copy.parent.mkdir()
    shutil.copy2(gw.binary, copy)
    load = LoadClients(ws, gw, interval=0.05)
    try:
        clients = load.connect(300, "ho")
        assign_uids(clients, biz)
        wait_counted(gw, 300)
        load.start_sending()
        load.wait_progress(clients, 10, 15)
        old_pids = set()
        for n, binary in ((3, None), (2, None), (2, copy), (3, copy), (2, None)):
            old_pids |= {w["pid"] for w in workers(gw)}
            if binary is None:
                cp, _ = do_reload(gw, {"Workers": n})
            else:  # `netsvr reload` run from another binary: the new generation runs that one
                gw.config = h.merge_config(gw.config, {"Workers": n})
                gw.write_config()
                cp = subprocess.run([str(binary), "reload", "-c", str(gw.config_path)],
                                    capture_output=True, text=True, timeout=60)
            assert cp.returncode == 0, f"reload to Workers={n}: rc={cp.returncode} {cp.stderr}"
            ws_ = check_reloaded(gw, gen, n)
            gen += 1
            want = os.path.realpath(binary or gw.binary)
            for w in of_gen(ws_, gen):
                assert os.path.realpath(f"/proc/{w['pid']}/exe") == want, \
                    f"worker {w['pid']} of generation {gen} does not run {want}"
            # when `reload` returns, the links are on the new generation already
            ws_ = old_hold_no_links(gw, gen)
            assert ws_ is not None, f"old workers still hold links: {fmt_workers(workers(gw))}"
            assert sum(w.get("links", 0) for w in ws_) == 1, fmt_workers(ws_)
            assert sum(w.get("tasks", 0) for w in ws_) == 2, fmt_workers(ws_)
            load.wait_progress(load.clients, 20, 20)
            assert query_count(query) == len(load.clients), "UniqIdCount on the moved task link"
            no_eof(biz)
        load.stop_sending()
        load.wait_echoes(timeout=15, biz=biz)
        closed = [f"{c.tag}: {c.close_code}" for c in load.clients if c.closed_at]
        assert not closed, f"{len(closed)} clients were disconnected: {closed[:10]}"
        check_exact(load.clients, biz)
        uids = [c.uniq_id for c in load.clients]
        assert sorted(query_list(query)) == sorted(uids)
        # the clients leave: every ConnClose reaches the business on its one worker link, and
        # the old generations, which hold no link, exit
        load.close()
        load.wait_closed(load.clients)
        biz.wait_closes(uids, 20)
        wait_only_generation(gw, gen, 2, 20)
        for pid in old_pids:
            h.wait_for(lambda: not h.pid_alive(pid), 10, message=f"old worker {pid} to exit")
        with biz.lock:
            dup_open = {u: k for u, k in biz.open_count.items() if k != 1}
            dup_close = {u: k for u, k in biz.close_count.items() if k != 1}
        assert not dup_open and not dup_close, (list(dup_open.items())[:5], list(dup_close.items())[:5])
        assert not biz.errs(), biz.errs()[:10]
        assert biz.echo_failures == 0
        assert query_count(query) == 0
        no_eof(biz)
    finally:
        biz.stop()
        load.cancel()


def test_task_link_writing_every_millisecond_through_a_reload(gateway_factory, ws):
    gw = gateway_factory({"LogLevel": "info"})
    load = LoadClients(ws, gw)
    (client,) = load.connect(1, "ms")
    task = gw.task()
    client.uniq_id = h.wait_for(lambda: (query_list(task) or [None])[0], 5, message="the client's uniqId")
    sent = 0
    stop = threading.Event()
    errors: list[str] = []

    def writer():
        nonlocal sent
        try:
            while not stop.is_set():
                task.send(Cmd.SingleCast, pb.SingleCast(uniqId=client.uniq_id,
                                                        data=f"{client.tag}|{sent}".encode()))
                sent += 1
                time.sleep(0.001)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        h.wait_for(lambda: len(client.got) >= 200, 10, message="SingleCasts before the reload")
        gen = newest_gen(workers(gw))
        cp, _ = do_reload(gw)
        assert cp.returncode == 0, cp.stderr
        check_reloaded(gw, gen, 2)
        mark = sent
        h.wait_for(lambda: len(client.got) >= mark + 200, 10, message="SingleCasts after the reload")
    finally:
        stop.set()
        t.join(5)
    assert not errors, errors
    h.wait_for(lambda: len(client.got) >= sent, 10,
               message=lambda: f"all {sent} SingleCasts (got {len(client.got)})")
    assert not client.bad, client.bad[:5]  # each number once, in order
    assert client.got == list(range(sent))
    # the link still answers, on the new generation
    assert query_count(task) == 1
    ws_ = h.wait_for(lambda: old_hold_no_links(gw, gen + 1), 5, message="links off the old generation")
    assert sum(w.get("tasks", 0) for w in of_gen(ws_, gen + 1)) == 1, fmt_workers(ws_)


def test_new_worker_killed_during_the_handover_leaves_the_links_where_they_were(
        gateway_factory, ws, monkeypatch):
    # Each new worker waits 3 s before it answers its first Offer: the window to kill it in.
    monkeypatch.setenv("NETSVR_TEST_HANDOVER_PAUSE_MS", "3000")
    gw = gateway_factory(LOAD_OVERRIDES)
    gen = newest_gen(workers(gw))
    biz = EchoBusiness(gw, reconnect=False)
    query = gw.task()
    load = LoadClients(ws, gw, interval=0.05)
    try:
        clients = load.connect(20, "kill")
        assign_uids(clients, biz)
        load.start_sending()
        load.wait_progress(clients, 5, 10)
        before = {w["serial"]: (w.get("links", 0), w.get("tasks", 0)) for w in workers(gw)}
        reload = subprocess.Popen([gw.binary, "reload", "-c", str(gw.config_path)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        new = h.wait_for(lambda: (lambda w: w if len(w) == 2 and all(x["state"] == "running" for x in w)
                                  else None)(of_gen(workers(gw), gen + 1)), 10,
                         message="the new generation running")
        time.sleep(0.5)  # the Offers are out; the new workers sit in their 3 s pause
        for w in new:
            os.kill(w["pid"], signal.SIGKILL)
        out, err = reload.communicate(timeout=30)
        assert reload.returncode == 1, f"reload rc={reload.returncode}: {out} {err}"
        assert "stayed" in err and "went away" in err, err
        # the links are served where they were: echoes flow, the task link answers
        load.wait_progress(clients, 20, 15)
        assert query_count(query) == len(clients)
        no_eof(biz)
        after = {w["serial"]: (w.get("links", 0), w.get("tasks", 0)) for w in workers(gw)
                 if w["gen"] == gen}
        assert after == {s: v for s, v in before.items() if s in after}, (before, after)
        # the next reload moves them
        gen = newest_gen(workers(gw))
        cp, _ = do_reload(gw)
        assert cp.returncode == 0, cp.stderr
        h.wait_for(lambda: old_hold_no_links(gw, gen + 1), 5, message="links off the old generations")
        load.wait_progress(clients, 20, 15)
        assert query_count(query) == len(clients)
        load.stop_sending()
        load.wait_echoes(timeout=15, biz=biz)
        check_exact(clients, biz)
        no_eof(biz)
        assert not biz.errs(), biz.errs()[:10]
    finally:
        biz.stop()
        load.cancel()


def test_reload_onto_a_binary_that_cannot_read_the_handover_format_is_refused(
        gateway_factory, monkeypatch):
    # The running generation claims a handover format no binary reads (as a future one would).
    monkeypatch.setenv("NETSVR_TEST_HANDOVER_VERSION", "999")
    gw = gateway_factory({"LogLevel": "info"})
    gen = newest_gen(workers(gw))
    biz = gw.business(events=7)
    task = gw.task()
    cp, _ = do_reload(gw)
    assert cp.returncode == 1, cp.stderr
    assert "generation" in cp.stderr, cp.stderr
    assert "format 999" in gw.log_path.read_text(errors="replace")
    ws_ = workers(gw)
    assert [w["gen"] for w in ws_ if w["state"] == "running"] == [gen, gen], fmt_workers(ws_)
    # both links are served by the generation that kept running
    assert query_count(task) == 0
    biz.send(Cmd.Unregister, pb.UnRegisterReq(connId=biz.conn_id))
    cmd, _ = biz.recv(timeout=5)
    assert cmd == Cmd.Unregister
