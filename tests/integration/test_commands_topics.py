"""TopicSubscribe / Unsubscribe / Delete / Publish / PublishBulk (PROTOCOL §4.4, DECISIONS 7)."""

from __future__ import annotations

from netsvr_harness import pb
from test_commands_common import CMD, env, unknown_uid  # noqa: F401 - fixtures


def _topics(env) -> list:
    return sorted(env.req(CMD.TopicList, b"", pb.TopicListResp).topics)


def _subs(env, topics) -> dict:
    r = env.req(CMD.TopicUniqIdList, pb.TopicUniqIdListReq(topics=list(topics)), pb.TopicUniqIdListResp)
    return {k: sorted(v.uniqIds) for k, v in r.items.items()}


def test_subscribe_then_publish_read_your_writes(env):
    a = env.remote()[0]
    b = next(c for c in env.clients if c is not a and c.slot != a.slot)
    others = [c for c in env.clients if c not in (a, b)]
    # subscribe and publish back to back on one link: the publish must see the subscriptions
    env.subscribe(a, ["news", "", "news"], data=b"sub-a")       # "" skipped, idempotent
    env.subscribe(b, ["news"])
    env.send(CMD.TopicPublish, pb.TopicPublish(topics=["news"], data=b"n1"))
    env.subscribe(a, ["news"], data=b"sub-a-again")              # idempotent, data still sent
    env.send(CMD.TopicPublish, pb.TopicPublish(topics=["news"], data=b"n2"))
    # ignored: empty uniqId, unknown uniqId, empty topic list (no data either)
    env.subscribe(a, [], data=b"no topics")
    env.send(CMD.TopicSubscribe, pb.TopicSubscribe(uniqId="", topics=["news"], data=b"no id"))
    env.send(CMD.TopicSubscribe, pb.TopicSubscribe(uniqId=unknown_uid(env), topics=["ghost"],
                                                   data=b"unknown"))
    assert _topics(env) == ["news"]
    assert _subs(env, ["news", "ghost"]) == {"news": sorted([a.uniq_id, b.uniq_id])}
    exp = {a: ["sub-a", "n1", "sub-a-again", "n2"], b: ["n1", "n2"]}
    exp.update({c: [] for c in others})
    env.check(exp, quiet=0.2)


def test_publish_no_dedup_across_topics(env):
    a, b, d = env.distinct_slots(3)
    env.subscribe(a, ["t1", "t2"])
    env.subscribe(b, ["t1"])
    env.subscribe(d, ["t3"])
    env.send(CMD.TopicPublish, pb.TopicPublish(topics=["t1", "t2", "", "unknown"], data=b"p"))
    env.send(CMD.TopicPublish, pb.TopicPublish(topics=["t1", "t1"], data=b"twice"))
    env.send(CMD.TopicPublish, pb.TopicPublish(topics=["t1", "t3"], data=b""))   # ignored
    env.send(CMD.TopicPublish, pb.TopicPublish(topics=[], data=b"no topics"))
    env.send(CMD.TopicPublish, pb.TopicPublish(topics=["t3"], data=b"t3"))
    env.check({a: ["p", "p", "twice", "twice"], b: ["p", "twice", "twice"], d: ["t3"]}, quiet=0.2)


def test_publish_bulk_rules(env):
    a, b, d = env.distinct_slots(3)
    env.subscribe(a, ["ba"])
    env.subscribe(b, ["ba", "bb"])
    env.subscribe(d, ["bc"])
    send = lambda t, data: env.send(CMD.TopicPublishBulk, pb.TopicPublishBulk(topics=t, data=data))  # noqa: E731
    # rule 1: one topic, many data; empty items skipped (DECISIONS 7)
    send(["ba"], [b"r1-1", b"", b"r1-2"])
    send(["nobody"], [b"lost-1", b"lost-2"])
    # rule 2: pairs; empty item and unknown topic skipped
    send(["bb", "ba", "nobody", "bc", ""], [b"p-bb", b"", b"p-nobody", b"p-bc", b"p-empty"])
    send(["bc"], [b"one-to-one"])
    # rule 3: dropped
    send(["ba", "bb"], [b"one datum to many"])
    send([], [b"x", b"y"])
    send(["ba"], [])
    env.check({a: ["r1-1", "r1-2"], b: ["r1-1", "r1-2", "p-bb"], d: ["p-bc", "one-to-one"]},
              quiet=0.2)


