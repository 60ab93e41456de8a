"""Reload (`netsvr reload`, SIGHUP to the master): issue #4, DESIGN §5.

A reload re-reads and validates the config; a bad one (or changed listen addresses) leaves the
running instance untouched and `netsvr reload` exits 1 with the reason on stderr. Otherwise a new
generation of workers starts on the same listening sockets; the old one stops accepting, hands
its business links to the new one (test_reload_handover.py), keeps serving its websockets, and
exits when its last client leaves (or closes the rest with 1012 "service restart" after
ReloadDrainTime). No client and no message is lost.

This module also holds the load helpers used by test_crash.py and test_stop.py:
  * EchoBusiness -- a business on its own thread: one worker-port link registered for events,
                    one task link; echoes every Transfer back with SingleCast and records
                    ConnOpen/ConnClose/Transfer. Like the Go SDK it reconnects and re-registers
                    when its worker-port link closes (at once instead of after 3 s).
  * LoadClients  -- many websocket clients on the harness' WsLoop that send numbered messages
                    ("<tag>|<seq>") every `interval` and check that the echoes come back exactly
                    in order.
"""

from __future__ import annotations

import asyncio
import collections
import math
import os
import random
import select
import signal
import struct
import threading
import time
from typing import Optional

import websockets
import websockets.exceptions

import netsvr_harness as h
from netsvr_harness import Cmd, pb

LIMIT_CMD = h.cmd_pb2.Limit

# Gateway settings for load tests: no per-message debug logging, and a business send queue that
# does not drop events only because the (Python) business is briefly slower than the gateway.
LOAD_OVERRIDES = {"LogLevel": "info", "Worker": {"SendChanCap": 65536}}


# --------------------------------------------------------------------------------------------
# status helpers (by serial: during a reload two workers can share a slot)
# --------------------------------------------------------------------------------------------


def workers(gw: h.Gateway) -> list[dict]:
    return gw.status()["workers"]


def wait_counted(gw: h.Gateway, n: int, timeout: float = 5) -> list[dict]:
    """The worker list once `netsvr status` counts n clients over all workers."""
    return h.wait_for(lambda: (lambda w: w if sum(x["clients"] for x in w) == n else None)(workers(gw)),
                      timeout, message=f"status to count {n} clients")


def newest_gen(ws_: list[dict]) -> int:
    return max(w["gen"] for w in ws_)


def of_gen(ws_: list[dict], gen: int) -> list[dict]:
    return [w for w in ws_ if w["gen"] == gen]


def fmt_workers(ws_: list[dict]) -> str:
    return "; ".join(f"slot={w['slot']} gen={w['gen']} serial={w['serial']} pid={w['pid']} "
                     f"{w['state']} clients={w.get('clients')} links={w.get('links')} "
                     f"tasks={w.get('tasks')}" for w in ws_)


def only_generation(gw: h.Gateway, gen: int, n: int) -> Optional[list[dict]]:
    """The worker list if it holds exactly n running workers, all of generation gen, else None."""
    ws_ = workers(gw)
    if len(ws_) == n and all(w["gen"] == gen and w["state"] == "running" for w in ws_):
        return ws_
    return None


def wait_only_generation(gw: h.Gateway, gen: int, n: int, timeout: float) -> list[dict]:
    return h.wait_for(lambda: only_generation(gw, gen, n), timeout,
                      message=lambda: f"only {n} running workers of generation {gen} in status "
                                      f"(now: {fmt_workers(workers(gw))})")


def do_reload(gw: h.Gateway, changes: Optional[dict] = None, timeout: float = 40.0):
    """Apply config changes (merge_config semantics), write the file, run `netsvr reload`.
    Returns (CompletedProcess, seconds it took)."""
    if changes:
        gw.config = h.merge_config(gw.config, changes)
        gw.write_config()
    t0 = time.monotonic()
    cp = gw.cli("reload", timeout=timeout)
    return cp, time.monotonic() - t0


