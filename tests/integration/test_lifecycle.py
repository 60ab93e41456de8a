"""Process lifecycle: status, stop, instances, config errors, pid file, worker respawn."""

import os
import re
import signal
import time

import netsvr_harness as h
from netsvr_harness import Cmd, pb


def test_status_lists_workers(gateway):
    st = gateway.status()
    assert re.fullmatch(r"[0-9a-f]{16}", st["instance"] or ""), st
    assert st["master"] == gateway.proc.pid
    assert h.pid_alive(st["master"])
    ws_ = st["workers"]
    assert len(ws_) == 2, st
    assert sorted(w["slot"] for w in ws_) == [0, 1]
    pids = [w["pid"] for w in ws_]
    assert len(set(pids)) == 2 and st["master"] not in pids
    for w in ws_:
        assert w["state"] == "running"
        assert h.pid_alive(w["pid"]), f"worker pid {w['pid']} does not exist"
        assert h.pid_ppid(w["pid"]) == st["master"], f"worker {w['pid']} is not a child of the master"
        assert w["clients"] == 0
    assert gateway.pid_file.is_file()
    assert int(gateway.pid_file.read_text().strip()) == st["master"]
    assert gateway.shm_files(), "no /dev/shm/netsvr-<instance>-* file while running"


def test_stop_ends_everything(gateway):
    st = gateway.status()
    pids = [st["master"]] + [w["pid"] for w in st["workers"]]
    shm_before = gateway.shm_files()
    assert shm_before
    cp = gateway.stop()
    assert cp.returncode == 0, cp.stderr
    assert gateway.proc.poll() == 0, f"master exit status {gateway.proc.poll()}"
    for pid in pids:
        h.wait_for(lambda: not h.pid_alive(pid), 5, message=f"pid {pid} to be gone")
    assert not gateway.pid_file.exists(), "pid file left behind"
    assert gateway.shm_files() == [], f"shared memory left behind: {gateway.shm_files()}"


def test_stop_closes_clients_with_1001(gateway, ws):
    clients = h.open_spread(gateway, ws, min_total=2)
    cp = gateway.stop()
    assert cp.returncode == 0, cp.stderr
    for c in clients:
        code, _reason = c.wait_closed(5)
        assert code == 1001, f"client on worker slot {c.slot} closed with {code}"


def test_second_instance_same_config_fails(gateway, ws):
    before = gateway.status()
    cp = gateway.start_expect_exit(timeout=10)
    assert cp.returncode == 1, f"rc={cp.returncode} stderr={cp.stderr[-500:]}"
    assert cp.stderr.strip(), "no message on stderr"
    # the first instance is untouched
    assert gateway.running()
    after = gateway.status()
    assert after["master"] == before["master"]
    assert [w["pid"] for w in after["workers"]] == [w["pid"] for w in before["workers"]]
    assert int(gateway.pid_file.read_text().strip()) == before["master"]
    biz = gateway.business(events=1)
    h.open_client(gateway, ws, "still=1", biz)


def test_two_instances_side_by_side(gateway_factory, ws):
    g1 = gateway_factory(name="one")
    g2 = gateway_factory(name="two")
    s1, s2 = g1.status(), g2.status()
    assert s1["instance"] != s2["instance"]
    assert s1["master"] != s2["master"]
    for gw in (g1, g2):
        biz = gw.business(events=1)
        c = h.open_client(gw, ws, f"inst={gw.name}", biz)
        assert c.uniq_id.startswith(gw.uniq_prefix)
        assert gw.task().request(Cmd.UniqIdCount, b"", pb.UniqIdCountResp).count == 1
    assert g1.stop().returncode == 0
    assert g2.running()
    assert g2.task().request(Cmd.UniqIdCount, b"", pb.UniqIdCountResp).count == 1
    assert g2.status()["master"] == s2["master"]


def test_config_error_names_key(gateway_factory):
    gw = gateway_factory({"Customer": {"SendMessageType": 3}}, start=False)
    cp = gw.start_expect_exit(timeout=10)
    assert cp.returncode == 1
    assert "Customer.SendMessageType" in cp.stderr, cp.stderr[-1000:]
    assert not gw.pid_file.exists()


def test_stale_pid_file_does_not_prevent_start(gateway_factory):
    gw = gateway_factory(start=False)
    stale = h.nonexistent_pid()
    gw.pid_file.write_text(f"{stale}\n")
    gw.start()
    st = gw.status()
    assert st["master"] == gw.proc.pid
    assert int(gw.pid_file.read_text().strip()) == st["master"]


def test_killed_worker_is_respawned(gateway, ws):
    st = gateway.status()
    victim = st["workers"][0]
    os.kill(victim["pid"], signal.SIGKILL)
    t0 = time.monotonic()

    def respawned():
        w = {x["slot"]: x for x in gateway.status()["workers"]}.get(victim["slot"])
        return w if w and w["pid"] != victim["pid"] else None

    neww = h.wait_for(respawned, 2.0, message=f"a new worker pid for slot {victim['slot']}")
    assert time.monotonic() - t0 <= 2.5
    assert h.pid_alive(neww["pid"])
    h.wait_for(lambda: all(w["state"] == "running" for w in gateway.status()["workers"]), 5,
               message="all workers running after respawn")
    assert gateway.running()
    # new clients connect, on both workers (the respawned one included)
    biz = gateway.business(events=1)
    clients = h.open_spread(gateway, ws, biz, min_total=2)
    assert victim["slot"] in {c.slot for c in clients}
