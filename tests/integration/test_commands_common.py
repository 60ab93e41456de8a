"""Shared helpers for the task-command tests (test_commands_*.py). No tests in this module.

Every environment built here has:
  * a gateway with several workers (default 3),
  * one business link on the worker port registered for events 7 (learns uniqIds by rawQuery),
  * clients on every worker (open_spread), each with .uniq_id and .slot,
  * one task link whose worker slot is known (env.task_slot), so that tests can pick clients
    on another worker than the one that reads the command (cross-worker routing).

Delivery checks use markers: after the commands under test, a SingleCast marker is sent on the
same task link to every open client; each client must have received exactly the expected frames
before its marker (a client that must receive nothing has an empty list). Task links are
processed in arrival order (DECISIONS 5), so the marker proves that everything before it was
delivered or dropped.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Iterable, Optional

import pytest

import netsvr_harness as h
from netsvr_harness import Cmd as _HCmd, pb

# cmd values by name from the generated cmd_pb2 (the harness' Cmd class lists only a few)
cmd_pb2 = h.cmd_pb2


class C:
    def __getattr__(self, name):
        return getattr(cmd_pb2, name)


CMD = C()

_marker_seq = itertools.count(1)


def unknown_uid(env: "Env", like: Optional[str] = None) -> str:
    """A well-formed uniqId (gateway prefix, 28 hex chars) that no client has."""
    base = like or env.clients[0].uniq_id
    cand = base[:22] + "fffff0"
    known = {c.uniq_id for c in env.clients}
    n = 0
    while cand in known:
        n += 1
        cand = base[:22] + "fffff%x" % n
    return cand


class Env:
    def __init__(self, gw: h.Gateway, ws: h.WsLoop, biz: h.BusinessLink, clients: list,
                 task: h.BusinessLink, task_slot: int, biz_slot: Optional[int]):
        self.gw = gw
        self.ws = ws
        self.biz = biz
        self.clients = clients
        self.task = task
        self.task_slot = task_slot
        self.biz_slot = biz_slot
        self.closed: set = set()

    # ---- picking clients --------------------------------------------------------------------

    def by_slot(self) -> dict[int, list]:
        out: dict[int, list] = {}
        for c in self.clients:
            out.setdefault(c.slot, []).append(c)
        return out

    def remote(self) -> list:
        """Clients on a worker other than the one that holds the task link."""
        return [c for c in self.clients if c.slot != self.task_slot]

    def local(self) -> list:
        return [c for c in self.clients if c.slot == self.task_slot]

    def distinct_slots(self, n: int, prefer_remote: bool = True) -> list:
        """n clients on n different workers (remote ones first)."""
        seen = set()
        out = []
        order = self.remote() + self.local() if prefer_remote else list(self.clients)
        for c in order:
            if c.slot not in seen:
                seen.add(c.slot)
                out.append(c)
            if len(out) == n:
                return out
        raise AssertionError(f"need {n} clients on distinct workers, slots {sorted(seen)}")

    def open_more(self, n: int) -> list:
        out = [h.open_client(self.gw, self.ws, h.next_tag("more"), self.biz) for _ in range(n)]
        self.clients.extend(out)
        return out

    @property
    def alive(self) -> list:
        return [c for c in self.clients if c not in self.closed]

    # ---- task link --------------------------------------------------------------------------

    def send(self, cmd: int, msg) -> None:
        self.task.send(cmd, msg)

    def req(self, cmd: int, msg, resp_cls, timeout: float = h.DEFAULT_TIMEOUT):
        return self.task.request(cmd, msg, resp_cls, timeout)

    def conn_info(self, uids: Iterable[str], session=True, customer=True, topic=True) -> dict:
        r = self.req(CMD.ConnInfo, pb.ConnInfoReq(uniqIds=list(uids), reqSession=session,
                                                   reqCustomerId=customer, reqTopic=topic),
                     pb.ConnInfoResp)
        return {k: (v.session, v.customerId, sorted(v.topics)) for k, v in r.items.items()}

    def update(self, c, session="", customer="", topics=(), data=b"") -> None:
        self.send(CMD.ConnInfoUpdate, pb.ConnInfoUpdate(uniqId=c.uniq_id, newSession=session,
                                                        newCustomerId=customer,
                                                        newTopics=list(topics), data=data))

    def subscribe(self, c, topics, data=b"") -> None:
        self.send(CMD.TopicSubscribe, pb.TopicSubscribe(uniqId=c.uniq_id, topics=list(topics),
                                                        data=data))

    # ---- delivery checks --------------------------------------------------------------------

    def check(self, expected: dict, timeout: float = h.DEFAULT_TIMEOUT, quiet: float = 0.0,
              clients: Optional[list] = None) -> None:
        """Send a SingleCast marker to every open client (or `clients`); assert that each one
        received exactly expected.get(client, []) (as str, text frames) before its marker.
        With quiet > 0, also assert that nothing arrives after the markers for that long."""
        targets = list(self.alive if clients is None else clients)
        for c in expected:
            assert c in targets, f"client {c.url} is expected to receive but is not checked"
        markers = {}
        for c in targets:
            m = f"@marker-{next(_marker_seq)}"
            markers[c] = m
            self.task.send(CMD.SingleCast, pb.SingleCast(uniqId=c.uniq_id, data=m.encode()))
        got = self._collect(targets, markers, timeout)
        problems = []
        for c in targets:
            exp = [x.decode() if isinstance(x, bytes) else x for x in expected.get(c, [])]
            if got[c] != exp:
                problems.append(f"client {c.query} (slot {c.slot}, {c.uniq_id}): "
                                f"expected {exp!r}, got {got[c]!r}")
        assert not problems, ("frames before the marker differ "
                              f"(task link on slot {self.task_slot}):\n  " + "\n  ".join(problems))
        if quiet > 0:
            self.quiet(targets, quiet)

    def _collect(self, targets: list, markers: dict, timeout: float) -> dict:
        deadline = time.monotonic() + timeout

        async def one(c):
            got = []
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return ("timeout", got)
                try:
                    msg = await asyncio.wait_for(c.ws.recv(), remaining)
                except asyncio.TimeoutError:
                    return ("timeout", got)
                except Exception as e:  # noqa: BLE001 - closed connection etc.
                    return (f"error {e!r}", got)
                if msg == markers[c]:
                    return ("ok", got)
                got.append(msg)

        async def go():
            return await asyncio.gather(*(one(c) for c in targets))

        res = self.ws.run(go(), timeout + 5)
        out = {}
        bad = []
        for c, (state, got) in zip(targets, res):
            if state != "ok":
                bad.append(f"client {c.query} (slot {c.slot}, {c.uniq_id}): marker not received "
                           f"({state}); frames so far {got!r}")
            out[c] = got
        assert not bad, "markers missing:\n  " + "\n  ".join(bad)
        return out

    def quiet(self, targets: list, duration: float) -> None:
        """Nothing arrives at any of targets for `duration` seconds (checked concurrently)."""
        async def one(c):
            try:
                return await asyncio.wait_for(c.ws.recv(), duration)
            except asyncio.TimeoutError:
                return None
            except Exception as e:  # noqa: BLE001
                return f"<closed: {e!r}>"

        async def go():
            return await asyncio.gather(*(one(c) for c in targets))

        res = self.ws.run(go(), duration + 5)
        extra = [(c.query, r) for c, r in zip(targets, res) if r is not None]
        assert not extra, f"unexpected frames after the markers: {extra}"

    def wait_conn_close(self, clients: list, timeout: float = h.DEFAULT_TIMEOUT) -> dict:
        """Wait for the business' ConnClose of each client; returns uniqId -> ConnClose."""
        out = {}
        for c in clients:
            ev = self.biz.recv_matching(_HCmd.ConnClose, pb.ConnClose,
                                        lambda m, u=c.uniq_id: m.uniqId == u, timeout)
            out[c.uniq_id] = ev
            self.closed.add(c)
        return out