def check_reloaded(gw: h.Gateway, old_gen: int, n: int) -> list[dict]:
    """After a successful reload: a generation old_gen+1 with n running workers, and no worker of
    an older generation still running (they drain or have exited)."""
    ws_ = workers(gw)
    gen = newest_gen(ws_)
    assert gen == old_gen + 1, f"expected generation {old_gen + 1}: {fmt_workers(ws_)}"
    new = of_gen(ws_, gen)
    assert sorted(w["slot"] for w in new) == list(range(n)), fmt_workers(ws_)
    assert all(w["state"] == "running" for w in new), \
        f"`netsvr reload` returned before the new generation runs: {fmt_workers(ws_)}"
    old_running = [w for w in ws_ if w["gen"] < gen and w["state"] == "running"]
    assert not old_running, f"old generation still accepts: {fmt_workers(old_running)}"
    return ws_


def metric_count(gw: h.Gateway, item: int) -> object:
    """Count of a Metrics item, asked on a fresh task link (diagnostics; never raises)."""
    try:
        link = gw.task()
        try:
            r = link.request(h.cmd_pb2.Metrics, b"", pb.MetricsResp, 3.0)
        finally:
            link.close()
        return r.items[item].count if item in r.items else "not enabled"
    except Exception as e:  # noqa: BLE001
        return f"unavailable ({e!r})"


def query_count(link: h.BusinessLink, timeout: float = 3.0) -> int:
    return link.request(Cmd.UniqIdCount, b"", pb.UniqIdCountResp, timeout).count


def query_list(link: h.BusinessLink, timeout: float = 3.0) -> list[str]:
    return list(link.request(Cmd.UniqIdList, b"", pb.UniqIdListResp, timeout).uniqIds)


# --------------------------------------------------------------------------------------------
# business simulator
# --------------------------------------------------------------------------------------------


