"""Frames to clients reach them byte for byte through every send path: io_uring on a connection
without lws (the default: we answered the upgrade; our frame headers, sendmsg batches, a rest kept
for the next POLLOUT when the socket is full), io_uring on an lws connection (NETSVR_DIRECT=0:
Close and Pong frames through lws_write), and libwebsockets' lws_write alone (NETSVR_IO_URING=0,
and always for wss and compressed connections)."""

from __future__ import annotations

import time

import pytest

from netsvr_harness import pb
from test_commands_common import CMD
from test_hostile_clients import _open
from ws_raw import OP_TEXT

# Every header length (7-bit, 16-bit, 64-bit) and its edges (an empty SingleCast sends nothing).
SIZES = [1, 125, 126, 127, 65535, 65536, 65537, 300_000, 1_000_000]


PATHS = {"direct": {}, "io_uring_lws": {"NETSVR_DIRECT": "0"}, "lws_write": {"NETSVR_IO_URING": "0"}}


@pytest.mark.parametrize("path", list(PATHS))
def test_frames_of_every_header_size_arrive_whole_and_in_order_past_a_full_socket(
        gateway_factory, path):
    gw = gateway_factory({"LogLevel": "debug", "Customer": {"SendQueueLimit": 64 << 20},
                          "Task": {"ReceivePackLimit": 4 << 20}},
                         start=False)
    gw.start(env=PATHS[path])
    uring = "0" if path == "lws_write" else "1"
    biz = gw.business(events=7)
    task = gw.task()
    # A small receive window that is not read while ~13 MB are sent: more than the kernel
    # buffers take, so the gateway's sends stop part way and go on when the client reads again.
    c = _open(gw, biz, "slow", rcvbuf=4096)
    expected = []
    for rnd in range(6):
        for size in SIZES:
            data = bytes([65 + (rnd * len(SIZES) + size) % 26]) * size
            expected.append(data)
            task.send(CMD.SingleCast, pb.SingleCast(uniqId=c.uniq_id, data=data))
    # and a topic fan-out, framed once for all, to the same client and a second one
    other = _open(gw, biz, "other", rcvbuf=1 << 20)
    for client in (c, other):
        task.send(CMD.TopicSubscribe, pb.TopicSubscribe(uniqId=client.uniq_id, topics=["t"]))
    task.send(CMD.SingleCast, pb.SingleCast(uniqId=other.uniq_id, data=b"subscribed"))
    other.expect(OP_TEXT, b"subscribed")
    task.send(CMD.TopicPublish, pb.TopicPublish(topics=["t"], data=b"z" * 70000))
    expected.append(b"z" * 70000)
    other.expect(OP_TEXT, b"z" * 70000)
    for i, data in enumerate(expected):
        fin, rsv, op, got = c.recv_frame(10)
        assert (fin, rsv, op, len(got)) == (True, 0, OP_TEXT, len(data)), f"frame {i}"
        assert got == data, f"frame {i}: payload differs"
    c.close()
    other.close()
    if uring == "1":
        log = gw.log_path.read_text()
        if "client frames are sent one send(2) each" in log:
            pytest.skip("this kernel refuses io_uring: the gateway fell back to lws_write")
        assert "the rest waits for POLLOUT" in log  # it met a full socket


@pytest.mark.parametrize("path", ["direct", "io_uring_lws"])
def test_io_uring_sends_that_wait_for_room_complete_and_the_queue_drains(gateway_factory, path):
    """A client that does not read while thousands of small frames come: an io_uring send that
    finds its socket full waits in the kernel and completes when the client reads (the eventfd
    wakes the loop), and the rest of the queue follows in a chain of submits. Both once stalled
    the client for good: the 'async' eventfd is not signalled for such completions, and a cap of
    16 submits per batch left the tail of a long queue unsent."""
    gw = gateway_factory({"LogLevel": "debug", "Workers": 1,
                          "Customer": {"SendQueueLimit": 64 << 20}}, start=False)
    gw.start(env=PATHS[path])
    log = gw.log_path.read_text()
    if "client frames are sent one send(2) each" in log:
        pytest.skip("this kernel refuses io_uring: the gateway fell back to lws_write")
    biz = gw.business(events=7)
    task = gw.task()
    c = _open(gw, biz, "small", rcvbuf=4096)
    count, size = 4000, 1000
    for _ in range(count):
        task.send(CMD.SingleCast, pb.SingleCast(uniqId=c.uniq_id, data=b"s" * size))
    # read only once the gateway has met the full socket
    deadline = time.monotonic() + 10
    while "the rest waits for POLLOUT" not in gw.log_path.read_text():
        assert time.monotonic() < deadline, "the client's socket never filled"
        time.sleep(0.05)
    for i in range(count):
        fin, rsv, op, got = c.recv_frame(10)
        assert (fin, rsv, op, got) == (True, 0, OP_TEXT, b"s" * size), f"frame {i}"
    assert "io_uring: sends completed after a full socket drained" in gw.log_path.read_text()
    c.close()
