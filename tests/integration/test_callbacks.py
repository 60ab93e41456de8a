"""Optional HTTP callbacks (PROTOCOL §6.4 step 6, §8; DECISIONS 3, 4, O7).

A small threaded HTTP server plays the business' callback endpoint. Its behaviour is chosen per
request by a handler the test installs, so tests can allow, refuse, fail, hold (until the test
releases it) or answer garbage. Every request is recorded with its headers and decoded body.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import os
import signal
import threading
import time
from typing import Callable, Optional

import pytest
import websockets.exceptions

import netsvr_harness as h
from netsvr_harness import Cmd, pb
from test_commands_common import CMD

PROTOBUF = "application/x-protobuf"


# --------------------------------------------------------------------------------------------
# callback server
# --------------------------------------------------------------------------------------------


class Reply:
    def __init__(self, status: int = 200, body: bytes = b"", delay: float = 0.0,
                 hold: Optional[threading.Event] = None, hold_max: float = 15.0):
        self.status = status
        self.body = body
        self.delay = delay
        self.hold = hold          # wait for this event (at most hold_max s) before answering
        self.hold_max = hold_max


def allow(session: str = "", customer: str = "", topics=(), data: bytes = b"", **kw) -> Reply:
    resp = pb.ConnOpenResp(allow=True, newSession=session, newCustomerId=customer,
                           newTopics=list(topics), data=data)
    return Reply(200, resp.SerializeToString(), **kw)


class Record:
    def __init__(self, method: str, path: str, headers: dict, body: bytes):
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body
        self.t = time.monotonic()
        self.answered: Optional[float] = None  # when the answer started to be written

    def conn_open(self):
        m = pb.ConnOpen()
        m.ParseFromString(self.body)
        return m

    def conn_close(self):
        m = pb.ConnClose()
        m.ParseFromString(self.body)
        return m


class CallbackServer:
    """ThreadingHTTPServer on 127.0.0.1:<free port>; HTTP/1.1 keep-alive; large listen backlog."""

    def __init__(self):
        self.records: list[Record] = []
        self.lock = threading.Lock()
        self.in_flight = 0
        self.max_in_flight = 0
        self.handler: Callable[[Record], Reply] = self._default
        self._holds: list[threading.Event] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):  # quiet
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                rec = Record("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                with outer.lock:
                    outer.records.append(rec)
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                try:
                    try:
                        reply = outer.handler(rec)
                    except Exception as e:  # noqa: BLE001 - a broken handler answers 599
                        reply = Reply(599, repr(e).encode())
                    if reply.hold is not None:
                        reply.hold.wait(reply.hold_max)
                    if reply.delay:
                        time.sleep(reply.delay)
                    rec.answered = time.monotonic()  # before the gateway can see the answer
                    with contextlib.suppress(OSError):
                        self.send_response(reply.status)
                        self.send_header("Content-Type", PROTOBUF)
                        self.send_header("Content-Length", str(len(reply.body)))
                        self.end_headers()
                        if reply.status not in (204, 304) and reply.body:
                            self.wfile.write(reply.body)
                        self.wfile.flush()
                finally:
                    with outer.lock:
                        outer.in_flight -= 1

        class Server(http.server.ThreadingHTTPServer):
            request_queue_size = 1024
            daemon_threads = True
            allow_reuse_address = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="callback-http",
                                        daemon=True)
        self._thread.start()

    @staticmethod
    def _default(rec: Record) -> Reply:
        if rec.path.startswith("/onclose"):
            return Reply(204)
        return allow()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def new_hold(self) -> threading.Event:
        ev = threading.Event()
        self._holds.append(ev)
        return ev

    def requests(self, path: str) -> list[Record]:
        with self.lock:
            return [r for r in self.records if r.path == path]

    def wait_requests(self, path: str, n: int, timeout: float = h.DEFAULT_TIMEOUT) -> list[Record]:
        return h.wait_for(lambda: (lambda rs: rs if len(rs) >= n else None)(self.requests(path)),
                          timeout, message=lambda: (f"{n} callback requests on {path} "
                                                    f"(got {len(self.requests(path))})"))

    def close(self) -> None:
        for ev in self._holds:
            ev.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(5)


@pytest.fixture
def cb():
    server = CallbackServer()
    yield server
    server.close()


def _callback_gateway(gateway_factory, cb: CallbackServer, on_open=True, on_close=True,
                      extra: Optional[dict] = None, workers: int = 2):
    cust = {}
    if on_open:
        cust["OnOpenCallbackApi"] = cb.url("/onopen")
    if on_close:
        cust["OnCloseCallbackApi"] = cb.url("/onclose")
    cust.update((extra or {}).get("Customer", {}))
    ov = {"Workers": workers, "Customer": cust}
    for k, v in (extra or {}).items():
        if k != "Customer":
            ov[k] = v
    return gateway_factory(ov)


def _query_of(rec: Record) -> str:
    return rec.conn_open().rawQuery


def _metrics(task) -> dict:
    return dict(task.request(CMD.Metrics, b"", pb.MetricsResp).items)


def _online(task, uids) -> list[str]:
    return list(task.request(CMD.CheckOnline, pb.CheckOnlineReq(uniqIds=list(uids)),
                             pb.CheckOnlineResp).uniqIds)


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------


def test_open_callback_allow_seeds_state_before_visible(gateway_factory, ws, cb):
    """allow=true: request format; newSession/newCustomerId/newTopics applied and indexed before
    the business' ConnOpen; data delivered first; OnClose callback before the ConnClose event."""
    gw = _callback_gateway(gateway_factory, cb)
    q = "user=alice&tag=seed"
    cb.handler = lambda rec: (allow(session="sess-alice", customer="cust-alice",
                                    topics=["topic-a", "", "topic-b"], data=b"welcome alice")
                              if rec.path == "/onopen" else Reply(204))
    biz = gw.business(events=7)
    task = gw.task()
    c = ws.connect(gw.ws_url(query=q))

    rec = cb.wait_requests("/onopen", 1)[0]
    assert rec.method == "POST"
    assert rec.headers.get("content-type") == PROTOBUF
    assert rec.headers.get("accept") == PROTOBUF
    opened_cb = rec.conn_open()
    assert opened_cb.rawQuery == q
    assert opened_cb.uniqId.startswith(gw.uniq_prefix) and len(opened_cb.uniqId) == 28
    assert opened_cb.remoteAddr == "127.0.0.1"

    ev = biz.recv_msg(Cmd.ConnOpen, pb.ConnOpen)
    uid = ev.uniqId
    assert uid == opened_cb.uniqId
    assert ev.rawQuery == q
    # right after the ConnOpen event: everything seeded by the callback is visible and indexed
    assert _online(task, [uid]) == [uid]
    info = task.request(CMD.ConnInfo, pb.ConnInfoReq(uniqIds=[uid], reqSession=True,
                                                     reqCustomerId=True, reqTopic=True),
                        pb.ConnInfoResp).items
    assert uid in info, f"ConnInfo does not know {uid}: {info}"
    assert info[uid].session == "sess-alice"
    assert info[uid].customerId == "cust-alice"
    assert sorted(info[uid].topics) == ["topic-a", "topic-b"]
    tl = task.request(CMD.TopicUniqIdList, pb.TopicUniqIdListReq(topics=["topic-a", "topic-b"]),
                      pb.TopicUniqIdListResp).items
    assert list(tl["topic-a"].uniqIds) == [uid] and list(tl["topic-b"].uniqIds) == [uid], tl
    task.send(CMD.SingleCastByCustomerId,
              pb.SingleCastByCustomerId(customerId="cust-alice", data=b"by-customer"))

    # the callback's data came first, then the message routed by the seeded customerId
    assert c.recv() == "welcome alice"
    assert c.recv() == "by-customer"

    # a Transfer carries the seeded state
    c.send("hello")
    tr = biz.recv_msg(Cmd.Transfer, pb.Transfer)
    assert (tr.uniqId, tr.data, tr.customerId, tr.session, sorted(tr.topics)) == \
        (uid, b"hello", "cust-alice", "sess-alice", ["topic-a", "topic-b"])

    # OnClose callback: held -> the business gets no ConnClose until it answers
    hold = cb.new_hold()
    cb.handler = lambda rec: Reply(204, hold=hold) if rec.path == "/onclose" else allow()
    c.close()
    crec = cb.wait_requests("/onclose", 1)[0]
    assert crec.method == "POST"
    assert crec.headers.get("content-type") == PROTOBUF
    cc = crec.conn_close()
    assert (cc.uniqId, cc.customerId, cc.session, sorted(cc.topics)) == \
        (uid, "cust-alice", "sess-alice", ["topic-a", "topic-b"])
    biz.expect_silent(0.7)  # the ConnClose event waits for the callback's answer
    hold.set()
    ev_close = biz.recv_msg(Cmd.ConnClose, pb.ConnClose)
    assert ev_close.uniqId == uid and ev_close.customerId == "cust-alice"
    assert crec.answered is not None and crec.answered - crec.t >= 0.7
    assert len(cb.requests("/onclose")) == 1


