"""Broadcast, Multicast*, SingleCast* and the bulk pairing rules (PROTOCOL §4.4, DECISIONS 7)."""

from __future__ import annotations

from netsvr_harness import pb
from test_commands_common import CMD, env, env2, unknown_uid  # noqa: F401 - fixtures


def _bind(env, pairs):
    """pairs: [(client, customerId)]; bound through the task link (read back to be sure)."""
    for c, cid in pairs:
        env.update(c, customer=cid)
    got = env.conn_info([c.uniq_id for c, _ in pairs], session=False, topic=False)
    assert {u: v[1] for u, v in got.items()} == {c.uniq_id: cid for c, cid in pairs}


def test_broadcast_every_client_once_empty_ignored(env):
    env.send(CMD.Broadcast, pb.Broadcast(data=b""))          # ignored
    env.send(CMD.Broadcast, pb.Broadcast(data=b"hello all"))
    env.send(CMD.Broadcast, pb.Broadcast(data="多字节 ✓".encode()))
    env.check({c: ["hello all", "多字节 ✓"] for c in env.clients}, quiet=0.2)


def test_broadcast_skips_closed_client(env):
    gone = env.remote()[0]
    gone.close()
    env.wait_conn_close([gone])
    env.send(CMD.Broadcast, pb.Broadcast(data=b"after close"))
    env.check({c: ["after close"] for c in env.alive})


def test_multicast_duplicates_unknown_empty(env):
    a, b = env.distinct_slots(2)
    rest = [c for c in env.clients if c not in (a, b)]
    env.send(CMD.Multicast, pb.Multicast(uniqIds=[a.uniq_id, unknown_uid(env), a.uniq_id, "",
                                                  b.uniq_id, "garbage"], data=b"mc"))
    env.send(CMD.Multicast, pb.Multicast(uniqIds=[a.uniq_id, b.uniq_id], data=b""))  # ignored
    env.send(CMD.Multicast, pb.Multicast(uniqIds=[], data=b"to nobody"))
    env.send(CMD.Multicast, pb.Multicast(uniqIds=[c.uniq_id for c in rest], data=b"rest"))
    exp = {a: ["mc", "mc"], b: ["mc"]}
    exp.update({c: ["rest"] for c in rest})
    env.check(exp, quiet=0.2)


def test_multicast_by_customer_id(env):
    a, b, d = env.distinct_slots(3)
    others = [c for c in env.clients if c not in (a, b, d)]
    _bind(env, [(a, "mc-1"), (b, "mc-1"), (d, "mc-2")])
    env.send(CMD.MulticastByCustomerId, pb.MulticastByCustomerId(
        customerIds=["mc-1", "mc-1", "", "nope", "mc-2", "mc-1"], data=b"by-cid"))
    env.send(CMD.MulticastByCustomerId, pb.MulticastByCustomerId(customerIds=["mc-1"], data=b""))
    env.send(CMD.MulticastByCustomerId, pb.MulticastByCustomerId(customerIds=["mc-2"], data=b"only-2"))
    exp = {a: ["by-cid"], b: ["by-cid"], d: ["by-cid", "only-2"]}
    exp.update({c: [] for c in others})
    env.check(exp, quiet=0.2)


def test_single_cast(env):
    a = env.remote()[0]
    loc = env.local()[0] if env.local() else None
    env.send(CMD.SingleCast, pb.SingleCast(uniqId=a.uniq_id, data=b"one"))
    env.send(CMD.SingleCast, pb.SingleCast(uniqId=a.uniq_id, data=b""))            # ignored
    env.send(CMD.SingleCast, pb.SingleCast(uniqId="", data=b"empty id"))           # ignored
    env.send(CMD.SingleCast, pb.SingleCast(uniqId=unknown_uid(env), data=b"unknown"))
    env.send(CMD.SingleCast, pb.SingleCast(uniqId="short", data=b"bad id"))
    env.send(CMD.SingleCast, pb.SingleCast(uniqId=a.uniq_id, data=b"two"))
    exp = {a: ["one", "two"]}
    if loc is not None:
        env.send(CMD.SingleCast, pb.SingleCast(uniqId=loc.uniq_id, data=b"local"))
        exp[loc] = ["local"]
    env.check(exp, quiet=0.2)


