"""Request/response commands (class C, PROTOCOL §4.4), answered from the state of every worker."""

from __future__ import annotations

import pytest

from netsvr_harness import pb
from test_commands_common import CMD, env, unknown_uid  # noqa: F401 - fixtures


@pytest.fixture
def state(env):
    """a: customer q-1, session sa, topics qa+qb | b: customer q-1, no topic |
    d: customer q-2, session sd, topic qb | g: guest subscribed to qc | everybody else: bare.
    a, b, d, g are on at least three different workers."""
    a, b, d = env.distinct_slots(3)
    rest = [c for c in env.clients if c not in (a, b, d)]
    g = rest[0] if rest else env.open_more(1)[0]
    env.update(a, session="sa", customer="q-1", topics=["qa", "qb"])
    env.update(b, customer="q-1")
    env.update(d, session="sd", customer="q-2", topics=["qb"])
    env.subscribe(g, ["qc"])
    env.a, env.b, env.d, env.g = a, b, d, g
    return env


def test_check_online(state):
    e = state
    unk = unknown_uid(e)
    req = [e.b.uniq_id, unk, e.a.uniq_id, e.b.uniq_id, "", "garbage", e.g.uniq_id]
    r = e.req(CMD.CheckOnline, pb.CheckOnlineReq(uniqIds=req), pb.CheckOnlineResp)
    assert list(r.uniqIds) == [e.b.uniq_id, e.a.uniq_id, e.b.uniq_id, e.g.uniq_id]
    r = e.req(CMD.CheckOnline, pb.CheckOnlineReq(uniqIds=[unk]), pb.CheckOnlineResp)
    assert list(r.uniqIds) == []
    r = e.req(CMD.CheckOnline, pb.CheckOnlineReq(uniqIds=[]), pb.CheckOnlineResp)
    assert list(r.uniqIds) == []
    # every client, in order, from every worker
    allids = [c.uniq_id for c in e.clients]
    r = e.req(CMD.CheckOnline, pb.CheckOnlineReq(uniqIds=list(reversed(allids))), pb.CheckOnlineResp)
    assert list(r.uniqIds) == list(reversed(allids))


def test_customer_id_list_and_count(state):
    e = state
    assert sorted(e.req(CMD.CustomerIdList, b"", pb.CustomerIdListResp).customerIds) == ["q-1", "q-2"]
    assert e.req(CMD.CustomerIdCount, b"", pb.CustomerIdCountResp).count == 2
    e.send(CMD.ConnInfoDelete, pb.ConnInfoDelete(uniqId=e.d.uniq_id, delCustomerId=True))
    assert sorted(e.req(CMD.CustomerIdList, b"", pb.CustomerIdListResp).customerIds) == ["q-1"]
    assert e.req(CMD.CustomerIdCount, b"", pb.CustomerIdCountResp).count == 1
    # q-1 still has b after a leaves it
    e.send(CMD.ConnInfoDelete, pb.ConnInfoDelete(uniqId=e.a.uniq_id, delCustomerId=True))
    assert e.req(CMD.CustomerIdCount, b"", pb.CustomerIdCountResp).count == 1
    e.send(CMD.ConnInfoDelete, pb.ConnInfoDelete(uniqId=e.b.uniq_id, delCustomerId=True))
    assert list(e.req(CMD.CustomerIdList, b"", pb.CustomerIdListResp).customerIds) == []
    # count 0: empty body (proto3 default)
    e.task.send(CMD.CustomerIdCount, b"")
    cmd, body = e.task.recv()
    assert (cmd, body) == (CMD.CustomerIdCount, b"")


def test_uniq_id_list_and_count(state):
    e = state
    # a request body is ignored for parameterless queries
    assert e.req(CMD.UniqIdCount, b"\x08\x05", pb.UniqIdCountResp).count == len(e.clients)
    lst = e.req(CMD.UniqIdList, b"", pb.UniqIdListResp).uniqIds
    assert sorted(lst) == sorted(c.uniq_id for c in e.clients)
    assert len(lst) == len(set(lst))
    assert {c.slot for c in e.clients} == set(range(e.gw.workers))