class EchoBusiness:
    """A business on its own thread (see the module docstring).

    Records, under self.lock:
      open_query[uniqId] = rawQuery, open_count, close_count (Counters by uniqId),
      seqs[tag] = sequence numbers of the Transfers of that client in arrival order,
      errors (protocol anomalies), link_closed_at (times the worker-port link was closed by the
      gateway), reconnects, echo_failures (SingleCasts that could not be written)."""

    def __init__(self, gw: h.Gateway, events: int = 7, echo: bool = True, reconnect: bool = True):
        self.gw = gw
        self.events = events
        self.echo = echo
        self.reconnect = reconnect
        self.lock = threading.Lock()
        self.open_query: dict[str, str] = {}
        self.open_count: collections.Counter = collections.Counter()
        self.close_count: collections.Counter = collections.Counter()
        self.close_time: dict[str, float] = {}
        self.seqs: dict[str, list[int]] = collections.defaultdict(list)
        self.transfers = 0
        self.errors: list[str] = []
        self.link_closed_at: list[tuple[float, int]] = []  # (monotonic, ConnCloses so far)
        self.reconnects = 0
        self.task_reconnects = 0
        self.task_closed_at: list[float] = []
        self.echo_failures = 0
        self.worker_link_open = threading.Event()
        self._stop = threading.Event()
        self._wlink: Optional[h.BusinessLink] = None
        self._tlink: Optional[h.BusinessLink] = None
        self._wbuf = bytearray()
        self._unregistered = False
        self._connect_worker()
        if echo:
            self._tlink = gw.task()
        self._thread = threading.Thread(target=self._run, name="echo-business", daemon=True)
        self._thread.start()

    # ---- links ----------------------------------------------------------------------------

    def _connect_worker(self) -> None:
        link = self.gw.business(events=self.events)
        self._wbuf = bytearray(link._buf)  # events that came with the RegisterResp
        link._buf.clear()
        assert not link._stash
        self._wlink = link
        self.worker_link_open.set()
        if self._wbuf:
            self._process()

    def _worker_eof(self) -> None:
        self.worker_link_open.clear()
        with self.lock:
            self.link_closed_at.append((time.monotonic(), sum(self.close_count.values())))
            if self._wbuf:
                self.errors.append(f"worker link closed inside a packet ({len(self._wbuf)} bytes)")
        self._wlink.close()
        self._wlink = None
        if self.reconnect:
            self._reconnect_worker()

    def _reconnect_worker(self) -> None:
        while not self._stop.is_set():
            try:
                self._connect_worker()
                with self.lock:
                    self.reconnects += 1
                return
            except (OSError, AssertionError):
                self._stop.wait(0.05)  # gateway not accepting right now: retry soon

    def leave_and_return(self) -> None:
        """Like an SDK that restarts: Unregister, read up to the UnRegisterResp (it follows every
        event already queued on the link), close the link and register on a new one."""
        link = self._wlink
        if link is not None:
            link.send(Cmd.Unregister, pb.UnRegisterReq(connId=link.conn_id))

    def _reregister(self) -> None:
        self._unregistered = False
        self.worker_link_open.clear()
        with self.lock:
            if self._wbuf:
                self.errors.append(f"data after the UnRegisterResp ({len(self._wbuf)} bytes)")
        self._wlink.close()
        self._wlink = None
        self._reconnect_worker()

    def _task_eof(self) -> None:
        with self.lock:
            self.task_closed_at.append(time.monotonic())
        self._tlink.close()
        self._tlink = None
        if not self.reconnect:
            return
        while not self._stop.is_set():
            try:
                self._tlink = self.gw.task()
                with self.lock:
                    self.task_reconnects += 1
                return
            except OSError:
                self._stop.wait(0.05)

    # ---- loop -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                socks = [l.sock for l in (self._wlink, self._tlink) if l is not None]
                if not socks:
                    self._stop.wait(0.05)
                    continue
                try:
                    readable, _, _ = select.select(socks, [], [], 0.05)
                except (OSError, ValueError):
                    continue
                for s in readable:
                    try:
                        data = s.recv(1 << 20)
                    except OSError:
                        data = b""
                    if self._wlink is not None and s is self._wlink.sock:
                        if not data:
                            self._worker_eof()
                            break
                        self._wbuf += data
                        self._process()
                        if self._unregistered:
                            self._reregister()
                            break
                    elif self._tlink is not None and s is self._tlink.sock:
                        if not data:
                            self._task_eof()
                            break
                        with self.lock:
                            self.errors.append(f"gateway sent {data[:40]!r} on the task link")
        except BaseException as e:  # noqa: BLE001 - reported by the tests
            with self.lock:
                self.errors.append(f"business thread died: {e!r}")

    def _process(self) -> None:
        out = []
        buf = self._wbuf
        now = time.monotonic()
        with self.lock:
            while len(buf) >= 4:
                (length,) = struct.unpack_from(">I", buf, 0)
                if len(buf) < 4 + length:
                    break
                payload = bytes(buf[4:4 + length])
                del buf[:4 + length]
                if length < 4:
                    self.errors.append(f"packet with L={length}")
                    continue
                (cmd,) = struct.unpack_from(">I", payload, 0)
                body = payload[4:]
                if cmd == Cmd.Transfer:
                    m = pb.Transfer()
                    m.ParseFromString(body)
                    self.transfers += 1
                    text = m.data.decode(errors="replace")
                    tag, _, seq = text.rpartition("|")
                    q = self.open_query.get(m.uniqId)
                    if q is None:
                        self.errors.append(f"Transfer {text!r} of {m.uniqId} before its ConnOpen")
                    elif q != tag:
                        self.errors.append(f"Transfer {text!r} of {m.uniqId} (opened as {q!r})")
                    try:
                        self.seqs[tag].append(int(seq))
                    except ValueError:
                        self.errors.append(f"unexpected Transfer data {text!r}")
                    if self.echo:
                        out.append(h.BusinessLink.frame(
                            Cmd.SingleCast, pb.SingleCast(uniqId=m.uniqId, data=m.data).SerializeToString()))
                elif cmd == Cmd.ConnOpen:
                    m = pb.ConnOpen()
                    m.ParseFromString(body)
                    self.open_query[m.uniqId] = m.rawQuery
                    self.open_count[m.uniqId] += 1
                elif cmd == Cmd.Unregister:  # UnRegisterResp: every event before it is in
                    self._unregistered = True
                elif cmd == Cmd.ConnClose:
                    m = pb.ConnClose()
                    m.ParseFromString(body)
                    if m.uniqId not in self.open_query:
                        self.errors.append(f"ConnClose for {m.uniqId} without ConnOpen")
                    self.close_count[m.uniqId] += 1
                    self.close_time.setdefault(m.uniqId, now)
                else:
                    self.errors.append(f"unexpected {h.cmd_name(cmd)} on the worker link")
        if out:
            data = b"".join(out)
            try:
                if self._tlink is None:
                    raise OSError("no task link")
                self._tlink.sock.settimeout(10)
                self._tlink.sock.sendall(data)
            except OSError:
                with self.lock:
                    self.echo_failures += len(out)

    # ---- for the tests --------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def uid_of(self) -> dict[str, str]:
        """rawQuery -> uniqId of every ConnOpen seen."""
        with self.lock:
            return {q: u for u, q in self.open_query.items()}

    def wait_opens(self, tags, timeout: float = 15.0) -> dict[str, str]:
        tags = set(tags)

        def ok():
            m = self.uid_of()
            return m if tags <= m.keys() else None
        return h.wait_for(ok, timeout, message=lambda: f"ConnOpen of {len(tags)} clients (have "
                                                       f"{len(tags & self.uid_of().keys())})")

    def wait_closes(self, uids, timeout: float = 15.0) -> None:
        uids = set(uids)

        def msg():
            missing = uids - set(self.closes())
            with self.lock:
                tags = sorted(self.open_query.get(u, u) for u in missing)
            groups = collections.Counter(t.split("=")[0] for t in tags)
            # the high byte of the uniqId counter is the owner worker's serial (DESIGN §3)
            serials = collections.Counter(int(u[20:22], 16) for u in missing if len(u) == 28)
            return (f"ConnClose of {len(uids)} clients (have {len(uids) - len(missing)}); missing "
                    f"by client group {dict(groups)}, by owner worker serial {dict(serials)}: "
                    f"{tags[:6]}; gateway metric 10 (events "
                    f"it could not hand to a business) = {metric_count(self.gw, 10)}")
        h.wait_for(lambda: uids <= set(self.closes()), timeout, message=msg)

    def closes(self) -> collections.Counter:
        with self.lock:
            return collections.Counter(self.close_count)

    def seqs_of(self, tag: str) -> list[int]:
        with self.lock:
            return list(self.seqs.get(tag, []))

    def errs(self) -> list[str]:
        with self.lock:
            return list(self.errors)


