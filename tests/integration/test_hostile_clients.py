"""Hostile websocket clients (issue 13): each ends with the gateway still serving everyone else
and the offender dropped with a log line that says why."""

from __future__ import annotations

import socket
import time

from netsvr_harness import Cmd, pb
from test_commands_common import CMD
from ws_raw import OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawWs, frame, upgrade_head


def _open(gw, biz, tag: str, rcvbuf: int = 0) -> RawWs:
    c = RawWs.__new__(RawWs)
    c.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    c.sock.settimeout(5)
    c.sock.connect(("127.0.0.1", gw.customer_port))
    c.buf, c.eof = bytearray(), False
    c.sock.sendall(upgrade_head(f"/netsvr?{tag}"))
    assert c._read_head(5).startswith(b"HTTP/1.1 101 ")
    c.uniq_id = biz.recv_matching(Cmd.ConnOpen, pb.ConnOpen, lambda m: m.rawQuery == tag).uniqId
    return c


def test_a_client_that_never_reads_is_gone_soon_after_its_queue_fills(gateway_factory):
    """Past SendQueueLimit the reader-less client is closed (1008 cannot even reach it: its
    window is full) and its TCP connection is reset within 5 s; the reading client in the same
    topic gets every message."""
    gw = gateway_factory({"Customer": {"SendQueueLimit": 65536}})
    biz = gw.business(events=7)
    task = gw.task()
    stuck = _open(gw, biz, "stuck", rcvbuf=4096)
    reader = _open(gw, biz, "reader")
    task.send(CMD.TopicSubscribe, pb.TopicSubscribe(uniqId=stuck.uniq_id, topics=["flood"]))
    task.send(CMD.TopicSubscribe, pb.TopicSubscribe(uniqId=reader.uniq_id, topics=["flood"]))
    # the reader answers a cast only after both subscriptions were applied (one task link, in order)
    task.send(CMD.SingleCast, pb.SingleCast(uniqId=reader.uniq_id, data=b"ready"))
    reader.expect(OP_TEXT, b"ready")
    chunk = b"f" * 16384
    count = 400  # 6.4 MB: far past the stuck client's kernel buffers and its 64 KiB queue
    received = 0
    for i in range(count):
        task.send(CMD.TopicPublish, pb.TopicPublish(topics=["flood"], data=chunk))
        if i % 20 == 19:  # keep the reading client's window open
            while received < i - 40:
                reader.expect(OP_TEXT, chunk)
                received += 1
    flood_end = time.monotonic()
    while received < count:
        reader.expect(OP_TEXT, chunk)
        received += 1
    biz.recv_matching(Cmd.ConnClose, pb.ConnClose, lambda m: m.uniqId == stuck.uniq_id,
                      timeout=5.0)
    assert time.monotonic() - flood_end < 5.0
    # its TCP connection is gone: what it can still read ends in EOF or a reset
    stuck.sock.settimeout(5)
    try:
        while stuck.sock.recv(1 << 20):
            pass
    except ConnectionResetError:
        pass
    reader.send(frame(OP_PING, b"alive"))
    reader.expect(OP_PONG, b"alive")
    log = gw.log_path.read_text()
    assert f"client {stuck.uniq_id}: send queue full" in log


def test_one_byte_fragments_past_the_limit_are_cut(gateway_factory):
    """A message of one-byte continuation frames grows only to ReceivePackLimit: 1009."""
    gw = gateway_factory({"Customer": {"ReceivePackLimit": 65536}})
    biz = gw.business(events=7)
    bad = _open(gw, biz, "fragments")
    good = _open(gw, biz, "good")
    flood = frame(OP_TEXT, b"x", fin=False) + frame(OP_CONT, b"x", fin=False) * 70000
    bad.send(flood)
    fin, rsv, op, data = bad.recv_frame()
    assert (op, data[:2]) == (8, b"\x03\xf1"), (op, data)  # 1009 message too big
    good.send(frame(OP_TEXT, b"still served"))
    m = biz.recv_matching(Cmd.Transfer, pb.Transfer, lambda m: m.uniqId == good.uniq_id)
    assert m.data == b"still served"
    biz.recv_matching(Cmd.ConnClose, pb.ConnClose, lambda m: m.uniqId == bad.uniq_id)


def test_a_crowd_of_slow_heads_is_dropped_at_the_handshake_timeout(gateway_factory):
    """5,000 sockets that send their request head one byte a second: a real client is served
    meanwhile, and every slow socket is closed at HandshakeTimeout, with one log line a sweep."""
    gw = gateway_factory({"Customer": {"HandshakeTimeout": "2s"}})
    biz = gw.business(events=7)
    slow = []
    for _ in range(5000):
        s = socket.create_connection(("127.0.0.1", gw.customer_port))
        s.setblocking(False)
        slow.append(s)
    head = upgrade_head()
    t0 = time.monotonic()
    sent = 0
    real = None
    closed: set[int] = set()
    while len(closed) < len(slow) and time.monotonic() - t0 < 6.0:
        for i, s in enumerate(slow):
            if i in closed:
                continue
            try:
                s.send(head[sent:sent + 1])
                if s.recv(64) == b"":
                    closed.add(i)
            except BlockingIOError:
                pass
            except (ConnectionResetError, BrokenPipeError):
                closed.add(i)
        sent += 1
        if real is None:  # a real client while the crowd dribbles
            real = _open(gw, biz, "real")
            real.send(frame(OP_TEXT, b"hello"))
            m = biz.recv_matching(Cmd.Transfer, pb.Transfer, lambda m: m.uniqId == real.uniq_id)
            assert m.data == b"hello"
        time.sleep(max(0.0, t0 + sent * 1.0 - time.monotonic()))
    took = time.monotonic() - t0
    for s in slow:
        s.close()
    assert len(closed) == len(slow), f"{len(slow) - len(closed)} slow sockets still open after {took:.1f}s"
    assert took < 5.0, f"the slow sockets took {took:.1f}s to be dropped (HandshakeTimeout 2s)"
    assert "did not complete the websocket handshake" in gw.log_path.read_text()
    real.send(frame(OP_PING, b"p"))
    real.expect(OP_PONG, b"p")
