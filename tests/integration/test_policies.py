"""Connection policies: AllowOrigin (§5.2), MaxOnlineNum (§6.4, DECISIONS 9), HandshakeTimeout
(DECISIONS 8), ReceivePackLimit (DECISIONS 6), SendQueueLimit (DECISIONS O8), [Limit] OnOpen
(§9.1)."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import struct
import time

import pytest
import websockets.exceptions

import netsvr_harness as h
from netsvr_harness import Cmd, pb
from test_commands_common import CMD, connect_task

RATE_LIMITED = (1013, "open rate limited, try again later")


def _metrics(task) -> dict:
    return dict(task.request(CMD.Metrics, b"", pb.MetricsResp).items)


def _rss_kib(pids) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def _gateway_pids(gw: h.Gateway) -> list[int]:
    st = gw.status()
    return [st["master"]] + [w["pid"] for w in st["workers"]]


class RawWsClient:
    """A websocket client on a plain socket: completes the upgrade, then reads only on demand."""

    def __init__(self, port: int, path: str, rcvbuf: int = 4096, timeout: float = 5.0):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connect
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(1)  # byte by byte: leave any frame bytes in the socket
            assert chunk, f"closed during the handshake: {buf!r}"
            buf += chunk
        assert buf.startswith(b"HTTP/1.1 101"), buf[:200]

    def drain_until_eof(self, timeout: float) -> bytes:
        """Read everything until the gateway closes the socket (EOF or reset)."""
        return h.read_until_eof(self.sock, timeout)

    def close(self):
        self.sock.close()


def parse_frames(data: bytes) -> list[tuple[int, bytes]]:
    """(opcode, payload) of the complete unmasked frames in data (a trailing partial is ignored)."""
    out = []
    i = 0
    while i + 2 <= len(data):
        b0, b1 = data[i], data[i + 1]
        n = b1 & 0x7F
        j = i + 2
        if n == 126:
            if j + 2 > len(data):
                break
            n = struct.unpack_from(">H", data, j)[0]
            j += 2
        elif n == 127:
            if j + 8 > len(data):
                break
            n = struct.unpack_from(">Q", data, j)[0]
            j += 8
        if j + n > len(data):
            break
        out.append((b0 & 0x0F, data[j:j + n]))
        i = j + n
    return out


# --------------------------------------------------------------------------------------------


def test_allow_origin(gateway_factory, ws):
    gw = gateway_factory({"Customer": {"AllowOrigin": ["good.example"]}})
    biz = gw.business(events=3)
    for headers in (None, {"Origin": "https://evil.test"}):
        with pytest.raises(websockets.exceptions.InvalidStatusCode) as ei:
            ws.connect(gw.ws_url(query="origin=bad"), headers=headers)
        assert ei.value.status_code == 403, f"Origin {headers}: {ei.value.status_code}"
    c = ws.connect(gw.ws_url(query="origin=good"), headers={"Origin": "https://good.example.com"})
    ev = biz.recv_msg(Cmd.ConnOpen, pb.ConnOpen)
    assert ev.rawQuery == "origin=good"
    assert c.is_open
    biz.expect_silent(0.3)  # no event for the refused upgrades


def test_max_online_num(gateway_factory, ws):
    """MaxOnlineNum = 3 counts the accepted TCP sockets of all workers (upgraded or not)."""
    gw = gateway_factory({"Workers": 2, "Customer": {"MaxOnlineNum": 3}})
    biz = gw.business(events=3)
    keep = [h.open_client(gw, ws, h.next_tag("keep"), biz) for _ in range(3)]
    slots = gw.worker_clients()
    assert sum(slots.values()) == 3
    # every further client is refused, whichever worker accepts it
    for i in range(4):
        extra = ws.connect(gw.ws_url(query=f"extra={i}"))
        code, reason = extra.wait_closed()
        assert (code, reason) == RATE_LIMITED, f"client #{4 + i}: ({code}, {reason!r}) " \
                                               f"with per-worker clients {slots}"
    biz.expect_silent(0.3)
    assert sum(gw.worker_clients().values()) == 3
    # after one closes, a new client fits again
    keep[0].close()
    ev = biz.recv_msg(Cmd.ConnClose, pb.ConnClose)
    assert ev.uniqId == keep[0].uniq_id

    def try_open(query):
        c = ws.connect(gw.ws_url(query=query))
        try:
            biz.recv_matching(Cmd.ConnOpen, pb.ConnOpen, lambda m: m.rawQuery == query, 0.5)
        except h.LinkTimeout:
            c.wait_closed()
            return None
        return c

    again = h.wait_for(lambda: try_open("again=1"), 3.0, interval=0.1,
                       message="a client to fit after one closed")
    assert again.is_open
    # a socket that is accepted but not upgraded takes a place too
    keep[1].close()
    assert biz.recv_msg(Cmd.ConnClose, pb.ConnClose).uniqId == keep[1].uniq_id
    # a TCP socket that has sent half a request (accepted, never upgraded)
    plain = socket.create_connection(("127.0.0.1", gw.customer_port))
    plain.sendall(b"GET /netsvr HTTP/1.1\r\n")
    attempt = iter(range(100))

    def refused_while_plain_open():
        c = ws.connect(gw.ws_url(query=f"plainextra={next(attempt)}"))
        try:
            return c.wait_closed(1.0) == RATE_LIMITED
        except AssertionError:  # still open: the plain socket is not counted (yet)
            c.close()
            return False

    try:
        h.wait_for(refused_while_plain_open, 3.0, interval=0.05,
                   message="a client to be refused while 2 clients and 1 accepted, "
                           "not upgraded socket are open (MaxOnlineNum = 3)")
        for _ in range(2):  # and it stays so
            assert refused_while_plain_open()
    finally:
        plain.close()
    late = h.wait_for(lambda: try_open("late=1"), 3.0, interval=0.1,
                      message="a client to fit after the plain socket closed")
    assert late.is_open


@pytest.mark.parametrize("sent", [b"", b"GET /net",
                                  b"GET /netsvr HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"],
                         ids=["nothing", "partial-request-line", "partial-headers"])
def test_handshake_timeout(gateway_factory, ws, sent):
    """HandshakeTimeout = 1s: a socket that has not completed the upgrade is closed within
    ~2-3 s (lws checks timeouts once a second), whatever part of the request it sent."""
    gw = gateway_factory({"Customer": {"HandshakeTimeout": "1s"}})
    biz = gw.business(events=7)
    s = socket.create_connection(("127.0.0.1", gw.customer_port))
    t0 = time.monotonic()
    if sent:
        s.sendall(sent)
    good = ws.connect(gw.ws_url(query="complete=1"))
    biz.recv_msg(Cmd.ConnOpen, pb.ConnOpen)

    s.settimeout(0.05)
    closed_at = None
    data = b""
    try:
        while time.monotonic() - t0 < 3.5:
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                continue
            except (ConnectionResetError, ConnectionAbortedError):
                chunk = b""
            if not chunk:
                closed_at = time.monotonic() - t0
                break
            data += chunk
    finally:
        s.close()
    assert closed_at is not None, (f"socket that sent {sent!r} still open 3.5 s after connecting "
                                   f"with HandshakeTimeout = 1s (received {data[:200]!r})")
    assert 0.5 <= closed_at <= 3.0, f"closed after {closed_at:.2f}s"
    # the upgraded client is not affected by the handshake timeout
    good.send("still here")
    tr = biz.recv_msg(Cmd.Transfer, pb.Transfer)
    assert tr.data == b"still here"
    assert good.is_open


def test_receive_pack_limit(gateway_factory, ws):
    gw = gateway_factory({"Customer": {"ReceivePackLimit": 1024}})
    biz = gw.business(events=7)
    whole = h.open_client(gw, ws, "whole=1", biz)
    frag = h.open_client(gw, ws, "frag=1", biz)
    ok = h.open_client(gw, ws, "ok=1", biz)

    ok.send("a" * 1024)  # exactly at the limit passes
    tr = biz.recv_msg(Cmd.Transfer, pb.Transfer)
    assert tr.uniqId == ok.uniq_id and tr.data == b"a" * 1024

    whole.send("b" * 2000)
    assert whole.wait_closed() == (1009, "message too big")

    async def send_fragments():
        try:
            await frag.ws.send(["c" * 200 for _ in range(10)])  # 10 frames, one message
        except websockets.exceptions.ConnectionClosed:
            pass  # closed while still sending: fine

    ws.run(send_fragments())
    assert frag.wait_closed() == (1009, "message too big")

    closes = {biz.recv_msg(Cmd.ConnClose, pb.ConnClose).uniqId for _ in range(2)}
    assert closes == {whole.uniq_id, frag.uniq_id}
    # nothing of the oversized messages was forwarded; the other client still works
    ok.send("small")
    tr = biz.recv_msg(Cmd.Transfer, pb.Transfer)
    assert tr.uniqId == ok.uniq_id and tr.data == b"small"
    biz.expect_silent(0.3)


def _open_raw_on_known_slot(gw: h.Gateway, biz: h.BusinessLink, query: str):
    before = gw.worker_clients()
    raw = RawWsClient(gw.customer_port, "/netsvr?" + query)
    uid = biz.recv_matching(Cmd.ConnOpen, pb.ConnOpen, lambda m: m.rawQuery == query).uniqId
    after = h.wait_for(lambda: (lambda wc: wc if sum(wc.values()) == sum(before.values()) + 1
                                else None)(gw.worker_clients()),
                       message="status to count the raw client")
    slot = [s for s in after if after[s] > before.get(s, 0)][0]
    return raw, uid, slot


def _task_on(gw: h.Gateway, want_same: bool, slot: int, tries: int = 40):
    for _ in range(tries):
        link, s = connect_task(gw)
        if (s == slot) == want_same:
            return link, s
        link.close()
    raise AssertionError(f"no task link landed {'on' if want_same else 'off'} slot {slot}")


@pytest.mark.parametrize("placement", ["same-worker", "other-worker"])
def test_send_queue_limit_slow_reader(gateway_factory, ws, placement):
    """SendQueueLimit = 64 KiB; a client that never reads while the business sends it
    1200 x 64 KiB (75 MiB): it is cut off (1008 "send queue full" if it sees the close frame),
    metric 11 counts it, the gateway's RSS grows by < 50 MB, other clients keep receiving.
    placement: whether the task link that sends is read by the slow client's worker or by the
    other worker (then every SingleCast is forwarded between workers)."""
    gw = gateway_factory({"Workers": 2, "Customer": {"SendQueueLimit": 65536},
                          "Task": {"ReceivePackLimit": 1 << 20}})
    biz = gw.business(events=3)
    healthy = h.open_spread(gw, ws, biz, min_total=4)  # clients on both workers
    slow, slow_uid, slow_slot = _open_raw_on_known_slot(gw, biz, "slow=1")
    task, task_slot = _task_on(gw, placement == "same-worker", slow_slot)
    pids = _gateway_pids(gw)
    rss0 = _rss_kib(pids)

    big = b"z" * 65536
    n_big = 1200  # 75 MiB towards the slow client: unbounded queuing would show in the RSS
    every = 60
    peak = rss0
    t0 = time.monotonic()
    for i in range(n_big):
        task.send(CMD.SingleCast, pb.SingleCast(uniqId=slow_uid, data=big))
        if i % every == 0:
            for c in healthy:
                task.send(CMD.SingleCast, pb.SingleCast(uniqId=c.uniq_id, data=f"h{i}".encode()))
            peak = max(peak, _rss_kib(pids))
    for c in healthy:
        task.send(CMD.SingleCast, pb.SingleCast(uniqId=c.uniq_id, data=b"end"))
    t_sent = time.monotonic() - t0
    expected = [f"h{i}" for i in range(0, n_big, every)] + ["end"]

    async def collect(c):
        got = []
        while not got or got[-1] != "end":
            got.append(await asyncio.wait_for(c.ws.recv(), 10))
        return got

    async def all_healthy():
        return await asyncio.gather(*(collect(c) for c in healthy))

    got = ws.run(all_healthy(), 20)
    peak = max(peak, _rss_kib(pids))
    for c, g in zip(healthy, got):
        assert g == expected, f"healthy client {c.query} got {g[:5]}... ({len(g)} frames)"

    # the slow reader is closed (1008 "send queue full" if the close frame reached it)
    ev = biz.recv_matching(Cmd.ConnClose, pb.ConnClose, lambda m: m.uniqId == slow_uid, timeout=6)
    assert ev.uniqId == slow_uid
    data = slow.drain_until_eof(6)
    frames = parse_frames(data)
    closes = [p for op, p in frames if op == 8]
    if closes:
        code = struct.unpack(">H", closes[0][:2])[0]
        assert (code, closes[0][2:].decode()) == (1008, "send queue full")
    slow.close()
    received_big = sum(1 for op, p in frames if op in (1, 2) and len(p) == len(big))
    assert received_big < n_big, "the slow client was not cut off"

    m = _metrics(task)
    assert m[11].count > 0 and m[12].count > 0, f"metric 11 {m[11].count}, 12 {m[12].count}"
    growth_mb = (peak - rss0) / 1024
    print(f"[{placement}: slow client on slot {slow_slot}, task link on slot {task_slot}] "
          f"sent {n_big} x 64 KiB in {t_sent:.2f}s; RSS {rss0 / 1024:.1f} MB -> peak "
          f"{peak / 1024:.1f} MB; slow client read {len(data)} bytes, {received_big} full frames, "
          f"close frame: {bool(closes)}; metric 11 = {m[11].count}")
    assert growth_mb < 50, (f"gateway RSS (sum over {len(pids)} pids) grew by {growth_mb:.1f} MB "
                            f"while {n_big} x 64 KiB were sent to a client cut off after "
                            f"{received_big} frames (slow client slot {slow_slot}, task link slot "
                            f"{task_slot})")
    # the healthy clients still receive after the slow one is gone
    for c in healthy:
        task.send(CMD.SingleCast, pb.SingleCast(uniqId=c.uniq_id, data=b"after"))
    assert ws.recv_all(healthy) == ["after"] * len(healthy)


def test_limit_on_open(gateway_factory, ws):
    gw = gateway_factory({"Workers": 2, "Limit": {"OnOpen": 2}})
    biz = gw.business(events=3)
    task = gw.task()
    clients = ws.connect_many([gw.ws_url(query=f"burst={i}") for i in range(10)])

    async def outcome(c):
        try:
            await asyncio.wait_for(c.ws.wait_closed(), 1.5)
        except asyncio.TimeoutError:
            return None
        return (c.ws.close_code, c.ws.close_reason)

    async def all_outcomes():
        return await asyncio.gather(*(outcome(c) for c in clients))

    res = ws.run(all_outcomes(), 10)
    refused = [r for r in res if r is not None]
    accepted = [c for c, r in zip(clients, res) if r is None]
    assert all(r == RATE_LIMITED for r in refused), res
    assert refused, f"no client refused by Limit.OnOpen = 2: {res}"
    assert accepted, f"every client refused: {res}"
    opened = {biz.recv_msg(Cmd.ConnOpen, pb.ConnOpen).rawQuery for _ in accepted}
    assert opened == {c.query for c in accepted}
    biz.expect_silent(0.3)
    h.wait_for(lambda: _metrics(task)[8].count == len(refused), 3,
               message=lambda: f"metric 8 == {len(refused)} (got {_metrics(task)[8].count})")
    print(f"Limit.OnOpen=2, Workers=2: {len(accepted)} accepted, {len(refused)} refused")