def test_topic_list_and_count(state):
    e = state
    assert sorted(e.req(CMD.TopicList, b"", pb.TopicListResp).topics) == ["qa", "qb", "qc"]
    assert e.req(CMD.TopicCount, b"", pb.TopicCountResp).count == 3
    e.send(CMD.TopicUnsubscribe, pb.TopicUnsubscribe(uniqId=e.a.uniq_id, topics=["qb"]))
    assert e.req(CMD.TopicCount, b"", pb.TopicCountResp).count == 3        # d still in qb
    e.send(CMD.TopicUnsubscribe, pb.TopicUnsubscribe(uniqId=e.d.uniq_id, topics=["qb"]))
    assert sorted(e.req(CMD.TopicList, b"", pb.TopicListResp).topics) == ["qa", "qc"]
    assert e.req(CMD.TopicCount, b"", pb.TopicCountResp).count == 2


def test_topic_uniq_id_list_field_2(state):
    e = state
    e.task.send(CMD.TopicUniqIdList, pb.TopicUniqIdListReq(topics=["qa", "qb", "qc", "nope", ""]))
    cmd, body = e.task.recv()
    assert cmd == CMD.TopicUniqIdList
    assert body[:1] == b"\x12", f"map entries must be field 2 (tag 0x12), body starts {body[:4]!r}"
    r = pb.TopicUniqIdListResp()
    r.ParseFromString(body)
    assert {k: sorted(v.uniqIds) for k, v in r.items.items()} == {
        "qa": [e.a.uniq_id],
        "qb": sorted([e.a.uniq_id, e.d.uniq_id]),
        "qc": [e.g.uniq_id],
    }
    r = e.req(CMD.TopicUniqIdList, pb.TopicUniqIdListReq(topics=[]), pb.TopicUniqIdListResp)
    assert dict(r.items) == {}
    r = e.req(CMD.TopicUniqIdList, pb.TopicUniqIdListReq(topics=["nope"]), pb.TopicUniqIdListResp)
    assert dict(r.items) == {}


def test_topic_uniq_id_count(state):
    e = state
    q = lambda topics, all_=False: dict(e.req(  # noqa: E731
        CMD.TopicUniqIdCount, pb.TopicUniqIdCountReq(topics=topics, countAll=all_),
        pb.TopicUniqIdCountResp).items)
    assert q(["qa", "qb", "nope", ""]) == {"qa": 1, "qb": 2}
    assert q([]) == {}
    assert q([], True) == {"qa": 1, "qb": 2, "qc": 1}
    assert q(["nope"], True) == {"qa": 1, "qb": 2, "qc": 1}     # countAll ignores the list


def test_topic_customer_id_list(state):
    e = state
    r = e.req(CMD.TopicCustomerIdList, pb.TopicCustomerIdListReq(topics=["qa", "qb", "qc", "nope"]),
              pb.TopicCustomerIdListResp)
    got = {k: sorted(v.customerIds) for k, v in r.items.items()}
    # qc exists but its only subscriber has no customerId: present with an empty list
    assert got == {"qa": ["q-1"], "qb": ["q-1", "q-2"], "qc": []}
    r = e.req(CMD.TopicCustomerIdList, pb.TopicCustomerIdListReq(topics=[]), pb.TopicCustomerIdListResp)
    assert dict(r.items) == {}


def test_topic_customer_id_to_uniq_ids_list(state):
    e = state
    r = e.req(CMD.TopicCustomerIdToUniqIdsList,
              pb.TopicCustomerIdToUniqIdsListReq(topics=["qa", "qb", "qc", "nope"]),
              pb.TopicCustomerIdToUniqIdsListResp)
    got = {t: {cid: sorted(x.uniqIds) for cid, x in v.items.items()} for t, v in r.items.items()}
    q1 = sorted([e.a.uniq_id, e.b.uniq_id])   # b is not subscribed to qa/qb but is a q-1 connection
    assert got == {"qa": {"q-1": q1},
                   "qb": {"q-1": q1, "q-2": [e.d.uniq_id]},
                   "qc": {}}