# --------------------------------------------------------------------------------------------
# load clients
# --------------------------------------------------------------------------------------------


class LoadClient:
    def __init__(self, tag: str, ws):
        self.tag = tag
        self.query = tag
        self.ws = ws
        self.uniq_id: Optional[str] = None
        self.sent = 0
        self.got: list[int] = []
        self.bad: list[str] = []
        self.sending = False
        self.closed_at: Optional[float] = None
        self.close_code: Optional[int] = None
        self.close_reason: Optional[str] = None
        self.sender = None
        self.receiver = None

    def __repr__(self):
        return f"<client {self.tag} {self.uniq_id} sent={self.sent} got={len(self.got)}>"


class LoadClients:
    """Websocket clients on the harness' WsLoop (closed at its teardown)."""

    def __init__(self, pool: h.WsLoop, gw: h.Gateway, interval: float = 0.05):
        self.pool = pool
        self.gw = gw
        self.interval = interval
        self.clients: list[LoadClient] = []
        self._n = 0

    def connect(self, n: int, prefix: str = "load", timeout: float = 20.0) -> list[LoadClient]:
        tags = []
        for _ in range(n):
            self._n += 1
            tags.append(f"{prefix}={os.getpid()}-{self._n}")

        async def go():
            out = []
            for i in range(0, n, 100):  # 100 handshakes at a time
                part = tags[i:i + 100]
                wss = await asyncio.gather(*(self.pool._connect(self.gw.ws_url(query=t), None, timeout)
                                             for t in part))
                out += [LoadClient(t, w) for t, w in zip(part, wss)]
            for c in out:
                c.receiver = asyncio.ensure_future(self._receive(c))
            return out
        new = self.pool.run(go(), timeout * (n // 100 + 1) + 5)
        self.clients += new
        self.pool.clients += new  # WsLoop.close() closes them at teardown
        return new

    async def _receive(self, c: LoadClient) -> None:
        try:
            async for msg in c.ws:
                if isinstance(msg, bytes):
                    msg = msg.decode(errors="replace")
                tag, _, seq = msg.rpartition("|")
                want = len(c.got)
                try:
                    num = int(seq)
                except ValueError:
                    num = -1
                if tag != c.tag or num != want:
                    c.bad.append(f"expected #{want}, got {msg!r}")
                c.got.append(num)
        except websockets.exceptions.ConnectionClosed:
            pass
        finally:
            c.closed_at = time.monotonic()
            c.close_code = c.ws.close_code
            c.close_reason = c.ws.close_reason
            c.sending = False

    async def _send_loop(self, c: LoadClient) -> None:
        await asyncio.sleep(random.random() * self.interval)
        while c.sending:
            try:
                await c.ws.send(f"{c.tag}|{c.sent}")
            except websockets.exceptions.ConnectionClosed:
                return
            c.sent += 1
            await asyncio.sleep(self.interval)

    def start_sending(self, clients: Optional[list[LoadClient]] = None) -> None:
        clients = self.clients if clients is None else clients

        async def go():
            for c in clients:
                c.sending = True
                c.sender = asyncio.ensure_future(self._send_loop(c))
        self.pool.run(go())

    def stop_sending(self, clients: Optional[list[LoadClient]] = None) -> None:
        clients = self.clients if clients is None else clients

        async def go():
            for c in clients:
                c.sending = False
            await asyncio.gather(*(c.sender for c in clients if c.sender), return_exceptions=True)
        self.pool.run(go(), 10)

    def cancel(self) -> None:
        """Teardown: end the send loops (if a test failed while they ran)."""
        async def go():
            for c in self.clients:
                c.sending = False
                if c.sender is not None:
                    c.sender.cancel()
        try:
            self.pool.run(go(), 5)
        except Exception:  # noqa: BLE001 - best effort at teardown
            pass

    def wait_echoes(self, clients: Optional[list[LoadClient]] = None, timeout: float = 10.0,
                    biz: Optional["EchoBusiness"] = None) -> None:
        """Every sent message has come back (or the client is closed). With biz, a timeout says
        for each client whether the business got the missing messages (lost on the way in) or
        not (lost on the way back)."""
        clients = self.clients if clients is None else clients

        def missing():
            out = []
            for c in clients:
                if len(c.got) >= c.sent or c.closed_at:
                    continue
                lost = sorted(set(range(c.sent)) - set(c.got))
                line = f"{c.tag} ({c.uniq_id}): sent {c.sent}, no echo of {lost[:8]}"
                if biz is not None:
                    seen = set(biz.seqs_of(c.tag))
                    line += (f"; business got {[s for s in lost[:8] if s in seen]}, "
                             f"not {[s for s in lost[:8] if s not in seen]}")
                out.append(line)
            links = ""
            if biz is not None:
                links = (f" (business: worker link closed by the gateway {len(biz.link_closed_at)}x, "
                         f"task link {biz.task_reconnects}x, unwritable echoes {biz.echo_failures})")
            return (f"echoes of every message; {len(out)} clients short{links}:\n  "
                    + "\n  ".join(out[:20]))
        h.wait_for(lambda: all(len(c.got) >= c.sent or c.closed_at for c in clients), timeout,
                   message=missing)

    def wait_progress(self, clients: list[LoadClient], k: int, timeout: float = 10.0) -> None:
        """Each open client gets k more echoes than it had."""
        base = {id(c): len(c.got) for c in clients}
        h.wait_for(lambda: all(len(c.got) >= base[id(c)] + k or c.closed_at for c in clients),
                   timeout, message=lambda: f"{k} more echoes for every client; behind: " + ", ".join(
                       f"{c.tag} +{len(c.got) - base[id(c)]}" for c in clients
                       if len(c.got) < base[id(c)] + k and not c.closed_at)[:1500])

    def close(self, clients: Optional[list[LoadClient]] = None, timeout: float = 10.0) -> None:
        clients = self.clients if clients is None else clients

        async def go():
            await asyncio.gather(*(c.ws.close() for c in clients), return_exceptions=True)
        self.pool.run(go(), timeout)

    def wait_closed(self, clients: list[LoadClient], timeout: float = 10.0) -> None:
        h.wait_for(lambda: all(c.closed_at for c in clients), timeout,
                   message=lambda: f"{sum(1 for c in clients if not c.closed_at)} of "
                                   f"{len(clients)} clients still open")


def check_exact(clients: list[LoadClient], biz: Optional[EchoBusiness]) -> None:
    """Each client got back exactly its sequence numbers in order, and the business saw each
    client's numbers exactly once (in order)."""
    problems = []
    for c in clients:
        want = list(range(c.sent))
        if c.bad or c.got != want:
            problems.append(f"client {c.tag}: sent {c.sent}, got back {len(c.got)}; "
                            f"first anomalies {c.bad[:3]}")
        if biz is not None:
            seen = biz.seqs_of(c.tag)
            if seen != want:
                dup = [s for s, n in collections.Counter(seen).items() if n > 1]
                lost = sorted(set(want) - set(seen))
                order = "" if sorted(seen) != seen else " (in order)"
                problems.append(f"business for {c.tag}: {len(seen)} Transfers for {c.sent} sent; "
                                f"lost {lost[:10]}, duplicated {dup[:10]}{order}")
    assert not problems, f"{len(problems)} problems:\n  " + "\n  ".join(problems[:30])


def assign_uids(clients: list[LoadClient], biz: EchoBusiness, timeout: float = 15.0) -> None:
    m = biz.wait_opens([c.tag for c in clients], timeout)
    for c in clients:
        c.uniq_id = m[c.tag]


# --------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------


def test_three_reloads_under_load_lose_nothing(gateway_factory, ws):
    t_start = time.monotonic()
    gw = gateway_factory(LOAD_OVERRIDES)
    gen0 = newest_gen(workers(gw))
    biz = EchoBusiness(gw)
    query = gw.task()  # a task link of the first generation: must answer for both generations
    load = LoadClients(ws, gw, interval=0.05)
    try:
        clients = load.connect(300, "rl")
        assign_uids(clients, biz)
        ws0 = wait_counted(gw, 300)
        assert all(w["clients"] > 0 for w in ws0), f"clients not spread: {fmt_workers(ws0)}"
        load.start_sending()
        load.wait_progress(clients, 10, 15)
        gen = gen0
        reload_times = []
        for n in (3, 2, 2):
            cp, dt = do_reload(gw, {"Workers": n})
            assert cp.returncode == 0, f"reload to Workers={n}: rc={cp.returncode} {cp.stderr}"
            reload_times.append(dt)
            check_reloaded(gw, gen, n)
            gen += 1
            # new clients land on the new generation and join the load
            extra = load.connect(20, f"rl{gen}")
            assign_uids(extra, biz)
            ws_ = h.wait_for(lambda: (lambda w: w if sum(x["clients"] for x in of_gen(w, gen)) == 20
                                      else None)(workers(gw)), 5,
                             message=lambda: f"20 clients on generation {gen}: {fmt_workers(workers(gw))}")
            assert sum(x["clients"] for x in ws_) == len(load.clients), fmt_workers(ws_)
            load.start_sending(extra)
            # every client, old generation and new, keeps being served
            load.wait_progress(load.clients, 40, 20)
            total = len(load.clients)
            assert query_count(query) == total, "UniqIdCount on the first generation's task link"
            fresh = gw.task()
            assert query_count(fresh) == total, "UniqIdCount on a new task link"
            assert sorted(query_list(fresh)) == sorted(c.uniq_id for c in load.clients)
            fresh.close()
        ws_ = workers(gw)
        assert [w["gen"] for w in ws_ if w["state"] == "running"] == [gen] * 2, fmt_workers(ws_)
        old_pids = [w["pid"] for w in ws_ if w["gen"] < gen]
        assert old_pids, f"old generations exited while their clients were open: {fmt_workers(ws_)}"
        load.stop_sending()
        load.wait_echoes(timeout=15, biz=biz)
        closed = [f"{c.tag}: {c.close_code} {c.close_reason!r}" for c in load.clients if c.closed_at]
        assert not closed, f"{len(closed)} clients were disconnected: {closed[:10]}"
        check_exact(load.clients, biz)
        sent = sum(c.sent for c in load.clients)
        # all clients leave: every old worker exits, only the newest generation is left
        load.close()
        load.wait_closed(load.clients)
        t_close = time.monotonic()
        wait_only_generation(gw, gen, 2, 15)
        t_only = time.monotonic() - t_close
        for pid in old_pids:
            h.wait_for(lambda: not h.pid_alive(pid), 5, message=f"old worker {pid} to exit")
        # the business saw one ConnOpen and one ConnClose per client, nothing else
        uids = [c.uniq_id for c in load.clients]
        biz.wait_closes(uids, 15)
        with biz.lock:
            dup_open = {u: n for u, n in biz.open_count.items() if n != 1}
            dup_close = {u: n for u, n in biz.close_count.items() if n != 1}
            extra_close = set(biz.close_count) - set(uids)
        assert not dup_open, f"ConnOpen more than once: {list(dup_open.items())[:5]}"
        assert not dup_close, f"ConnClose more than once: {list(dup_close.items())[:5]}"
        assert not extra_close
        assert not biz.errs(), biz.errs()[:10]
        assert biz.echo_failures == 0
        assert query_count(gw.task()) == 0
        print(f"{len(load.clients)} clients, {sent} messages each way, reloads took "
              f"{', '.join(f'{t:.2f}s' for t in reload_times)}; old generations gone {t_only:.2f}s "
              f"after the last client closed; business reconnected {biz.reconnects}x; "
              f"total {time.monotonic() - t_start:.1f}s")
    finally:
        biz.stop()
        load.cancel()


def test_reload_refused_leaves_instance_unchanged(gateway_factory, ws):
    gw = gateway_factory(LOAD_OVERRIDES)
    biz = EchoBusiness(gw)
    load = LoadClients(ws, gw, interval=0.1)
    try:
        clients = load.connect(4, "bad")
        assign_uids(clients, biz)
        load.start_sending()
        before = workers(gw)
        master = gw.status()["master"]
        good = gw.config

        def unchanged(what):
            gw.config = good
            gw.write_config()  # `netsvr status` reads the file too
            after = workers(gw)
            assert [(w["serial"], w["pid"], w["gen"], w["state"]) for w in after] == \
                   [(w["serial"], w["pid"], w["gen"], w["state"]) for w in before], \
                f"{what}: status changed\nbefore: {fmt_workers(before)}\nafter:  {fmt_workers(after)}"
            assert gw.running()

        # 1. an invalid value
        cp, _ = do_reload(gw, {"Customer": {"SendMessageType": 3}})
        assert cp.returncode == 1, f"rc={cp.returncode} stderr={cp.stderr!r}"
        assert "Customer.SendMessageType" in cp.stderr, cp.stderr
        unchanged("invalid SendMessageType")
        # 2. a TOML syntax error
        gw.config_path.write_text(h.render_toml(good) + "\nWorkers = = 3\n")
        cp = gw.cli("reload")
        assert cp.returncode == 1 and cp.stderr.strip(), f"rc={cp.returncode} stderr={cp.stderr!r}"
        unchanged("TOML syntax error")
        # 3. changed listen address (valid config otherwise): the master refuses it
        new_port = h.free_ports(1)[0]
        cp, _ = do_reload(gw, {"Customer": {"ListenAddress": f"127.0.0.1:{new_port}"}, "Workers": 3})
        assert cp.returncode == 1, f"rc={cp.returncode} stderr={cp.stderr!r}"
        assert "listen" in cp.stderr.lower(), cp.stderr
        unchanged("changed Customer.ListenAddress")
        assert not h.port_accepts(new_port), "the new address was bound"
        assert h.port_accepts(gw.customer_port)
        # 4. SIGHUP straight to the master with an invalid file: refused with a log line
        gw.config = h.merge_config(good, {"Customer": {"SendMessageType": 7}})
        gw.write_config()
        log_size = gw.log_path.stat().st_size
        os.kill(master, signal.SIGHUP)
        h.wait_for(lambda: "Customer.SendMessageType" in
                   gw.log_path.read_bytes()[log_size:].decode(errors="replace"),
                   5, message="a log line naming Customer.SendMessageType after SIGHUP")
        unchanged("SIGHUP with an invalid config")
        # the clients were served all along
        load.wait_progress(clients, 3)
        # a good config still reloads, into the next generation only
        cp, _ = do_reload(gw, {"Workers": 3})
        assert cp.returncode == 0, cp.stderr
        check_reloaded(gw, newest_gen(before), 3)
        load.wait_progress(clients, 3)
        load.stop_sending()
        load.wait_echoes(biz=biz)
        assert not any(c.closed_at for c in clients)
        check_exact(clients, biz)
        assert not biz.errs(), biz.errs()
    finally:
        biz.stop()
        load.cancel()


def test_reload_changes_limits_and_workers(gateway_factory, ws):
    gw = gateway_factory({"Limit": {"OnOpen": 1000, "OnMessage": 2000}})
    task = gw.task()
    r = task.request(LIMIT_CMD, pb.LimitReq(), pb.LimitResp)
    assert (r.onOpen, r.onMessage) == (1000, 2000)
    gen = newest_gen(workers(gw))
    clients = h.open_spread(gw, ws, min_total=2)  # keep the first generation busy

    # Workers 2 -> 3 with new rates
    cp, _ = do_reload(gw, {"Workers": 3, "Limit": {"OnOpen": 1500, "OnMessage": 3000}})
    assert cp.returncode == 0, cp.stderr
    ws_ = check_reloaded(gw, gen, 3)
    gen += 1
    assert {w["state"] for w in ws_ if w["gen"] < gen} == {"draining"}, fmt_workers(ws_)
    r = gw.task().request(LIMIT_CMD, pb.LimitReq(), pb.LimitResp)
    assert (r.onOpen, r.onMessage) == (1500, 3000), "Limit after the reload"
    r = task.request(LIMIT_CMD, pb.LimitReq(), pb.LimitResp)
    assert (r.onOpen, r.onMessage) == (1500, 3000), "Limit on the old generation's task link"
    # the old generation exits when its last client leaves
    for c in clients:
        c.close()
    wait_only_generation(gw, gen, 3, 10)
    biz = gw.business(events=1)
    new3 = h.open_spread(gw, ws, biz, min_total=3)
    assert {c.slot for c in new3} == {0, 1, 2}

    # Workers 3 -> 1 with a tiny OnOpen rate, enforced at once
    cp, _ = do_reload(gw, {"Workers": 1, "Limit": {"OnOpen": 3, "OnMessage": 700}})
    assert cp.returncode == 0, cp.stderr
    check_reloaded(gw, gen, 1)
    gen += 1
    r = gw.task().request(LIMIT_CMD, pb.LimitReq(), pb.LimitResp)
    assert (r.onOpen, r.onMessage) == (3, 700)
    t0 = time.monotonic()
    burst = ws.connect_many([gw.ws_url(query=f"burst={i}") for i in range(12)])
    elapsed = time.monotonic() - t0
    codes = []
    for c in burst:
        try:
            code, _ = c.wait_closed(1.0)
            codes.append(code)
        except AssertionError:
            codes.append(None)  # still open: accepted
    accepted = codes.count(None)
    assert codes.count(1013) == len(burst) - accepted, f"close codes {codes}"
    assert 1 <= accepted <= 3 + math.ceil(3 * elapsed) + 1, \
        f"OnOpen=3 after reload: {accepted} of 12 opens accepted within {elapsed:.2f}s ({codes})"
    for c in new3:
        c.close()
    ws_ = wait_only_generation(gw, gen, 1, 10)
    assert ws_[0]["clients"] == accepted


def test_reload_drain_time_closes_old_clients_with_1012(gateway_factory, ws):
    gw = gateway_factory(dict(LOAD_OVERRIDES, ReloadDrainTime="1s"))
    biz = EchoBusiness(gw)
    load = LoadClients(ws, gw, interval=0.1)
    try:
        old = load.connect(3, "drain")
        assign_uids(old, biz)
        load.start_sending(old)
        load.wait_progress(old, 2)
        gen = newest_gen(workers(gw))
        cp, _ = do_reload(gw, {"Workers": 2})
        t_reload = time.monotonic()
        assert cp.returncode == 0, cp.stderr
        check_reloaded(gw, gen, 2)
        # during the drain time the old clients are still served
        load.wait_progress(old, 2, timeout=0.8)
        new = load.connect(2, "fresh")
        assign_uids(new, biz)
        load.start_sending(new)
        load.wait_closed(old, timeout=4)
        for c in old:
            after = c.closed_at - t_reload
            assert (c.close_code, c.close_reason) == (1012, "service restart"), \
                f"{c.tag} closed with {c.close_code} {c.close_reason!r} {after:.2f}s after the reload"
            assert 0.8 <= after <= 1.6, f"{c.tag} closed {after:.2f}s after the reload (ReloadDrainTime 1s)"
            assert c.got == list(range(len(c.got))) and not c.bad
        biz.wait_closes([c.uniq_id for c in old], 5)
        wait_only_generation(gw, gen + 1, 2, 5)
        # the new clients are untouched and served
        load.wait_progress(new, 3)
        load.stop_sending(new)
        load.wait_echoes(new, biz=biz)
        assert not any(c.closed_at for c in new)
        check_exact(new, biz)
        assert not biz.errs(), biz.errs()
    finally:
        biz.stop()
        load.cancel()