def test_unsubscribe(env):
    a, b = env.distinct_slots(2)
    env.subscribe(a, ["u1", "u2"])
    env.subscribe(b, ["u2"])
    env.send(CMD.TopicUnsubscribe, pb.TopicUnsubscribe(uniqId=a.uniq_id, topics=["u1"], data=b"un-1"))
    assert _topics(env) == ["u2"]                  # u1 lost its only subscriber
    # data delivered even though a is not subscribed to "never"
    env.send(CMD.TopicUnsubscribe, pb.TopicUnsubscribe(uniqId=a.uniq_id, topics=["never"],
                                                       data=b"un-never"))
    # ignored: empty topic list, empty / unknown uniqId
    env.send(CMD.TopicUnsubscribe, pb.TopicUnsubscribe(uniqId=a.uniq_id, topics=[], data=b"no topics"))
    env.send(CMD.TopicUnsubscribe, pb.TopicUnsubscribe(uniqId="", topics=["u2"], data=b"no id"))
    env.send(CMD.TopicUnsubscribe, pb.TopicUnsubscribe(uniqId=unknown_uid(env), topics=["u2"],
                                                       data=b"unknown"))
    env.send(CMD.TopicPublish, pb.TopicPublish(topics=["u1"], data=b"to-u1"))
    env.send(CMD.TopicPublish, pb.TopicPublish(topics=["u2"], data=b"to-u2"))
    assert env.conn_info([a.uniq_id])[a.uniq_id] == ("", "", ["u2"])
    assert _subs(env, ["u1", "u2"]) == {"u2": sorted([a.uniq_id, b.uniq_id])}
    # b unsubscribes from its last topic; a still holds u2
    env.send(CMD.TopicUnsubscribe, pb.TopicUnsubscribe(uniqId=b.uniq_id, topics=["u2", "u1"]))
    env.send(CMD.TopicPublish, pb.TopicPublish(topics=["u2"], data=b"after-b-left"))  # pipelined
    assert _subs(env, ["u2"]) == {"u2": [a.uniq_id]}
    env.check({a: ["un-1", "un-never", "to-u2", "after-b-left"], b: ["to-u2"]}, quiet=0.2)


def test_topic_delete(env):
    a, b, d = env.distinct_slots(3)
    e = next((c for c in env.clients if c not in (a, b, d)), None)
    env.subscribe(a, ["d1", "d2", "keep"])
    env.subscribe(b, ["d2"])
    env.subscribe(d, ["d3"])
    # a lost 2 topics but gets the data once; b once; d (other topic) and e (none) nothing
    env.send(CMD.TopicDelete, pb.TopicDelete(topics=["d1", "d2", "", "ghost", "d1"], data=b"deleted"))
    env.send(CMD.TopicPublish, pb.TopicPublish(topics=["d1", "d2", "keep"], data=b"pipelined"))
    assert _topics(env) == ["d3", "keep"]
    assert env.req(CMD.TopicCount, b"", pb.TopicCountResp).count == 2
    info = env.conn_info([a.uniq_id, b.uniq_id, d.uniq_id])
    assert info == {a.uniq_id: ("", "", ["keep"]), b.uniq_id: ("", "", []),
                    d.uniq_id: ("", "", ["d3"])}
    # none of the topics exist: nothing sent
    env.send(CMD.TopicDelete, pb.TopicDelete(topics=["d1", "ghost"], data=b"nothing"))
    env.send(CMD.TopicDelete, pb.TopicDelete(topics=[], data=b"nothing-2"))
    # publishing to the deleted topics reaches nobody
    env.send(CMD.TopicPublish, pb.TopicPublish(topics=["d1", "d2"], data=b"gone"))
    # delete without data: topic removed silently
    env.send(CMD.TopicDelete, pb.TopicDelete(topics=["d3"]))
    assert _topics(env) == ["keep"]
    assert env.conn_info([d.uniq_id])[d.uniq_id] == ("", "", [])
    exp = {a: ["deleted", "pipelined"], b: ["deleted"], d: []}
    if e is not None:
        exp[e] = []
    env.check(exp, quiet=0.2)
    # subscribing again after the delete works
    env.subscribe(b, ["d2"])
    env.send(CMD.TopicPublish, pb.TopicPublish(topics=["d2"], data=b"again"))
    env.check({b: ["again"]})