def slot_counts(gw: h.Gateway, key: str) -> dict[int, int]:
    return {w["slot"]: w.get(key, 0) for w in gw.status()["workers"]}


def connect_task(gw: h.Gateway, timeout: float = h.DEFAULT_TIMEOUT) -> tuple[h.BusinessLink, int]:
    """A new task link and the worker slot that accepted it (from the `tasks=` counts)."""
    before = slot_counts(gw, "tasks")
    link = gw.task(timeout)
    link.request(CMD.UniqIdCount, b"", pb.UniqIdCountResp)  # accepted and served

    def grown():
        after = slot_counts(gw, "tasks")
        g = [s for s in after if after[s] > before.get(s, 0)]
        return g if len(g) == 1 else None

    g = h.wait_for(grown, timeout, message="`netsvr status` to count the new task link")
    return link, g[0]


def connect_task_on(gw: h.Gateway, want_other_than: int, tries: int = 40):
    """A task link on another worker than `want_other_than` (opens links until one lands there)."""
    for _ in range(tries):
        link, slot = connect_task(gw)
        if slot != want_other_than:
            return link, slot
        link.close()
    raise AssertionError(f"no task link landed off slot {want_other_than} in {tries} tries")


def make_env(gateway_factory, ws, workers: int = 3, min_total: int = 4,
             overrides: Optional[dict] = None, per_slot: int = 1) -> Env:
    ov = {"Workers": workers}
    for k, v in (overrides or {}).items():
        ov[k] = v
    gw = gateway_factory(ov)
    before_links = slot_counts(gw, "links")
    biz = gw.business(events=7)
    after_links = h.wait_for(lambda: (lambda a: a if sum(a.values()) > sum(before_links.values())
                                      else None)(slot_counts(gw, "links")),
                             message="`netsvr status` to count the business link")
    biz_slots = [s for s in after_links if after_links[s] > before_links.get(s, 0)]
    clients = h.open_spread(gw, ws, biz, min_total=min_total)
    env = Env(gw, ws, biz, clients, None, -1, biz_slots[0] if len(biz_slots) == 1 else None)
    # at least per_slot clients on every worker
    while True:
        counts = {s: len(v) for s, v in env.by_slot().items()}
        short = [s for s in range(workers) if counts.get(s, 0) < per_slot]
        if not short:
            break
        assert len(env.clients) < 80, f"could not get {per_slot} clients per worker: {counts}"
        before = gw.worker_clients()
        c = h.open_client(gw, ws, h.next_tag(), biz)
        after = h.wait_for(lambda: (lambda wc: wc if sum(wc.values()) == sum(before.values()) + 1
                                    else None)(gw.worker_clients()),
                           message="status to count the new client")
        c.slot = [s for s in after if after[s] > before.get(s, 0)][0]
        env.clients.append(c)
    env.task, env.task_slot = connect_task(gw)
    assert env.remote(), "no client on a worker other than the task link's"
    return env


@pytest.fixture
def env(gateway_factory, ws) -> Env:
    """Workers=3, >= 4 clients, clients on every worker, one task link on a known worker."""
    return make_env(gateway_factory, ws)


@pytest.fixture
def env2(gateway_factory, ws) -> Env:
    """Workers=2, >= 2 clients per worker."""
    return make_env(gateway_factory, ws, workers=2, min_total=4, per_slot=2)
