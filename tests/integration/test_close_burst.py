"""A burst of closes on a worker whose ConnClose events go to another worker's business link
(issue 12: 10,000 clients leaving at once queued 10 MiB of events on the peer link). Once the peer
link is full, each departed connection waits in the routing table, out of every index and count,
and its ConnClose is built when the link drains: the business still gets exactly one ConnClose per
client with its session, customerId and topics, and a crash announces the ones still waiting."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import netsvr_harness as h
from netsvr_harness import Cmd, cmd_pb2, pb
from test_crash import wait_respawn
from test_reload import workers

SESSION_BYTES = 16 * 1024  # 40 of them are three times a unix socket's send buffer (208 KiB)
ON_OTHER_WORKER = 40
WAITING_LOG = "ConnClose events wait in the table"


def serial_of(uniq_id: str) -> int:
    return int(uniq_id[20:22], 16)  # the counter's high byte (common/uniqid.hpp)


def clients_off(gw: h.Gateway, pool: h.WsLoop, biz: h.BusinessLink, serial: int, want: int):
    """Clients on other workers than `serial`, at least `want` of them; also returns the rest."""
    off, on = [], []
    for _ in range(10):
        tags = [h.next_tag("burst") for _ in range(2 * want)]
        clients = pool.connect_many([gw.ws_url(query=t) for t in tags])
        for tag, c in zip(tags, clients):
            ev = biz.recv_matching(Cmd.ConnOpen, pb.ConnOpen, lambda m, t=tag: m.rawQuery == t)
            c.uniq_id = ev.uniqId
            (on if serial_of(ev.uniqId) == serial else off).append(c)
        if len(off) >= want:
            return off, on
    raise AssertionError(f"only {len(off)} of {want} clients landed off worker serial {serial}")


def close_all(pool: h.WsLoop, clients) -> None:
    async def go():
        await asyncio.gather(*(c.ws.close() for c in clients))
    pool.run(go(), 20)


def seed(gw: h.Gateway, clients) -> dict:
    """A distinct session, customerId and topics per client; returns what ConnClose must carry."""
    want = {}
    task = gw.task()
    for i, c in enumerate(clients):
        session = f"{i:04d}" * (SESSION_BYTES // 4)
        want[c.uniq_id] = (session, f"cust-{i % 7}", sorted([f"room-{i}", "all"]))
        task.send(cmd_pb2.ConnInfoUpdate, pb.ConnInfoUpdate(
            uniqId=c.uniq_id, newSession=session, newCustomerId=f"cust-{i % 7}",
            newTopics=[f"room-{i}", "all"]))
    # read-your-writes on one task link: the updates are applied once this answers
    r = task.request(cmd_pb2.ConnInfo, pb.ConnInfoReq(uniqIds=[c.uniq_id for c in clients],
                                                  reqSession=True, reqCustomerId=True,
                                                  reqTopic=True), pb.ConnInfoResp)
    got = {k: (v.session, v.customerId, sorted(v.topics)) for k, v in r.items.items()}
    assert got == want, "the seeded state did not land"
    task.close()
    return want


def task_link_off(gw: h.Gateway, stopped_serial: int) -> h.BusinessLink:
    """A task link accepted by a running worker (one that lands on the stopped one is never
    counted: it is closed and another is tried)."""
    def served():
        return sum(w.get("tasks", 0) for w in workers(gw) if w["serial"] != stopped_serial)
    for _ in range(40):
        before = served()
        link = gw.task()
        try:
            h.wait_for(lambda: served() > before, 1.0, message="a running worker to count it")
            return link
        except AssertionError:
            link.close()
    raise AssertionError(f"no task link landed off stopped worker serial {stopped_serial}")


def receiver(gw: h.Gateway) -> dict:
    st = h.wait_for(lambda: (lambda s: s if sum(w["links"] for w in s) == 1 else None)(workers(gw)),
                    message="the business link to be counted")
    return next(w for w in st if w["links"] == 1)


def read_closes(biz: h.BusinessLink, count: int, timeout: float = 15) -> dict:
    got = {}
    for _ in range(count):
        ev = biz.recv_matching(Cmd.ConnClose, pb.ConnClose, timeout=timeout)
        assert ev.uniqId not in got, f"a second ConnClose for {ev.uniqId}"
        got[ev.uniqId] = (ev.session, ev.customerId, sorted(ev.topics))
    return got


def test_closes_wait_for_a_full_peer_link_and_each_arrives_once_with_its_state(
        gateway_factory, ws):
    gw = gateway_factory({"Worker": {"SendChanCap": 4096}})
    biz = gw.business(events=3)  # OnOpen | OnClose
    target = receiver(gw)
    leaving, staying = clients_off(gw, ws, biz, target["serial"], ON_OTHER_WORKER)
    want = seed(gw, leaving)
    os.kill(target["pid"], signal.SIGSTOP)  # it reads nothing: the peer link to it fills
    try:
        close_all(ws, leaving)
        h.wait_for(lambda: WAITING_LOG in gw.log_path.read_text(), 10,
                   message="a ConnClose to wait for the full peer link")
        # Gone from every count and index at once, while their events wait.
        task = task_link_off(gw, target["serial"])
        count = task.request(cmd_pb2.UniqIdCount, b"", pb.UniqIdCountResp).count
        assert count == len(staying), f"UniqIdCount {count}, {len(staying)} clients are open"
        r = task.request(cmd_pb2.TopicUniqIdCount, pb.TopicUniqIdCountReq(topics=["all"], countAll=False),
                         pb.TopicUniqIdCountResp)
        assert dict(r.items).get("all", 0) == 0, f"departed clients still in topic 'all': {r}"
        task.close()
    finally:
        os.kill(target["pid"], signal.SIGCONT)
    got = read_closes(biz, len(leaving))
    assert got == want
    biz.expect_silent(0.5)  # and no more
    assert all(c.is_open for c in staying)


def test_a_crash_announces_the_closes_still_waiting(gateway_factory, ws):
    gw = gateway_factory({"Workers": 3, "Worker": {"SendChanCap": 4096}})
    biz = gw.business(events=3)
    target = receiver(gw)
    leaving, staying = clients_off(gw, ws, biz, target["serial"], ON_OTHER_WORKER)
    # the victim: the other worker with the most of them
    by_serial = {}
    for c in leaving:
        by_serial.setdefault(serial_of(c.uniq_id), []).append(c)
    victim_serial, gone = max(by_serial.items(), key=lambda kv: len(kv[1]))
    survivors = [c for c in leaving if c not in gone]
    want = seed(gw, gone)
    victim = next(w for w in workers(gw) if w["serial"] == victim_serial)
    os.kill(target["pid"], signal.SIGSTOP)
    try:
        close_all(ws, gone)
        h.wait_for(lambda: gw.log_path.read_text().count(WAITING_LOG) >= 1, 10,
                   message="a ConnClose to wait for the full peer link")
        os.kill(victim["pid"], signal.SIGKILL)
        wait_respawn(gw, victim, time.monotonic())
    finally:
        os.kill(target["pid"], signal.SIGCONT)
    # What the victim had written to the peer link before the crash arrives, the rest is
    # announced from its table; a frame cut by the crash may be lost (as any unsent write).
    got = {}
    try:
        while True:
            ev = biz.recv_matching(Cmd.ConnClose, pb.ConnClose, timeout=8)
            assert ev.uniqId not in got, f"a second ConnClose for {ev.uniqId}"
            got[ev.uniqId] = (ev.session, ev.customerId, sorted(ev.topics))
    except h.LinkTimeout:
        pass
    assert set(got) <= set(want), f"ConnClose for clients still open: {set(got) - set(want)}"
    assert len(got) >= len(want) - 1, f"{len(want) - len(got)} of {len(want)} ConnClose lost"
    for uid, state in got.items():
        assert state == want[uid], f"{uid}: ConnClose carries another state"
    assert all(c.is_open for c in staying + survivors)
