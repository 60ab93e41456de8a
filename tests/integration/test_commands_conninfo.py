"""ConnInfoUpdate / ConnInfoDelete (PROTOCOL §4.4) and read-your-writes on one task link."""

from __future__ import annotations

from test_commands_common import CMD, env, unknown_uid  # noqa: F401 - fixtures
from netsvr_harness import pb


def test_conn_info_update_replace_semantics_read_your_writes(env):
    a = env.remote()[0]                      # on another worker than the task link
    b = next(c for c in env.clients if c is not a)
    uids = [a.uniq_id, b.uniq_id]

    # 1. everything set; "" in newTopics is skipped; data delivered. Read back at once.
    env.update(a, session="s1", customer="cust-1", topics=["t1", "", "t2"], data=b"upd-1")
    assert env.conn_info(uids) == {a.uniq_id: ("s1", "cust-1", ["t1", "t2"]),
                                   b.uniq_id: ("", "", [])}
    assert sorted(env.req(CMD.CustomerIdList, b"", pb.CustomerIdListResp).customerIds) == ["cust-1"]
    assert sorted(env.req(CMD.TopicList, b"", pb.TopicListResp).topics) == ["t1", "t2"]

    # 2. empty newSession does not clear; new customerId rebinds; newTopics replaces
    env.update(a, session="", customer="cust-2", topics=["t3"], data=b"upd-2")
    assert env.conn_info(uids)[a.uniq_id] == ("s1", "cust-2", ["t3"])
    assert sorted(env.req(CMD.CustomerIdList, b"", pb.CustomerIdListResp).customerIds) == ["cust-2"]
    assert sorted(env.req(CMD.TopicList, b"", pb.TopicListResp).topics) == ["t3"]
    cbc = env.req(CMD.ConnInfoByCustomerId,
                  pb.ConnInfoByCustomerIdReq(customerIds=["cust-1", "cust-2"], reqUniqId=True),
                  pb.ConnInfoByCustomerIdResp)
    assert sorted(cbc.items) == ["cust-2"]
    assert [i.uniqId for i in cbc.items["cust-2"].items] == [a.uniq_id]

    # 3. empty newTopics list leaves the topics; a new session replaces the old one
    env.update(a, session="s2", topics=[])
    assert env.conn_info(uids)[a.uniq_id] == ("s2", "cust-2", ["t3"])

    # duplicates in newTopics collapse
    env.update(a, topics=["t3", "t3"])
    assert env.conn_info(uids)[a.uniq_id] == ("s2", "cust-2", ["t3"])
    assert dict(env.req(CMD.TopicUniqIdCount, pb.TopicUniqIdCountReq(topics=["t3"]),
                        pb.TopicUniqIdCountResp).items) == {"t3": 1}

    # 4. unknown / empty uniqId: ignored entirely (no data, no state)
    env.send(CMD.ConnInfoUpdate, pb.ConnInfoUpdate(uniqId=unknown_uid(env, a.uniq_id),
                                                   newSession="x", newCustomerId="ghost",
                                                   newTopics=["ghost-topic"], data=b"nobody"))
    env.send(CMD.ConnInfoUpdate, pb.ConnInfoUpdate(uniqId="", newCustomerId="ghost2",
                                                   newTopics=["ghost-topic2"], data=b"nobody2"))
    assert sorted(env.req(CMD.CustomerIdList, b"", pb.CustomerIdListResp).customerIds) == ["cust-2"]
    assert sorted(env.req(CMD.TopicList, b"", pb.TopicListResp).topics) == ["t3"]

    # 5. a write followed at once by casts that depend on it (same link, class B then A)
    env.update(b, customer="cust-2", topics=["t4"])
    env.send(CMD.SingleCastByCustomerId, pb.SingleCastByCustomerId(customerId="cust-2", data=b"cid"))
    env.send(CMD.TopicPublish, pb.TopicPublish(topics=["t4"], data=b"t4-pub"))

    env.check({a: ["upd-1", "upd-2", "cid"], b: ["cid", "t4-pub"]}, quiet=0.2)


def test_conn_info_update_on_every_worker(env):
    """One write per client, each read back by the same link right after it."""
    for i, c in enumerate(env.clients):
        env.update(c, session=f"sess-{i}", customer=f"cu-{i % 2}", topics=[f"tp-{i}"],
                   data=f"hello-{i}".encode())
        assert env.conn_info([c.uniq_id])[c.uniq_id] == (f"sess-{i}", f"cu-{i % 2}", [f"tp-{i}"]), \
            f"client on slot {c.slot} (task link on slot {env.task_slot})"
    n = len(env.clients)
    assert env.req(CMD.CustomerIdCount, b"", pb.CustomerIdCountResp).count == min(n, 2)
    assert env.req(CMD.TopicCount, b"", pb.TopicCountResp).count == n
    env.check({c: [f"hello-{i}"] for i, c in enumerate(env.clients)})


