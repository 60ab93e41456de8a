"""Worker port: framing (PROTOCOL §2), Register/Unregister (§3), events (§6.4, §6.5, §6.8)."""

import re
import socket
import struct
import time

import pytest

import netsvr_harness as h
from netsvr_harness import Cmd, pb


def test_register_success_and_conn_id(gateway):
    biz = gateway.business()
    resp = biz.register(7)
    assert resp.code == 0
    assert resp.message == "Success"
    assert re.fullmatch(r"[0-9a-f]{32}", resp.connId), resp.connId
    assert resp.connId[:12] == gateway.conn_prefix
    # bytes 6..11: business peer IPv4 + port (§3.2); bytes 12..15: accept time
    local_ip, local_port = biz.sock.getsockname()
    assert resp.connId[12:20] == "7f000001"
    assert int(resp.connId[20:24], 16) == local_port
    assert abs(int(resp.connId[24:32], 16) - time.time()) < 60


def test_register_invalid_event(gateway):
    biz = gateway.business()
    resp = biz.register(8)
    assert resp.code == 2
    assert resp.message == "InvalidEvent"
    assert resp.connId == ""
    # a failed registration does not close the link and does not count as registered
    resp = biz.register(7)
    assert (resp.code, resp.message) == (0, "Success")


def test_register_duplicate(gateway):
    biz = gateway.business()
    assert biz.register(7).code == 0
    resp = biz.register(7)
    assert resp.code == 3
    assert resp.message == "DuplicateRegister"


def test_register_unmarshal_error(gateway):
    biz = gateway.business()
    biz.send(Cmd.Register, b"\xff\xff")
    resp = biz.recv_msg(Cmd.Register, pb.RegisterResp)
    assert resp.code == 1
    assert resp.message == "UnmarshalError"
    assert resp.connId == ""


def test_unregister_stops_events_link_stays_open(gateway, ws):
    a = gateway.business(events=7)
    b = gateway.business(events=7)
    a.send(Cmd.Unregister, pb.UnRegisterReq(connId=a.conn_id))
    cmd, body = a.recv()
    assert cmd == Cmd.Unregister
    assert body == b""
    # events now all go to b, none to a
    c = h.open_client(gateway, ws, "unreg=1", b)
    c.send("after unregister")
    tr = b.recv_matching(Cmd.Transfer, pb.Transfer, lambda m: m.uniqId == c.uniq_id)
    assert tr.data == b"after unregister"
    c.close()
    b.recv_matching(Cmd.ConnClose, pb.ConnClose, lambda m: m.uniqId == c.uniq_id)
    a.expect_silent(1.0)
    # the link is still open and answers (events are kept: DuplicateRegister, PROTOCOL §14.13)
    resp = a.register(7)
    assert (resp.code, resp.message) == (3, "DuplicateRegister")


def test_conn_open_fields(gateway, ws):
    biz = gateway.business(events=7)
    ws.connect(gateway.ws_url(query="a=1&b=2"))
    ev = biz.recv_msg(Cmd.ConnOpen, pb.ConnOpen)
    assert re.fullmatch(r"[0-9a-f]{28}", ev.uniqId), ev.uniqId
    assert ev.uniqId[:12] == gateway.uniq_prefix
    assert abs(int(ev.uniqId[12:20], 16) - time.time()) < 60
    assert ev.rawQuery == "a=1&b=2"
    assert ev.remoteAddr == "127.0.0.1"
    assert ev.xForwardedFor == ""
    assert ev.xRealIp == ""


def test_conn_open_forwarded_headers(gateway, ws):
    biz = gateway.business(events=1)
    ws.connect(gateway.ws_url(query="fwd=1"),
               headers={"X-Forwarded-For": "203.0.113.7, 10.0.0.1", "X-Real-IP": "198.51.100.9"})
    ev = biz.recv_msg(Cmd.ConnOpen, pb.ConnOpen)
    assert ev.xForwardedFor == "203.0.113.7, 10.0.0.1"
    assert ev.xRealIp == "198.51.100.9"
    assert ev.remoteAddr == "127.0.0.1"


