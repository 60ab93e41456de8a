"""Write path (docs/PERFORMANCE.md): the frames a worker delivers to one client in one loop
iteration leave in one TCP segment (write batching, corked), and a frame larger than lws's
512-byte receive buffer leaves in one send (lws would otherwise cap a send at that size and send
the rest a loop turn later). Observed from the client: how many TCP segments carrying data its
socket received (TCP_INFO tcpi_data_segs_in), one per send(2) of the gateway on loopback."""

from __future__ import annotations

import socket
import struct
import time

import pytest

import netsvr_harness as h
from netsvr_harness import Cmd, pb
from test_commands_common import CMD, connect_task
from test_policies import RawWsClient, parse_frames


def _client_and_task(gateway_factory):
    gw = gateway_factory({"Workers": 1})
    biz = gw.business(events=1)
    client = RawWsClient(gw.customer_port, "/netsvr", rcvbuf=1 << 20)
    uniq_id = biz.recv_msg(Cmd.ConnOpen, pb.ConnOpen).uniqId
    task = gw.task()
    task.request(CMD.UniqIdCount, b"", pb.UniqIdCountResp)  # the task link is served
    return client, uniq_id, task


def _data_segments_in(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    if len(info) < 156:
        pytest.skip("this kernel's tcp_info has no tcpi_data_segs_in (Linux >= 4.6)")
    return struct.unpack_from("=I", info, 152)[0]  # struct tcp_info.tcpi_data_segs_in


def _read_exactly(sock: socket.socket, n: int, timeout: float = 5.0) -> bytes:
    deadline = time.monotonic() + timeout
    data = b""
    while len(data) < n:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(n - len(data))
        assert chunk, f"closed after {len(data)} of {n} bytes"
        data += chunk
    return data


def test_frames_of_one_iteration_arrive_together(gateway_factory):
    client, uniq_id, task = _client_and_task(gateway_factory)
    before = _data_segments_in(client.sock)
    # three commands in one TCP write: the worker reads them in one go
    task.send_raw(b"".join(
        h.BusinessLink.frame(CMD.SingleCast, pb.SingleCast(uniqId=uniq_id, data=f"m{i}".encode())
                             .SerializeToString()) for i in range(3)))
    data = _read_exactly(client.sock, 3 * 4)
    assert [p for _, p in parse_frames(data)] == [b"m0", b"m1", b"m2"], data
    assert _data_segments_in(client.sock) - before == 1
    client.close()


def test_large_frame_leaves_in_one_send(gateway_factory):
    client, uniq_id, task = _client_and_task(gateway_factory)
    payload = b"x" * 4000
    before = _data_segments_in(client.sock)
    task.send(CMD.SingleCast, pb.SingleCast(uniqId=uniq_id, data=payload))
    data = _read_exactly(client.sock, 4 + len(payload))
    assert parse_frames(data) == [(1, payload)]
    assert _data_segments_in(client.sock) - before == 1
    client.close()


def test_frames_delivered_from_a_timer_leave_before_the_loop_blocks(gateway_factory, ws):
    """A task link that waited for another worker's acknowledgement (TopicDelete) resumes from a
    timer callback; the frames it then delivers must be written before the loop blocks in poll,
    not when the next unrelated timer (the sweep, once a second here) wakes it up."""
    gw = gateway_factory({"Workers": 2, "Customer": {"HandshakeTimeout": "10s"}})  # sweep: 1 s
    biz = gw.business(events=1)
    clients = h.open_spread(gw, ws, biz, min_total=2)
    task, slot = connect_task(gw)
    here = next(c for c in clients if c.slot == slot)
    there = next(c for c in clients if c.slot != slot)
    worst = 0.0
    for i in range(8):
        for c in (here, there):
            task.send(CMD.TopicSubscribe, pb.TopicSubscribe(uniqId=c.uniq_id, topics=[f"t{i}"]))
        task.request(CMD.TopicUniqIdCount, pb.TopicUniqIdCountReq(topics=[f"t{i}"]), pb.TopicUniqIdCountResp)
        started = time.monotonic()
        task.send_raw(b"".join([
            h.BusinessLink.frame(CMD.TopicDelete, pb.TopicDelete(topics=[f"t{i}"]).SerializeToString()),
            h.BusinessLink.frame(CMD.SingleCast, pb.SingleCast(uniqId=here.uniq_id, data=f"m{i}".encode())
                                 .SerializeToString()),
        ]))
        assert here.recv() == f"m{i}"
        worst = max(worst, time.monotonic() - started)
    # one stalled round would take until the next sweep: ~1 s (a round takes ~1 ms otherwise)
    assert worst < 0.45, f"slowest round {worst * 1000:.0f} ms"


def test_a_burst_to_one_client_is_written_as_it_grows(gateway_factory):
    """160 KiB to one client in one task read, with Customer.SendQueueLimit = 128 KiB: the batch
    goes to the kernel once it holds 64 KiB instead of waiting for the end of the iteration, so
    the queue never reaches the limit and the client is not closed (1008 send queue full)."""
    gw = gateway_factory({"Workers": 1, "Customer": {"SendQueueLimit": 128 * 1024}})
    biz = gw.business(events=1)
    client = RawWsClient(gw.customer_port, "/netsvr", rcvbuf=1 << 22)
    uniq_id = biz.recv_msg(Cmd.ConnOpen, pb.ConnOpen).uniqId
    task = gw.task()
    task.request(CMD.UniqIdCount, b"", pb.UniqIdCountResp)
    payloads = [bytes([ord("a") + i]) * 8192 for i in range(20)]
    task.send_raw(b"".join(
        h.BusinessLink.frame(CMD.SingleCast, pb.SingleCast(uniqId=uniq_id, data=p).SerializeToString())
        for p in payloads))
    data = _read_exactly(client.sock, 20 * (4 + 8192))
    assert [p for _, p in parse_frames(data)] == payloads
    client.close()