def test_open_callback_deny_delivers_data_then_unauthorized(gateway_factory, ws, cb):
    gw = _callback_gateway(gateway_factory, cb)
    cb.handler = lambda rec: (Reply(200, pb.ConnOpenResp(allow=False, data=b"go away",
                                                         newCustomerId="x").SerializeToString())
                              if rec.path == "/onopen" else Reply(204))
    biz = gw.business(events=7)
    task = gw.task()
    c = ws.connect(gw.ws_url(query="deny=1"))
    uid = cb.wait_requests("/onopen", 1)[0].conn_open().uniqId
    assert c.recv() == "go away"
    code, reason = c.wait_closed()
    assert (code, reason) == (1008, "unauthorized")
    # never opened: no ConnOpen/ConnClose event, no OnClose callback (DECISIONS 3), not counted
    biz.expect_silent(1.0)
    assert cb.requests("/onclose") == []
    assert _online(task, [uid]) == []
    assert _metrics(task)[1].count == 0


@pytest.mark.parametrize("mode", ["http500", "timeout", "garbage"])
def test_open_callback_failure_closes_1011(gateway_factory, ws, cb, mode):
    gw = _callback_gateway(gateway_factory, cb,
                           extra={"Customer": {"CallbackApiDeadline": "500ms"}})
    garbage = b"\xff\xff\xff\x0a"
    with pytest.raises(Exception):  # the garbage really does not parse as ConnOpenResp
        pb.ConnOpenResp().ParseFromString(garbage)
    hold = cb.new_hold()

    def handler(rec: Record) -> Reply:
        if rec.path != "/onopen":
            return Reply(204)
        if mode == "http500":
            return Reply(500, b"boom")
        if mode == "timeout":  # answer (allow) only long after the deadline
            return allow(hold=hold, hold_max=3.0)
        return Reply(200, garbage)

    cb.handler = handler
    biz = gw.business(events=7)
    t0 = time.monotonic()
    c = ws.connect(gw.ws_url(query=f"mode={mode}"))
    code, reason = c.wait_closed(5.0)
    elapsed = time.monotonic() - t0
    assert code == 1011, f"{mode}: close ({code}, {reason!r})"
    if mode == "http500":
        assert reason == "receive error http status code: 500"
    else:
        assert reason, f"{mode}: empty close reason"
    if mode == "timeout":
        assert 0.4 <= elapsed < 2.0, f"closed after {elapsed:.2f}s with a 500ms deadline"
    assert len(cb.requests("/onopen")) == 1
    biz.expect_silent(0.8)
    assert cb.requests("/onclose") == []


