"""Hostile business links (issue 13 item 3): each case ends with the offender dropped, a log line
that says why, and the gateway still serving everyone else. Cases already covered elsewhere:
cmd 0, unknown cmds, short and oversize packets on the task port
(test_task_port.py::test_bad_packet_closes_only_that_link, which also gets garbage bytes and a
4 GiB length there), Register/Unregister on the task port, a worker link that stops reading
(test_worker_port.py::test_a_business_that_stops_reading_is_closed_after_the_send_deadline)."""

import random
import re
import resource
import socket
import struct
import time

import pytest

import netsvr_harness as h
from netsvr_harness import Cmd, pb

CLOSING = {
    "too-large": r"(worker|task) link \d+: packet longer than ReceivePackLimit; closing",
    "no-cmd": r"link \d+: packet of \d+ bytes has no cmd; closing",
    "cmd": r"(worker|task) link \d+: cmd \d+ is not accepted on this port; closing",
    "read-deadline": r"(worker|task) link \d+: no packet within the read deadline; closing",
    "send-deadline": r"task link \d+: \d+ bytes not taken by the business within the send "
                     r"deadline; closing",
}


def log_count(gw, reason: str) -> int:
    return len(re.findall(CLOSING[reason], gw.log_path.read_text(errors="replace")))


def wait_logged(gw, reason: str, before: int, timeout: float = 10.0) -> None:
    h.wait_for(lambda: log_count(gw, reason) > before, timeout,
               message=f"a log line for {reason!r}")


def still_serving(gw, ws, biz, client) -> None:
    """Everyone else is served: a new task link routes to the client, and the business link
    gets the client's messages."""
    task = gw.task()
    task.send(Cmd.SingleCast, pb.SingleCast(uniqId=client.uniq_id, data=b"still serving"))
    assert client.recv() == "still serving"
    client.send("and back")
    tr = biz.recv_matching(Cmd.Transfer, pb.Transfer, lambda m: m.uniqId == client.uniq_id)
    assert tr.data == b"and back"
    assert task.request(Cmd.UniqIdCount, b"", pb.UniqIdCountResp).count >= 1


def _garbage() -> bytes:
    return random.Random(13).randbytes(4096)


WORKER_PORT_CASES = {
    "http-request": (b"GET /netsvr HTTP/1.1\r\nHost: x\r\n\r\n", "too-large"),
    "random-garbage": (_garbage(), "too-large"),
    "4gib-length": (b"\xff\xff\xff\xff" + b"x" * 64, "too-large"),
    "no-cmd": (struct.pack(">I", 2) + b"ab", "no-cmd"),
    "cmd-0": (struct.pack(">II", 4, 0), "cmd"),
    "unknown-cmd": (struct.pack(">II", 4, 0x7FFFFFFF), "cmd"),
}


@pytest.mark.parametrize("kind", list(WORKER_PORT_CASES))
def test_hostile_bytes_on_the_worker_port(gateway, ws, kind):
    data, reason = WORKER_PORT_CASES[kind]
    biz = gateway.business(events=7)
    client = h.open_client(gateway, ws, f"worker-{kind}=1", biz)
    before = log_count(gateway, reason)
    bad = gateway.business()
    bad.send_raw(data)
    bad.expect_closed()
    wait_logged(gateway, reason, before)
    still_serving(gateway, ws, biz, client)


@pytest.mark.parametrize("port", ["worker", "task"])
@pytest.mark.parametrize("how", ["silence", "drip"])
def test_half_a_packet_is_dropped_after_the_read_deadline(gateway_factory, ws, port, how):
    """A packet that never completes does not count as activity: ReadDeadline closes the link,
    whether the rest never comes or comes a byte every 200 ms."""
    key = "Worker" if port == "worker" else "Task"
    gw = gateway_factory({key: {"ReadDeadline": "2s"}})
    biz = gw.business(events=7)
    client = h.open_client(gw, ws, f"half-{port}-{how}=1", biz)
    before = log_count(gw, "read-deadline")
    bad = gw.business() if port == "worker" else gw.task()
    bad.send_raw(struct.pack(">II", 1000, Cmd.Register if port == "worker" else Cmd.Broadcast))
    started = time.monotonic()
    for _ in range(40):
        biz.heartbeat()  # the good business is subject to the same deadline
        try:
            if how == "drip":
                bad.send_raw(b"x")
            h.read_until_eof(bad.sock, 0.2, "half a packet")
            break  # EOF: closed
        except AssertionError:
            continue  # still open
        except OSError:
            break  # reset: closed
    else:
        raise AssertionError("the link was never closed")
    assert time.monotonic() - started >= 1.5, "closed before the read deadline"
    wait_logged(gw, "read-deadline", before)
    still_serving(gw, ws, biz, client)


