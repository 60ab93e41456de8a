"""ForceOffline, ForceOfflineByCustomerId, ForceOfflineGuest (PROTOCOL §4.4, §6.3, §6.8)."""

from __future__ import annotations

import time

from netsvr_harness import pb
from test_commands_common import CMD, env, unknown_uid  # noqa: F401 - fixtures


def _expect_kicked(c, data, reason, timeout=5.0):
    """The client receives exactly `data` (list) and then a Close 1008 `reason`."""
    for d in data:
        assert c.recv(timeout) == d, f"client {c.query} (slot {c.slot})"
    code, why = c.wait_closed(timeout)
    assert (code, why) == (1008, reason), f"client {c.query} (slot {c.slot}) closed with {code} {why!r}"


def _online(env, uids):
    return list(env.req(CMD.CheckOnline, pb.CheckOnlineReq(uniqIds=list(uids)),
                        pb.CheckOnlineResp).uniqIds)


def test_force_offline(env):
    a, b = env.distinct_slots(2)
    c3 = next((c for c in env.clients if c not in (a, b)), None)
    keep = [c for c in env.clients if c not in (a, b, c3)]
    env.send(CMD.ForceOffline, pb.ForceOffline(uniqIds=[], data=b"nobody"))            # ignored
    env.send(CMD.ForceOffline, pb.ForceOffline(uniqIds=[a.uniq_id, unknown_uid(env), "", b.uniq_id],
                                               data=b"kicked"))
    # closing has started: nothing is delivered to them any more
    env.send(CMD.SingleCast, pb.SingleCast(uniqId=a.uniq_id, data=b"too late"))
    env.send(CMD.Broadcast, pb.Broadcast(data=b"after kick"))
    _expect_kicked(a, ["kicked"], "forceOffline")
    _expect_kicked(b, ["kicked"], "forceOffline")
    exp = {c: ["after kick"] for c in keep}
    if c3 is not None:
        # without data: only the Close frame
        env.send(CMD.ForceOffline, pb.ForceOffline(uniqIds=[c3.uniq_id]))
        _expect_kicked(c3, [], "forceOffline")
        kicked = [a, b, c3]
    else:
        kicked = [a, b]
    env.wait_conn_close(kicked)
    assert _online(env, [c.uniq_id for c in env.clients]) == [c.uniq_id for c in keep]
    env.check(exp, clients=keep)


def test_force_offline_by_customer_id(env):
    a, b, d = env.distinct_slots(3)
    rest = [c for c in env.clients if c not in (a, b, d)]
    for c, cid in ((a, "fo-1"), (b, "fo-1"), (d, "fo-2")):
        env.update(c, customer=cid)
    env.send(CMD.ForceOfflineByCustomerId, pb.ForceOfflineByCustomerId(customerIds=["nope", ""],
                                                                       data=b"nobody"))
    env.send(CMD.ForceOfflineByCustomerId, pb.ForceOfflineByCustomerId(customerIds=["fo-1", "fo-1"],
                                                                       data=b"bye-1"))
    env.send(CMD.SingleCastByCustomerId, pb.SingleCastByCustomerId(customerId="fo-1", data=b"late"))
    _expect_kicked(a, ["bye-1"], "forceOfflineByCustomerId")
    _expect_kicked(b, ["bye-1"], "forceOfflineByCustomerId")
    env.wait_conn_close([a, b])
    assert sorted(env.req(CMD.CustomerIdList, b"", pb.CustomerIdListResp).customerIds) == ["fo-2"]
    # without data
    env.send(CMD.ForceOfflineByCustomerId, pb.ForceOfflineByCustomerId(customerIds=["fo-2"]))
    _expect_kicked(d, [], "forceOfflineByCustomerId")
    env.wait_conn_close([d])
    assert list(env.req(CMD.CustomerIdList, b"", pb.CustomerIdListResp).customerIds) == []
    env.check({c: [] for c in rest}, clients=rest)


