"""Metrics (PROTOCOL §10) and Limit (§9.3) commands: gateway-wide, whichever worker answers."""

from __future__ import annotations

import pytest

import netsvr_harness as h
from netsvr_harness import pb
from test_commands_common import CMD, connect_task_on, env, make_env  # noqa: F401 - fixtures


def _metrics(link) -> dict:
    r = link.request(CMD.Metrics, b"", pb.MetricsResp)
    return dict(r.items)


def test_metrics_items_and_counts(env):
    n = len(env.clients)
    m = _metrics(env.task)
    assert sorted(m) == list(range(1, 14))
    for k, v in m.items():
        assert v.item == k, f"item {k} reports item={v.item}"
        assert v.count >= 0
        assert v.meanRate >= 0 and v.rate1 >= 0 and v.rate5 >= 0 and v.rate15 >= 0
    # opened clients on every worker are counted, whichever worker answers
    h.wait_for(lambda: _metrics(env.task)[1].count >= n, 3,
               message=lambda: f"metric 1 >= {n} (got {_metrics(env.task)[1].count})")
    h.wait_for(lambda: _metrics(env.task)[4].count >= n, 3,
               message=lambda: f"metric 4 (ConnOpen packets) >= {n}")
    m = _metrics(env.task)
    assert m[5].count >= 8 * m[4].count, "metric 5 counts at least 8 bytes per packet"
    assert m[1].meanRate > 0
    for k in (8, 9, 10, 11, 12, 13):
        assert m[k].count == 0, f"item {k} = {m[k].count} without any refusal or failure"
    before6, before7 = m[6].count, m[7].count

    env.send(CMD.Broadcast, pb.Broadcast(data=b"metrics"))
    env.check({c: ["metrics"] for c in env.clients})   # + one marker frame per client
    grown = 2 * n

    def grew():
        mm = _metrics(env.task)
        return mm if mm[6].count >= before6 + grown else None

    m2 = h.wait_for(grew, 3, message=lambda: (f"metric 6 to grow by >= {grown} from {before6} "
                                                f"(now {_metrics(env.task)[6].count})"))
    # each frame is at least 2 header bytes + payload
    assert m2[7].count - before7 >= n * (2 + len(b"metrics"))

    # a task link on another worker sees the same totals
    other, slot = connect_task_on(env.gw, env.task_slot)
    mo = _metrics(other)
    assert mo[1].count >= n and mo[6].count >= before6 + grown, f"worker {slot}: {mo[1]} {mo[6]}"

    # a client's heartbeat string counts in item 3 (and is not forwarded)
    before3 = _metrics(env.task)[3].count
    env.remote()[0].send(h.HEARTBEAT)
    h.wait_for(lambda: _metrics(env.task)[3].count >= before3 + 1, 3,
               message="metric 3 to count a heartbeat sent to another worker")

    # closes count in item 2
    gone = env.remote()[0]
    gone.close()
    env.wait_conn_close([gone])
    h.wait_for(lambda: _metrics(env.task)[2].count >= 1, 3, message="metric 2 to count the close")


def test_metrics_only_enabled_items(gateway_factory, ws):
    env = make_env(gateway_factory, ws, workers=2, min_total=2,
                   overrides={"Metrics": {"Item": [1, 6, 99]}})
    m = _metrics(env.task)
    assert sorted(m) == [1, 6]
    assert m[1].item == 1 and m[6].item == 6
    h.wait_for(lambda: _metrics(env.task)[1].count >= len(env.clients), 3, message="metric 1")


def test_metrics_none_enabled(gateway_factory, ws):
    env = make_env(gateway_factory, ws, workers=2, min_total=2, overrides={"Metrics": {"Item": []}})
    env.send(CMD.Broadcast, pb.Broadcast(data=b"x"))
    env.check({c: ["x"] for c in env.clients})
    env.task.send(CMD.Metrics, b"")
    cmd, body = env.task.recv()
    assert (cmd, body) == (CMD.Metrics, b""), "no item enabled: an empty map"


@pytest.mark.parametrize("on_open,on_message", [(500, 0), (0, 700)])
def test_limit(gateway_factory, ws, on_open, on_message):
    env = make_env(gateway_factory, ws, workers=3, min_total=3,
                   overrides={"Limit": {"OnOpen": on_open, "OnMessage": on_message}})

    def limit(link, o=0, m=0):
        r = link.request(CMD.Limit, pb.LimitReq(onOpen=o, onMessage=m), pb.LimitResp)
        return r.onOpen, r.onMessage

    assert limit(env.task) == (on_open, on_message)
    # a disabled limiter cannot be enabled and keeps reporting 0
    exp = (800 if on_open else 0, 900 if on_message else 0)
    assert limit(env.task, 800, 900) == exp
    # values <= 0 are ignored
    assert limit(env.task, 0, -1) == exp
    assert limit(env.task, -5, 0) == exp
    # the rate is gateway-wide: a link on another worker reads it, and its change is seen here
    other, slot = connect_task_on(env.gw, env.task_slot)
    assert limit(other) == exp, f"task link on worker {slot}"
    exp2 = (1200 if on_open else 0, 1300 if on_message else 0)
    assert limit(other, 1200, 1300) == exp2
    assert limit(env.task) == exp2
    # the limiters still let normal traffic through
    c = h.open_client(env.gw, ws, h.next_tag("after-limit"), env.biz)
    c.send("hello")
    tr = env.biz.recv_matching(h.Cmd.Transfer, pb.Transfer, lambda t: t.uniqId == c.uniq_id)
    assert tr.data == b"hello"