def test_a_task_link_that_never_reads_its_responses(gateway_factory, ws):
    """Task.SendDeadline: responses pile up for a link that sends queries but reads nothing; once
    the kernel has taken nothing more for that long, the link is closed."""
    gw = gateway_factory({"Workers": 1, "Task": {"SendDeadline": "1s"}})
    biz = gw.business(events=7)
    client = h.open_client(gw, ws, "no-read=1", biz)
    before = log_count(gw, "send-deadline")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.settimeout(10)
    sock.connect(("127.0.0.1", gw.task_port))
    # 40,000 Metrics queries of 8 bytes; each answer is several hundred bytes (13 items).
    sock.sendall(h.BusinessLink.frame(h.cmd_pb2.Metrics) * 40000)
    wait_logged(gw, "send-deadline", before, timeout=20)
    h.read_until_eof(sock, 30, "non-reading task link")
    sock.close()
    still_serving(gw, ws, biz, client)


def _raise_fd_limit(n: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        if hard != resource.RLIM_INFINITY and hard < n:
            pytest.skip(f"needs {n} descriptors, hard limit {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, hard))


def test_a_thousand_task_links_at_once(gateway, ws):
    """1,000 task links opened together are all served (there is no limit on task links); when
    they go, the gateway's count of task links comes back to where it was."""
    _raise_fd_limit(4096)
    biz = gateway.business(events=7)
    client = h.open_client(gateway, ws, "thousand=1", biz)
    socks = [socket.create_connection(("127.0.0.1", gateway.task_port), timeout=10)
             for _ in range(1000)]
    try:
        query = h.BusinessLink.frame(Cmd.UniqIdCount)
        for s in socks:
            s.sendall(query)
        for s in socks:
            (length,) = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))
            payload = s.recv(length, socket.MSG_WAITALL)
            assert struct.unpack(">I", payload[:4])[0] == Cmd.UniqIdCount
            resp = pb.UniqIdCountResp()
            resp.ParseFromString(payload[4:])
            assert resp.count == 1
        h.wait_for(lambda: sum(w["tasks"] for w in gateway.status()["workers"]) >= 1000,
                   message="1,000 task links in `netsvr status`")
    finally:
        for s in socks:
            s.close()
    h.wait_for(lambda: sum(w["tasks"] for w in gateway.status()["workers"]) == 0,
               message="the task links counted as gone")
    still_serving(gateway, ws, biz, client)


def test_a_worker_link_that_registers_a_thousand_times(gateway, ws):
    """The first Register succeeds, the 999 others get DuplicateRegister; the registry holds the
    link once (events are not duplicated) and the link keeps working."""
    bad = gateway.business()
    bad.send_raw(h.BusinessLink.frame(Cmd.Register, pb.RegisterReq(events=7).SerializeToString())
                 * 1000)
    codes = [bad.recv_msg(Cmd.Register, pb.RegisterResp).code for _ in range(1000)]
    assert codes[0] == 0 and set(codes[1:]) == {3}, codes[:5]
    client = h.open_client(gateway, ws, "register-1000=1", bad)
    client.send("once")
    tr = bad.recv_matching(Cmd.Transfer, pb.Transfer, lambda m: m.uniqId == client.uniq_id)
    assert tr.data == b"once"
    bad.expect_silent(0.5)  # one registration: one copy of each event
    assert sum(w["links"] for w in gateway.status()["workers"]) == 1


def test_business_links_beyond_the_registry_are_refused(gateway_factory, ws):
    """The registry of worker-port links holds 1,024 (shm/control.hpp); a link that registers
    when it is full is closed with a log line instead of being told Success and getting nothing."""
    _raise_fd_limit(4096)
    gw = gateway_factory({"Workers": 1})
    links = []
    frame = h.BusinessLink.frame(Cmd.Register, pb.RegisterReq(events=2).SerializeToString())
    for _ in range(1024):
        s = socket.create_connection(("127.0.0.1", gw.worker_port), timeout=10)
        s.sendall(frame)
        links.append(s)
    for s in links:
        (length,) = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))
        resp = pb.RegisterResp()
        resp.ParseFromString(s.recv(length, socket.MSG_WAITALL)[4:])
        assert resp.code == 0
    extra = gw.business()
    extra.send_raw(frame)
    extra.expect_closed()
    h.wait_for(lambda: "registry full (1024 links); closing" in gw.log_path.read_text(),
               message="the refusal logged")
    links.pop().close()  # one leaves: there is room again
    h.wait_for(lambda: sum(w["links"] for w in gw.status()["workers"]) == 1023,
               message="the departed link leaving the registry")
    late = gw.business(events=7)
    client = h.open_client(gw, ws, "after-full=1", late)
    client.close()
    for s in links:
        s.close()