def test_force_offline_guest_now(env):
    guests = env.distinct_slots(2)
    env.open_more(2)
    rest = [c for c in env.clients if c not in guests]
    with_session, with_customer = rest[0], rest[1]
    others = rest[2:]
    env.update(with_session, session="logged-in")
    env.update(with_customer, customer="cust")
    ids = [g.uniq_id for g in guests] + [with_session.uniq_id, with_customer.uniq_id,
                                         unknown_uid(env), ""]
    env.send(CMD.ForceOfflineGuest, pb.ForceOfflineGuest(uniqIds=[], data=b"nobody"))
    env.send(CMD.ForceOfflineGuest, pb.ForceOfflineGuest(uniqIds=ids, data=b"guest-bye"))
    for g in guests:
        _expect_kicked(g, ["guest-bye"], "forceOfflineGuest")
    env.wait_conn_close(guests)
    assert with_session.is_open and with_customer.is_open
    env.check({c: [] for c in rest}, clients=rest)
    # without data; a negative delay acts at once too
    victim = others[0] if others else None
    if victim is not None:
        env.send(CMD.ForceOfflineGuest, pb.ForceOfflineGuest(uniqIds=[victim.uniq_id], delay=-3))
        _expect_kicked(victim, [], "forceOfflineGuest")


def test_force_offline_guest_delayed(env):
    stays_guest, logs_in = env.distinct_slots(2)
    others = [c for c in env.clients if c not in (stays_guest, logs_in)]
    t0 = time.monotonic()
    env.send(CMD.ForceOfflineGuest, pb.ForceOfflineGuest(
        uniqIds=[stays_guest.uniq_id, logs_in.uniq_id], delay=1, data=b"late-bye"))
    # the request returns at once: the link answers immediately
    assert env.req(CMD.UniqIdCount, b"", pb.UniqIdCountResp).count == len(env.clients)
    assert time.monotonic() - t0 < 0.8
    env.update(logs_in, session="now-logged-in")      # the guest logs in before the timer fires
    msg = stays_guest.recv(4.0)
    elapsed = time.monotonic() - t0
    assert msg == "late-bye"
    # t0 was taken before the request was sent: the action cannot be early
    assert 0.9 <= elapsed <= 3.0, f"delayed action after {elapsed:.2f}s, expected about 1 s"
    code, why = stays_guest.wait_closed(3.0)
    assert (code, why) == (1008, "forceOfflineGuest")
    env.wait_conn_close([stays_guest])
    # the client that logged in meanwhile is spared (fresh lookup at fire time)
    env.check({c: [] for c in [logs_in] + others}, clients=[logs_in] + others, quiet=0.3)
    assert logs_in.is_open
    assert env.conn_info([logs_in.uniq_id])[logs_in.uniq_id] == ("now-logged-in", "", [])


def test_writes_to_a_closing_connection_are_ignored(env):
    """After ForceOffline the connection is closing: ConnInfoUpdate / TopicSubscribe /
    ConnInfoDelete for it are ignored (no state, no data), even before its TCP close."""
    a = env.remote()[0]
    others = [c for c in env.clients if c is not a]
    env.send(CMD.ForceOffline, pb.ForceOffline(uniqIds=[a.uniq_id]))
    env.update(a, session="zombie-s", customer="zombie", topics=["zombie-topic"], data=b"z1")
    env.subscribe(a, ["zombie-topic-2"], data=b"z2")
    env.send(CMD.ConnInfoDelete, pb.ConnInfoDelete(uniqId=a.uniq_id, delSession=True, data=b"z3"))
    env.send(CMD.TopicUnsubscribe, pb.TopicUnsubscribe(uniqId=a.uniq_id, topics=["x"], data=b"z4"))
    assert list(env.req(CMD.CustomerIdList, b"", pb.CustomerIdListResp).customerIds) == []
    assert list(env.req(CMD.TopicList, b"", pb.TopicListResp).topics) == []
    _expect_kicked(a, [], "forceOffline")
    ev = env.wait_conn_close([a])[a.uniq_id]
    assert (ev.session, ev.customerId, list(ev.topics)) == ("", "", [])
    env.check({c: [] for c in others}, clients=others)


def test_force_offline_guest_topics_do_not_count_as_login(env):
    g, s = env.distinct_slots(2)
    env.subscribe(g, ["only-topics"])
    env.update(s, session="x")
    env.send(CMD.ForceOfflineGuest, pb.ForceOfflineGuest(uniqIds=[g.uniq_id, s.uniq_id], data=b"out"))
    _expect_kicked(g, ["out"], "forceOfflineGuest")
    ev = env.wait_conn_close([g])[g.uniq_id]
    assert list(ev.topics) == ["only-topics"]
    assert list(env.req(CMD.TopicList, b"", pb.TopicListResp).topics) == []
    env.check({s: []}, clients=[s])