def test_topic_customer_id_count(state):
    e = state
    q = lambda topics, all_=False: dict(e.req(  # noqa: E731
        CMD.TopicCustomerIdCount, pb.TopicCustomerIdCountReq(topics=topics, countAll=all_),
        pb.TopicCustomerIdCountResp).items)
    assert q(["qa", "qb", "qc", "nope"]) == {"qa": 1, "qb": 2, "qc": 0}
    assert q([]) == {}
    assert q([], True) == {"qa": 1, "qb": 2, "qc": 0}
    # two connections of one customer on one topic count once
    e.subscribe(e.b, ["qa"])
    assert q(["qa"]) == {"qa": 1}


def test_conn_info_flags(state):
    e = state
    a, b, d, g = e.a, e.b, e.d, e.g
    ids = [a.uniq_id, b.uniq_id, d.uniq_id, g.uniq_id, unknown_uid(e), ""]

    def q(s, c, t):
        r = e.req(CMD.ConnInfo, pb.ConnInfoReq(uniqIds=ids, reqSession=s, reqCustomerId=c, reqTopic=t),
                  pb.ConnInfoResp)
        return {k: (v.session, v.customerId, sorted(v.topics)) for k, v in r.items.items()}

    assert q(True, True, True) == {a.uniq_id: ("sa", "q-1", ["qa", "qb"]), b.uniq_id: ("", "q-1", []),
                                   d.uniq_id: ("sd", "q-2", ["qb"]), g.uniq_id: ("", "", ["qc"])}
    assert q(True, False, False) == {a.uniq_id: ("sa", "", []), b.uniq_id: ("", "", []),
                                     d.uniq_id: ("sd", "", []), g.uniq_id: ("", "", [])}
    assert q(False, True, False) == {a.uniq_id: ("", "q-1", []), b.uniq_id: ("", "q-1", []),
                                     d.uniq_id: ("", "q-2", []), g.uniq_id: ("", "", [])}
    assert q(False, False, True) == {a.uniq_id: ("", "", ["qa", "qb"]), b.uniq_id: ("", "", []),
                                     d.uniq_id: ("", "", ["qb"]), g.uniq_id: ("", "", ["qc"])}
    # no flag: every found id still has an (empty) entry
    assert q(False, False, False) == {u: ("", "", []) for u in ids[:4]}
    r = e.req(CMD.ConnInfo, pb.ConnInfoReq(uniqIds=[unknown_uid(e)], reqSession=True), pb.ConnInfoResp)
    assert dict(r.items) == {}


def test_conn_info_by_customer_id(state):
    e = state
    a, b, d = e.a, e.b, e.d

    def q(cids, s, u, t):
        r = e.req(CMD.ConnInfoByCustomerId,
                  pb.ConnInfoByCustomerIdReq(customerIds=cids, reqSession=s, reqUniqId=u, reqTopic=t),
                  pb.ConnInfoByCustomerIdResp)
        return {k: sorted((i.session, i.uniqId, tuple(sorted(i.topics))) for i in v.items)
                for k, v in r.items.items()}

    cids = ["q-1", "q-1", "nope", "", "q-2"]
    assert q(cids, True, True, True) == {
        "q-1": sorted([("sa", a.uniq_id, ("qa", "qb")), ("", b.uniq_id, ())]),
        "q-2": [("sd", d.uniq_id, ("qb",))]}
    assert q(cids, False, True, False) == {
        "q-1": sorted([("", a.uniq_id, ()), ("", b.uniq_id, ())]),
        "q-2": [("", d.uniq_id, ())]}
    assert q(cids, True, False, False) == {"q-1": sorted([("sa", "", ()), ("", "", ())]),
                                           "q-2": [("sd", "", ())]}
    assert q(["q-2"], False, False, True) == {"q-2": [("", "", ("qb",))]}
    assert q(["nope", ""], True, True, True) == {}
    assert q([], True, True, True) == {}