def test_pending_callback_hides_connection_and_holds_messages(gateway_factory, ws, cb):
    """While the callback is pending the connection is invisible, its messages wait; after the
    answer: ConnOpen, then the messages as Transfer in the order sent (DECISIONS 4)."""
    gw = _callback_gateway(gateway_factory, cb, on_close=False)
    hold = cb.new_hold()
    cb.handler = lambda rec: allow(customer="held-cust", hold=hold)
    biz = gw.business(events=7)
    task = gw.task()
    c = ws.connect(gw.ws_url(query="held=1"))
    uid = cb.wait_requests("/onopen", 1)[0].conn_open().uniqId
    assert _online(task, [uid]) == []
    assert task.request(CMD.UniqIdCount, b"", pb.UniqIdCountResp).count == 0
    task.send(CMD.SingleCast, pb.SingleCast(uniqId=uid, data=b"too early"))
    msgs = [f"m{i}-" + "x" * i for i in range(1, 11)]
    for m in msgs:
        c.send(m)
    biz.expect_silent(0.8)
    assert _online(task, [uid]) == []
    hold.set()

    ev = biz.recv_msg(Cmd.ConnOpen, pb.ConnOpen)
    assert ev.uniqId == uid
    got = [biz.recv_msg(Cmd.Transfer, pb.Transfer) for _ in msgs]
    assert [t.uniqId for t in got] == [uid] * len(msgs)
    assert [t.data.decode() for t in got] == msgs
    assert all(t.customerId == "held-cust" for t in got)
    assert _online(task, [uid]) == [uid]
    # the SingleCast sent while the connection was invisible found nothing
    task.send(CMD.SingleCast, pb.SingleCast(uniqId=uid, data=b"now"))
    assert c.recv() == "now"