def test_transfer_order(gateway, ws):
    biz = gateway.business(events=7)
    c = ws.connect(gateway.ws_url(query="order=1"))
    for i in range(1, 21):
        c.send(f"m{i}")
    # DECISIONS #4: ConnOpen first, then the messages in the order sent
    opened = biz.recv_msg(Cmd.ConnOpen, pb.ConnOpen)
    got = []
    for _ in range(20):
        tr = biz.recv_msg(Cmd.Transfer, pb.Transfer)
        assert tr.uniqId == opened.uniqId
        assert tr.customerId == "" and tr.session == "" and list(tr.topics) == []
        got.append(tr.data.decode())
    assert got == [f"m{i}" for i in range(1, 21)]


def test_conn_close_exactly_once(gateway, ws):
    biz = gateway.business(events=7)
    c = h.open_client(gateway, ws, "close=1", biz)
    c.close()
    ev = biz.recv_msg(Cmd.ConnClose, pb.ConnClose)
    assert ev.uniqId == c.uniq_id
    assert ev.customerId == "" and ev.session == "" and list(ev.topics) == []
    biz.expect_silent(1.0)


def test_conn_open_round_robin_two_businesses(gateway, ws):
    a = gateway.business(events=1)
    b = gateway.business(events=1)
    ws.connect_many([gateway.ws_url(query=f"rr={i}") for i in range(20)])
    got = h.collect_from_links([a, b], Cmd.ConnOpen, pb.ConnOpen, 20)
    assert len(got[a]) > 0 and len(got[b]) > 0, f"split {len(got[a])}/{len(got[b])}"
    queries = sorted(m.rawQuery for m in got[a] + got[b])
    assert queries == sorted(f"rr={i}" for i in range(20))
    assert len({m.uniqId for m in got[a] + got[b]}) == 20
    a.expect_silent(0.3)
    b.expect_silent(0.3)


def test_oversize_packet_closes_only_that_link(gateway, ws):
    good = gateway.business(events=1)
    bad = gateway.business()
    bad.send_raw(struct.pack(">II", 65537, Cmd.Register))  # L > ReceivePackLimit (65536)
    bad.expect_closed()
    assert good.is_open()
    ws.connect(gateway.ws_url(query="after-oversize=1"))
    ev = good.recv_msg(Cmd.ConnOpen, pb.ConnOpen)
    assert ev.rawQuery == "after-oversize=1"
    # a fresh link still registers
    assert gateway.business().register(7).code == 0


@pytest.mark.parametrize("length", [0, 2, 3])
def test_short_packet_closes_link(gateway, length):
    biz = gateway.business()
    biz.send_raw(struct.pack(">I", length) + b"x" * length)
    biz.expect_closed()


@pytest.mark.parametrize("cmd", [12345, 0, "SingleCast"])
def test_unhandled_cmd_closes_link(gateway, cmd):
    if isinstance(cmd, str):
        cmd = getattr(Cmd, cmd)  # a task-port command is not handled on the worker port
    biz = gateway.business()
    biz.send(cmd, b"")
    biz.expect_closed()


def test_heartbeat_keeps_link_open_without_reply(gateway):
    biz = gateway.business()
    biz.heartbeat()
    biz.expect_silent(1.0)
    resp = biz.register(7)
    assert (resp.code, resp.message) == (0, "Success")


def test_a_business_that_stops_reading_is_closed_after_the_send_deadline(gateway_factory, ws):
    """Worker.SendDeadline: events queue up for a registered business that no longer reads; once
    the kernel has taken nothing more for that long, the gateway closes the link (metric 10)."""
    gw = gateway_factory({"Workers": 1, "Worker": {"SendDeadline": "1s", "SendChanCap": 100000},
                          "Customer": {"ReceivePackLimit": 1 << 20}})
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.settimeout(5)
    sock.connect(("127.0.0.1", gw.worker_port))
    sock.sendall(h.BusinessLink.frame(Cmd.Register, pb.RegisterReq(events=4).SerializeToString()))
    (length,) = struct.unpack(">I", sock.recv(4, socket.MSG_WAITALL))
    sock.recv(length, socket.MSG_WAITALL)  # RegisterResp; from now on nothing is read
    client = ws.connect(gw.ws_url())
    for _ in range(40):  # 40 x 256 KiB of Transfer events: far more than the socket buffers take
        client.send(b"x" * (256 * 1024))
    h.wait_for(lambda: "within the send deadline; closing" in gw.log_path.read_text(), 15,
               message="the gateway to give up on the link")
    h.read_until_eof(sock, 10)  # the link is closed: what was sent drains, then EOF
    sock.close()
