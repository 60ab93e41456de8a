"""Task port: commands reach clients on every worker (PROTOCOL §4), queries, link errors (§2.3)."""

import random
import re
import struct

import pytest

import netsvr_harness as h
from netsvr_harness import Cmd, pb


def test_single_cast_reaches_clients_on_both_workers(gateway, ws):
    biz = gateway.business(events=1)
    clients = h.open_spread(gateway, ws, biz, min_total=2)
    assert {c.slot for c in clients} == {w["slot"] for w in gateway.status()["workers"]}
    task = gateway.task()  # one link: it lands on one worker and must reach the other one too
    for i, c in enumerate(clients):
        task.send(Cmd.SingleCast, pb.SingleCast(uniqId=c.uniq_id, data=f"single-{i}".encode()))
    for i, c in enumerate(clients):
        assert c.recv() == f"single-{i}", f"client on worker slot {c.slot}"
    for c in clients:
        c.expect_no_message(0.2)


def test_broadcast_reaches_every_client_once(gateway, ws):
    clients = h.open_spread(gateway, ws, min_total=6)
    task = gateway.task()
    task.send(Cmd.Broadcast, pb.Broadcast(data=b"to everyone"))
    assert ws.recv_all(clients) == ["to everyone"] * len(clients)
    for c in clients:
        c.expect_no_message(0.2)


def test_uniq_id_count_and_list(gateway, ws):
    biz = gateway.business(events=3)
    clients = h.open_spread(gateway, ws, biz, min_total=4)
    task = gateway.task()
    count = task.request(Cmd.UniqIdCount, b"", pb.UniqIdCountResp)
    assert count.count == len(clients)
    lst = task.request(Cmd.UniqIdList, b"", pb.UniqIdListResp)
    assert sorted(lst.uniqIds) == sorted(c.uniq_id for c in clients)
    # a closed client leaves both
    gone = clients.pop()
    gone.close()
    biz.recv_matching(Cmd.ConnClose, pb.ConnClose, lambda m: m.uniqId == gone.uniq_id)
    h.wait_for(lambda: task.request(Cmd.UniqIdCount, b"", pb.UniqIdCountResp).count == len(clients),
               message="UniqIdCount to drop after a close")
    lst = task.request(Cmd.UniqIdList, b"", pb.UniqIdListResp)
    assert sorted(lst.uniqIds) == sorted(c.uniq_id for c in clients)


def test_empty_queries(gateway):
    task = gateway.task()
    task.send(Cmd.UniqIdCount, b"")
    cmd, body = task.recv()
    assert cmd == Cmd.UniqIdCount
    resp = pb.UniqIdCountResp()
    resp.ParseFromString(body)
    assert resp.count == 0
    lst = task.request(Cmd.UniqIdList, b"", pb.UniqIdListResp)
    assert list(lst.uniqIds) == []


@pytest.mark.parametrize("cmd", ["Register", "Unregister"])
def test_worker_commands_close_task_link(gateway, cmd):
    task = gateway.task()
    if cmd == "Register":
        task.send(Cmd.Register, pb.RegisterReq(events=7))
    else:
        task.send(Cmd.Unregister, pb.UnRegisterReq(connId="0" * 32))
    task.expect_closed()


def _bad_packets():
    return {
        "oversize": struct.pack(">II", 65537, 900003007),
        "short-len-0": struct.pack(">I", 0),
        "short-len-3": struct.pack(">I", 3) + b"abc",
        "unknown-cmd": struct.pack(">II", 4, 12345),
        "cmd-0": struct.pack(">II", 4, 0),
        "event-cmd": struct.pack(">II", 4, 900001001),  # ConnOpen is gateway->business only
        "4gib-length": b"\xff\xff\xff\xff" + b"x" * 64,
        "garbage": random.Random(13).randbytes(4096),
        "http-request": b"GET /netsvr HTTP/1.1\r\nHost: x\r\n\r\n",
    }


def _closing_lines(gw) -> int:
    """Log lines that say why a business link was closed (biz_link.cpp)."""
    return len(re.findall(r"link \d+: .*; closing", gw.log_path.read_text(errors="replace")))


@pytest.mark.parametrize("kind", list(_bad_packets()))
def test_bad_packet_closes_only_that_link(gateway, ws, kind):
    biz = gateway.business(events=1)
    c = h.open_client(gateway, ws, "bad=1", biz)
    good = gateway.task()
    bad = gateway.task()
    before = _closing_lines(gateway)
    bad.send_raw(_bad_packets()[kind])
    bad.expect_closed()
    h.wait_for(lambda: _closing_lines(gateway) > before, message="the reason logged")
    assert good.request(Cmd.UniqIdCount, b"", pb.UniqIdCountResp).count == 1
    good.send(Cmd.SingleCast, pb.SingleCast(uniqId=c.uniq_id, data=b"still here"))
    assert c.recv() == "still here"


def test_malformed_protobuf_does_not_close_task_link(gateway, ws):
    """§2.3 step 7: decode errors are dropped (class A/B) or unanswered (class C), never closing."""
    biz = gateway.business(events=1)
    c = h.open_client(gateway, ws, "malformed=1", biz)
    task = gateway.task()
    task.send(Cmd.SingleCast, b"\xff\xff")
    task.send(Cmd.CheckOnline, b"\xff\xff")
    assert task.request(Cmd.UniqIdCount, b"", pb.UniqIdCountResp).count == 1
    task.send(Cmd.SingleCast, pb.SingleCast(uniqId=c.uniq_id, data=b"after garbage"))
    assert c.recv() == "after garbage"


def test_task_heartbeat_no_reply(gateway):
    task = gateway.task()
    task.heartbeat()
    task.expect_silent(1.0)
    assert task.request(Cmd.UniqIdCount, b"", pb.UniqIdCountResp).count == 0