def test_close_callback_for_every_opened_connection(gateway_factory, ws, cb):
    """OnCloseCallbackApi alone: one POST per opened connection (client close, force offline),
    none for sockets that never opened; answered 204; each followed by the ConnClose event."""
    gw = _callback_gateway(gateway_factory, cb, on_open=False)
    biz = gw.business(events=3)
    task = gw.task()
    clients = [h.open_client(gw, ws, h.next_tag("cc"), biz) for _ in range(5)]
    uids = {c.uniq_id for c in clients}
    # sockets that never open: plain GET and a 404 upgrade
    h.http_request(gw.customer_port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(websockets.exceptions.InvalidStatusCode):
        ws.connect(gw.ws_url("/nowhere"))

    for c in clients[:3]:
        c.close()
    task.send(CMD.ForceOffline, pb.ForceOffline(uniqIds=[clients[3].uniq_id], data=b""))
    for c in clients[3:4]:
        assert c.wait_closed()[0] == 1008
    clients[4].close(4000, "bye")

    closes = [biz.recv_msg(Cmd.ConnClose, pb.ConnClose) for _ in clients]
    assert {e.uniqId for e in closes} == uids
    recs = cb.wait_requests("/onclose", len(clients))
    got = [r.conn_close().uniqId for r in recs]
    assert sorted(got) == sorted(uids), "one OnClose callback per opened connection"
    for r in recs:
        assert r.headers.get("content-type") == PROTOBUF
    biz.expect_silent(0.5)
    assert len(cb.requests("/onclose")) == len(clients)
    assert cb.requests("/onopen") == []


def test_close_callback_for_the_clients_of_a_crashed_worker(gateway_factory, ws, cb):
    """A worker killed with SIGKILL closes nothing itself: the gateway announces each of its
    clients' ends, and each goes the same way as a normal close, OnCloseCallbackApi then the
    ConnClose event."""
    gw = _callback_gateway(gateway_factory, cb, on_open=False)
    biz = gw.business(events=3)
    clients = h.open_spread(gw, ws, biz, min_total=4)
    # the victim holds clients but not the business link, which must see the ConnClose events
    victim = next(w for w in gw.status()["workers"] if w["links"] == 0)
    lost = {c.uniq_id for c in clients if c.slot == victim["slot"]}
    assert lost
    os.kill(victim["pid"], signal.SIGKILL)
    recs = cb.wait_requests("/onclose", len(lost))
    assert sorted(r.conn_close().uniqId for r in recs) == sorted(lost)
    closes = [biz.recv_msg(Cmd.ConnClose, pb.ConnClose) for _ in lost]
    assert {e.uniqId for e in closes} == lost
    assert len(cb.requests("/onclose")) == len(lost), "one callback per lost client, no more"


def test_many_pending_callbacks_do_not_slow_other_clients(gateway_factory, ws, cb):
    """200 opens whose callbacks are pending (then answer after 200 ms) while another client's
    echo round trip through the business stays fast."""
    n = 200
    gw = _callback_gateway(gateway_factory, cb, on_close=False)
    hold = cb.new_hold()

    def handler(rec: Record) -> Reply:
        if _query_of(rec).startswith("slow"):
            return allow(hold=hold, delay=0.2)
        return allow()

    cb.handler = handler
    biz = gw.business(events=7)
    task = gw.task()
    fast = h.open_client(gw, ws, "fast=1", biz)

    def echo(i: int) -> float:
        t0 = time.monotonic()
        fast.send(f"ping-{i}")
        tr = biz.recv_matching(Cmd.Transfer, pb.Transfer, lambda m: m.uniqId == fast.uniq_id)
        task.send(CMD.SingleCast, pb.SingleCast(uniqId=fast.uniq_id, data=b"pong-" + tr.data))
        assert fast.recv() == f"pong-ping-{i}"
        return time.monotonic() - t0

    baseline = [echo(i) for i in range(3)]

    async def open_slow():
        return await asyncio.gather(*(
            websockets.connect(gw.ws_url(query=f"slow={i}"), open_timeout=10, ping_interval=None,
                               close_timeout=3, compression=None, max_queue=None)
            for i in range(n)), return_exceptions=True)

    fut = asyncio.run_coroutine_threadsafe(open_slow(), ws.loop)
    try:
        cb.wait_requests("/onopen", n + 1, timeout=15)
        assert cb.in_flight >= n, f"only {cb.in_flight} callbacks pending at once"
        pending_rtts = [echo(10 + i) for i in range(5)]
        slow_uids = [r.conn_open().uniqId for r in cb.requests("/onopen")
                     if _query_of(r).startswith("slow")]
        assert _online(task, slow_uids) == [], "connections visible while their callback is pending"
    finally:
        t_release = time.monotonic()
        hold.set()
        wss = fut.result(20)
    errors = [w for w in wss if isinstance(w, BaseException)]
    good = [w for w in wss if not isinstance(w, BaseException)]
    ws.clients.extend(h.WsClient(ws, w, "slow") for w in good)
    assert not errors, f"{len(errors)} slow clients failed to connect: {errors[:3]!r}"

    # all 200 open shortly after their callbacks answer (they were called concurrently)
    opened = set()
    deadline = time.monotonic() + 10
    while len(opened) < n:
        assert time.monotonic() < deadline, f"only {len(opened)}/{n} ConnOpen events"
        ev = biz.recv_matching(Cmd.ConnOpen, pb.ConnOpen, lambda m: m.rawQuery.startswith("slow"),
                               timeout=max(0.1, deadline - time.monotonic()))
        opened.add(ev.uniqId)
    t_all = time.monotonic() - t_release
    after_rtts = [echo(20 + i) for i in range(3)]
    print(f"RTT baseline {max(baseline)*1000:.1f} ms, while {n} pending "
          f"{[round(x*1000, 1) for x in pending_rtts]} ms, after {max(after_rtts)*1000:.1f} ms; "
          f"max callbacks in flight {cb.max_in_flight}; all opened in {t_all:.2f}s")
    assert max(pending_rtts) < 0.2, f"echo RTTs while callbacks pending: {pending_rtts}"
    assert max(after_rtts) < 0.2, f"echo RTTs after: {after_rtts}"
    assert sorted(opened) == sorted(slow_uids)
    # answered concurrently: 200 x 200 ms one after the other would take 40 s
    assert t_all < 5.0, f"{n} opens took {t_all:.2f}s after the callbacks were released"
    assert sorted(_online(task, slow_uids)) == sorted(slow_uids)