def test_single_cast_by_customer_id_across_workers(env):
    a, b, d = env.distinct_slots(3)
    _bind(env, [(a, "sc-1"), (b, "sc-1"), (d, "sc-2")])
    env.send(CMD.SingleCastByCustomerId, pb.SingleCastByCustomerId(customerId="sc-1", data=b"x1"))
    env.send(CMD.SingleCastByCustomerId, pb.SingleCastByCustomerId(customerId="", data=b"empty"))
    env.send(CMD.SingleCastByCustomerId, pb.SingleCastByCustomerId(customerId="sc-1", data=b""))
    env.send(CMD.SingleCastByCustomerId, pb.SingleCastByCustomerId(customerId="nope", data=b"no"))
    env.send(CMD.SingleCastByCustomerId, pb.SingleCastByCustomerId(customerId="sc-2", data=b"x2"))
    env.check({a: ["x1"], b: ["x1"], d: ["x2"]}, quiet=0.2)


def test_single_cast_bulk_rules(env):
    a, b, d = env.distinct_slots(3)
    unk = unknown_uid(env)
    send = lambda ids, data: env.send(CMD.SingleCastBulk, pb.SingleCastBulk(uniqIds=ids, data=data))  # noqa: E731
    # rule 1: one id, many data: every non-empty item in order
    send([a.uniq_id], [b"r1-1", b"", b"r1-2", b"r1-3"])
    send([unk], [b"lost-1", b"lost-2"])                      # rule 1, not found: nothing
    # rule 2: pairs; empty items and unknown ids skipped
    send([a.uniq_id, b.uniq_id, unk, d.uniq_id, ""], [b"p-a", b"p-b", b"p-unk", b"", b"p-empty-id"])
    send([b.uniq_id], [b"one-to-one"])                       # 1:1 falls in rule 2
    send([d.uniq_id, d.uniq_id], [b"d-1", b"d-2"])           # same id twice in rule 2
    # rule 3: everything dropped
    send([a.uniq_id, b.uniq_id], [b"one datum to many"])
    send([a.uniq_id, b.uniq_id, d.uniq_id], [b"len", b"mismatch"])
    send([], [b"no ids 1", b"no ids 2"])
    send([a.uniq_id], [])
    env.check({a: ["r1-1", "r1-2", "r1-3", "p-a"], b: ["p-b", "one-to-one"], d: ["d-1", "d-2"]},
              quiet=0.2)


def test_single_cast_bulk_by_customer_id_rules(env):
    a, b, d = env.distinct_slots(3)
    _bind(env, [(a, "bk-1"), (b, "bk-1"), (d, "bk-2")])
    send = lambda ids, data: env.send(  # noqa: E731
        CMD.SingleCastBulkByCustomerId, pb.SingleCastBulkByCustomerId(customerIds=ids, data=data))
    # rule 1: one customer, many data: every non-empty item, in order, to each of its connections
    send(["bk-1"], [b"r1-1", b"", b"r1-2"])
    send(["nope"], [b"lost-1", b"lost-2"])
    # rule 2: data[i] -> every connection of customerIds[i]; empty item / unknown / "" skipped
    send(["bk-2", "bk-1", "nope", ""], [b"p-2", b"", b"p-nope", b"p-empty"])
    send(["bk-1", "bk-2"], [b"q-1", b"q-2"])
    send(["bk-2"], [b"one-to-one"])
    # rule 3: dropped
    send(["bk-1", "bk-2"], [b"one datum to many"])
    send([], [b"x", b"y"])
    send(["bk-1"], [])
    env.check({a: ["r1-1", "r1-2", "q-1"], b: ["r1-1", "r1-2", "q-1"],
               d: ["p-2", "q-2", "one-to-one"]}, quiet=0.2)


def test_casts_to_many_clients_two_workers(env2):
    """Workers=2 with >= 2 clients per worker: every cast kind reaches both workers."""
    env = env2
    cs = env.clients
    for i, c in enumerate(cs):
        env.update(c, customer=f"w2-{i % 2}")
    env.send(CMD.Multicast, pb.Multicast(uniqIds=[c.uniq_id for c in cs], data=b"multi"))
    env.send(CMD.MulticastByCustomerId, pb.MulticastByCustomerId(customerIds=["w2-0"], data=b"even"))
    env.send(CMD.SingleCastBulk, pb.SingleCastBulk(uniqIds=[c.uniq_id for c in cs],
                                                   data=[f"bulk-{i}".encode() for i in range(len(cs))]))
    env.send(CMD.Broadcast, pb.Broadcast(data=b"all"))
    env.check({c: ["multi"] + (["even"] if i % 2 == 0 else []) + [f"bulk-{i}", "all"]
               for i, c in enumerate(cs)})
