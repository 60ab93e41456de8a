"""A worker dies (SIGKILL) while a task link on another worker keeps sending commands:
nothing hangs, survivors keep receiving, and after the respawn the dead worker's clients are gone
from every answer (and the business hears their ConnClose, DECISIONS 3)."""

from __future__ import annotations

import os
import signal
import threading
import time

import netsvr_harness as h
from netsvr_harness import pb
from test_commands_common import CMD, make_env

QUERY_TIMEOUT = 2.0


def test_kill_worker_while_querying(gateway_factory, ws):
    env = make_env(gateway_factory, ws, workers=3, min_total=5, per_slot=2)
    candidates = [s for s in range(3) if s not in (env.task_slot, env.biz_slot)]
    assert candidates, f"task link on {env.task_slot}, business link on {env.biz_slot}"
    victim_slot = candidates[0]
    dead = [c for c in env.clients if c.slot == victim_slot]
    alive = [c for c in env.clients if c.slot != victim_slot]
    assert dead and alive
    # state on both sides: topics and customers only the dead clients hold, and shared ones
    for i, c in enumerate(dead):
        env.update(c, session=f"dead-s{i}", customer="dead-cust", topics=["dead-topic", "shared"])
    for i, c in enumerate(alive):
        env.update(c, customer=f"live-{i}", topics=["shared"])
    all_ids = [c.uniq_id for c in env.clients]
    live_ids = [c.uniq_id for c in alive]
    assert sorted(env.req(CMD.UniqIdList, b"", pb.UniqIdListResp).uniqIds) == sorted(all_ids)

    victim = {w["slot"]: w for w in env.gw.status()["workers"]}[victim_slot]
    task = env.task
    sent: list[str] = []
    rounds: list[dict] = []          # one entry per query round, appended by the querier thread
    errors: list[BaseException] = []
    stop = threading.Event()

    def querier():
        i = 0
        try:
            while not stop.is_set():
                i += 1
                # fire-and-forget commands, also addressed to dead clients: must not block the link
                data = f"loop-{i}"
                task.send(CMD.Broadcast, pb.Broadcast(data=data.encode()))
                sent.append(data)
                task.send(CMD.SingleCast, pb.SingleCast(uniqId=dead[0].uniq_id, data=b"to the dead"))
                task.send(CMD.TopicPublish, pb.TopicPublish(topics=["dead-topic"], data=b"dead topic"))
                t0 = time.monotonic()
                r = {"t": t0}
                r["cnt"] = task.request(CMD.UniqIdCount, b"", pb.UniqIdCountResp, QUERY_TIMEOUT).count
                r["lst"] = sorted(task.request(CMD.UniqIdList, b"", pb.UniqIdListResp,
                                               QUERY_TIMEOUT).uniqIds)
                r["topics"] = sorted(task.request(CMD.TopicList, b"", pb.TopicListResp,
                                                  QUERY_TIMEOUT).topics)
                r["info"] = sorted(task.request(
                    CMD.ConnInfo, pb.ConnInfoReq(uniqIds=all_ids, reqCustomerId=True),
                    pb.ConnInfoResp, QUERY_TIMEOUT).items)
                r["online"] = list(task.request(CMD.CheckOnline, pb.CheckOnlineReq(uniqIds=all_ids),
                                                pb.CheckOnlineResp, QUERY_TIMEOUT).uniqIds)
                r["cids"] = sorted(task.request(CMD.CustomerIdList, b"", pb.CustomerIdListResp,
                                                QUERY_TIMEOUT).customerIds)
                r["tcount"] = dict(task.request(
                    CMD.TopicUniqIdCount, pb.TopicUniqIdCountReq(countAll=True),
                    pb.TopicUniqIdCountResp, QUERY_TIMEOUT).items)
                r["took"] = time.monotonic() - t0
                rounds.append(r)
        except BaseException as e:  # noqa: BLE001 - reported by the main thread
            errors.append(e)

    def clean(r):
        return (r["lst"] == sorted(live_ids) and r["cnt"] == len(live_ids)
                and r["online"] == live_ids and r["info"] == sorted(live_ids)
                and "dead-topic" not in r["topics"] and "dead-cust" not in r["cids"]
                and r["tcount"].get("shared") == len(live_ids) and "dead-topic" not in r["tcount"])

    th = threading.Thread(target=querier, name="querier", daemon=True)
    th.start()
    try:
        h.wait_for(lambda: len(rounds) >= 3 or errors, 5, message="three query rounds before the kill")
        assert not errors, f"query loop failed before the kill: {errors[0]!r}"
        os.kill(victim["pid"], signal.SIGKILL)
        t_kill = time.monotonic()

        def respawned():
            w = {x["slot"]: x for x in env.gw.status()["workers"]}.get(victim_slot)
            return w if (w and w["pid"] != victim["pid"] and w.get("state") == "running") else None

        h.wait_for(lambda: errors or respawned(), 10,
                   message=f"slot {victim_slot} to be respawned (state running, new pid)")
        t_resp = time.monotonic()
        assert not errors, f"query loop failed after the kill: {errors[0]!r}"
        # dead clients gone from every answer of a round that started after the respawn
        h.wait_for(lambda: errors or any(r["t"] >= t_resp and clean(r) for r in list(rounds)), 3,
                   message=lambda: f"a clean answer after the respawn; last round: "
                                   f"{ {k: v for k, v in rounds[-1].items() if k != 't'} }")
        assert not errors, f"query loop failed: {errors[0]!r}"
        # keep querying a little longer: it stays clean
        n = len(rounds)
        h.wait_for(lambda: errors or len(rounds) >= n + 3, 5, message="three more rounds")
    finally:
        stop.set()
        th.join(QUERY_TIMEOUT * 8 + 5)
    assert not th.is_alive(), "query loop hangs"
    assert not errors, f"query loop failed: {errors[0]!r}"
    after_kill = [r for r in rounds if r["t"] >= t_kill]
    during = [r for r in after_kill if r["t"] < t_resp]
    late = [r for r in rounds if r["t"] >= t_resp]
    print(f"killed slot {victim_slot} ({len(dead)} clients, {len(alive)} survive); rounds: "
          f"{len(rounds)} total, {len(during)} between kill and respawn ({t_resp - t_kill:.2f}s); "
          f"slowest round {max(r['took'] for r in rounds):.3f}s")
    for r in rounds:
        # survivors are never missing from any answer
        assert set(live_ids) <= set(r["lst"]), "a live client is missing from UniqIdList"
        assert set(live_ids) <= set(r["info"]), "a live client is missing from ConnInfo"
        assert [u for u in r["online"] if u in live_ids] == live_ids
        assert "shared" in r["topics"]
    assert clean(late[-1]), f"dead clients reported again after the respawn: {late[-1]}"

    # survivors received every broadcast of the loop, in order, and nothing addressed to the dead
    for c in alive:
        env.closed.discard(c)
    env.closed.update(dead)
    env.check({c: sent for c in alive}, clients=alive)
    for c in dead:
        assert not c.is_open or c.wait_closed(3.0)
    # DECISIONS 3: one ConnClose per dead client, with its state
    evs = env.wait_conn_close(dead, timeout=5.0)
    for k, c in enumerate(dead):
        ev = evs[c.uniq_id]
        assert (ev.session, ev.customerId, sorted(ev.topics)) == (
            f"dead-s{k}", "dead-cust", ["dead-topic", "shared"])
    # the respawned worker serves new clients, reachable from the same task link
    st = env.gw.worker_clients()
    assert st[victim_slot] == 0, st
    newc = h.open_spread(env.gw, ws, env.biz, min_total=1)
    assert victim_slot in {c.slot for c in newc}
    env.clients.extend(newc)
    for c in newc:
        env.update(c, topics=["after-respawn"])
    env.send(CMD.TopicPublish, pb.TopicPublish(topics=["after-respawn"], data=b"welcome back"))
    env.check({c: ["welcome back"] for c in newc})
    # no duplicate ConnClose for the dead ones
    env.biz.expect_silent(0.3)