def test_conn_info_delete_each_flag(env):
    a, b = env.distinct_slots(2)
    a_uid = a.uniq_id
    env.update(a, session="sess-a", customer="cust-a", topics=["ta1", "ta2"])
    env.update(b, session="sess-b", customer="cust-a", topics=["ta2"])
    assert env.conn_info([a_uid])[a_uid] == ("sess-a", "cust-a", ["ta1", "ta2"])

    # delTopic only
    env.send(CMD.ConnInfoDelete, pb.ConnInfoDelete(uniqId=a_uid, delTopic=True, data=b"d-topic"))
    assert env.conn_info([a_uid])[a_uid] == ("sess-a", "cust-a", [])
    assert sorted(env.req(CMD.TopicList, b"", pb.TopicListResp).topics) == ["ta2"]  # b keeps ta2

    # delSession only
    env.send(CMD.ConnInfoDelete, pb.ConnInfoDelete(uniqId=a_uid, delSession=True, data=b"d-sess"))
    assert env.conn_info([a_uid])[a_uid] == ("", "cust-a", [])

    # delCustomerId only: a leaves cust-a, b stays bound
    env.send(CMD.ConnInfoDelete, pb.ConnInfoDelete(uniqId=a_uid, delCustomerId=True, data=b"d-cid"))
    env.send(CMD.SingleCastByCustomerId, pb.SingleCastByCustomerId(customerId="cust-a",
                                                                   data=b"cid-after"))  # pipelined
    assert env.conn_info([a_uid])[a_uid] == ("", "", [])
    cbc = env.req(CMD.ConnInfoByCustomerId,
                  pb.ConnInfoByCustomerIdReq(customerIds=["cust-a"], reqUniqId=True),
                  pb.ConnInfoByCustomerIdResp)
    assert [i.uniqId for i in cbc.items["cust-a"].items] == [b.uniq_id]

    # no flag, only data: state unchanged, data delivered
    env.send(CMD.ConnInfoDelete, pb.ConnInfoDelete(uniqId=b.uniq_id, data=b"d-none"))
    assert env.conn_info([b.uniq_id])[b.uniq_id] == ("sess-b", "cust-a", ["ta2"])

    # all flags at once: the customer and the topic disappear
    env.send(CMD.ConnInfoDelete, pb.ConnInfoDelete(uniqId=b.uniq_id, delSession=True,
                                                   delCustomerId=True, delTopic=True))
    assert env.conn_info([b.uniq_id])[b.uniq_id] == ("", "", [])
    assert list(env.req(CMD.CustomerIdList, b"", pb.CustomerIdListResp).customerIds) == []
    assert env.req(CMD.CustomerIdCount, b"", pb.CustomerIdCountResp).count == 0
    assert list(env.req(CMD.TopicList, b"", pb.TopicListResp).topics) == []

    # unknown / empty uniqId ignored, no data to anyone
    env.send(CMD.ConnInfoDelete, pb.ConnInfoDelete(uniqId=unknown_uid(env), delSession=True,
                                                   data=b"nobody"))
    env.send(CMD.ConnInfoDelete, pb.ConnInfoDelete(uniqId="", delTopic=True, data=b"nobody"))

    env.check({a: ["d-topic", "d-sess", "d-cid"], b: ["cid-after", "d-none"]}, quiet=0.2)


def test_conn_close_reports_state_set_by_commands(env):
    """The ConnClose of a client carries the session/customerId/topics set by task commands
    (state written through the owner worker)."""
    c = env.remote()[0]
    env.update(c, session="bye-sess", customer="bye-cust", topics=["bt1", "bt2"])
    assert env.conn_info([c.uniq_id])[c.uniq_id] == ("bye-sess", "bye-cust", ["bt1", "bt2"])
    c.close()
    ev = env.wait_conn_close([c])[c.uniq_id]
    assert (ev.session, ev.customerId, sorted(ev.topics)) == ("bye-sess", "bye-cust", ["bt1", "bt2"])
    assert env.conn_info([c.uniq_id]) == {}
    assert list(env.req(CMD.CustomerIdList, b"", pb.CustomerIdListResp).customerIds) == []
    assert list(env.req(CMD.TopicList, b"", pb.TopicListResp).topics) == []
