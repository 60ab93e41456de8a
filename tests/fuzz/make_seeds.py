#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets under tests/fuzz/<target>/ (committed; rerun when
the inputs' format changes). Needs the generated Python protobuf modules:
    NETSVR_PROTO_PY=build/proto_py python3 tests/fuzz/make_seeds.py
Regression inputs for crashes found are added by hand as tests/fuzz/<target>/crash-<what>."""
import importlib
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.environ.get("NETSVR_PROTO_PY", os.path.join(HERE, "../../build/proto_py")))
cmd_pb2 = importlib.import_module("cmd_pb2")

# fake_worker.hpp: task address 127.0.0.1:6062, accept time 0x60000000, clients 1..6 per serial.
def uniq(serial, i):
    return "%08x%04x%08x%08x" % (0x7F000001, 6062, 0x60000000, (serial << 24) | (i + 1))

LOCAL = [uniq(0, i) for i in range(6)]
REMOTE = [uniq(1, i) for i in range(6)]
CONN_ID = "%08x%04x%08x%04x%08x" % (0x7F000001, 6061, 0, 0, 0)  # the fake worker link's
NAMES = [v.name for v in cmd_pb2.Cmd.DESCRIPTOR.values]


def msg(module, cls, **fields):
    m = getattr(importlib.import_module(module + "_pb2"), cls)()
    for k, v in fields.items():
        if isinstance(v, list):
            getattr(m, k).extend(v)
        else:
            setattr(m, k, v)
    return m.SerializeToString()


def record(cmd_name, body):
    return bytes([NAMES.index(cmd_name)]) + struct.pack(">H", len(body)) + body


def raw_record(cmd, body):
    return b"\xf0" + struct.pack(">H", len(body)) + struct.pack(">I", cmd) + body


def write(target, name, data):
    d = os.path.join(HERE, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def task_seeds():
    ids = [LOCAL[0], REMOTE[1], LOCAL[5], "bogus", ""]
    cust = ["c0", "c1", "", "nobody"]
    topics = ["t0", "t1", "", "none"]
    D = b"hello"
    s = {
        "Broadcast": msg("broadcast", "Broadcast", data=D),
        "Multicast": msg("multicast", "Multicast", uniqIds=ids + [LOCAL[0]], data=D),
        "MulticastByCustomerId": msg("multicastByCustomerId", "MulticastByCustomerId",
                                     customerIds=cust + ["c0"], data=D),
        "SingleCast": msg("singleCast", "SingleCast", uniqId=REMOTE[0], data=D),
        "SingleCastBulk": msg("singleCastBulk", "SingleCastBulk", uniqIds=ids, data=[D, b"x"]),
        "SingleCastByCustomerId": msg("singleCastByCustomerId", "SingleCastByCustomerId",
                                      customerId="c1", data=D),
        "SingleCastBulkByCustomerId": msg("singleCastBulkByCustomerId",
                                          "SingleCastBulkByCustomerId", customerIds=cust,
                                          data=[D, b"", b"y"]),
        "TopicPublish": msg("topicPublish", "TopicPublish", topics=topics, data=D),
        "TopicPublishBulk": msg("topicPublishBulk", "TopicPublishBulk", topics=topics, data=[D]),
        "ConnInfoUpdate": msg("connInfoUpdate", "ConnInfoUpdate", uniqId=LOCAL[1],
                              newSession="sess", newCustomerId="c9", newTopics=["t5", "t0", ""],
                              data=D),
        "ConnInfoDelete": msg("connInfoDelete", "ConnInfoDelete", uniqId=LOCAL[2], delSession=True,
                              delCustomerId=True, delTopic=True, data=D),
        "TopicSubscribe": msg("topicSubscribe", "TopicSubscribe", uniqId=LOCAL[3],
                              topics=["t7", "t7", ""], data=D),
        "TopicUnsubscribe": msg("topicUnsubscribe", "TopicUnsubscribe", uniqId=LOCAL[0],
                                topics=["t0", "t9"], data=D),
        "TopicDelete": msg("topicDelete", "TopicDelete", topics=["t1", "t0", ""], data=D),
        "ForceOffline": msg("forceOffline", "ForceOffline", uniqIds=ids, data=D),
        "ForceOfflineByCustomerId": msg("forceOfflineByCustomerId", "ForceOfflineByCustomerId",
                                        customerIds=cust, data=D),
        "ForceOfflineGuest": msg("forceOfflineGuest", "ForceOfflineGuest", uniqIds=ids, delay=3,
                                 data=D),
        "CheckOnline": msg("checkOnlineReq", "CheckOnlineReq", uniqIds=ids),
        "CustomerIdList": b"",
        "CustomerIdCount": b"",
        "UniqIdList": b"",
        "UniqIdCount": b"",
        "TopicList": b"",
        "TopicCount": b"",
        "TopicUniqIdList": msg("topicUniqIdListReq", "TopicUniqIdListReq", topics=topics),
        "TopicUniqIdCount": msg("topicUniqIdCountReq", "TopicUniqIdCountReq", topics=topics,
                                countAll=True),
        "TopicCustomerIdList": msg("topicCustomerIdListReq", "TopicCustomerIdListReq",
                                   topics=topics),
        "TopicCustomerIdToUniqIdsList": msg("topicCustomerIdToUniqIdsListReq",
                                            "TopicCustomerIdToUniqIdsListReq", topics=topics),
        "TopicCustomerIdCount": msg("topicCustomerIdCountReq", "TopicCustomerIdCountReq",
                                    topics=topics, countAll=True),
        "ConnInfo": msg("connInfoReq", "ConnInfoReq", uniqIds=ids, reqSession=True,
                        reqCustomerId=True, reqTopic=True),
        "ConnInfoByCustomerId": msg("connInfoByCustomerIdReq", "ConnInfoByCustomerIdReq",
                                    customerIds=cust, reqSession=True, reqUniqId=True,
                                    reqTopic=True),
        "Metrics": b"",
        "Limit": msg("limitReq", "LimitReq", onOpen=5, onMessage=7),
    }
    for name, body in s.items():
        write("task_cmd", "seed-" + name, record(name, body))
    # A session: change a client, then query and publish what changed.
    write("task_cmd", "seed-sequence", record("TopicSubscribe", s["TopicSubscribe"]) +
          record("TopicUniqIdList", msg("topicUniqIdListReq", "TopicUniqIdListReq",
                                        topics=["t7"])) +
          record("ConnInfoUpdate", s["ConnInfoUpdate"]) + record("ConnInfo", s["ConnInfo"]) +
          record("TopicDelete", s["TopicDelete"]) + record("ForceOffline", s["ForceOffline"]) +
          record("Broadcast", s["Broadcast"]))
    write("task_cmd", "seed-garbage-body", record("ConnInfo", b"\xff\xff\xff\xff\x0f"))
    write("task_cmd", "seed-unknown-cmd", raw_record(0, b"") + record("Broadcast", s["Broadcast"]))
    write("task_cmd", "seed-worker-cmd-on-task-port", record("Register", b"\x08\x01"))


def worker_port_seeds():
    reg = lambda ev: msg("registerReq", "RegisterReq", events=ev)
    unreg = lambda cid: msg("unRegisterReq", "UnRegisterReq", connId=cid)
    write("worker_port", "seed-register", record("Register", reg(7)))
    write("worker_port", "seed-register-twice", record("Register", reg(1)) + record("Register", reg(2)))
    write("worker_port", "seed-register-no-events", record("Register", reg(8)))
    write("worker_port", "seed-register-unregister", record("Register", reg(4)) +
          record("Unregister", unreg(CONN_ID)) + record("Register", reg(4)))
    write("worker_port", "seed-unregister-other", record("Unregister", unreg("0" * 32)))
    write("worker_port", "seed-garbage", record("Register", b"\x08\x80\x80\x80\x80\x80\x80"))
    write("worker_port", "seed-task-cmd", record("Broadcast", b"\x0a\x01x"))


def packet_seeds():
    pkt = lambda cmd, body: struct.pack(">II", 4 + len(body), cmd) + body
    stream = pkt(900003001, b"\x08\x07") + pkt(900002003, b"\x0a\x02hi") + pkt(5, b"")
    write("packet", "seed-three", b"\x03\x40" + stream)
    write("packet", "seed-bytewise", b"\x01\xff" + stream)
    write("packet", "seed-4gib-length", b"\x00\x40" + b"\xff\xff\xff\xff" + b"abcd")
    write("packet", "seed-no-cmd", b"\x00\x40" + struct.pack(">I", 2) + b"ab")
    write("packet", "seed-half", b"\x05\xff" + struct.pack(">I", 100) + b"x" * 10)


def uniqid_seeds():
    write("uniqid", "seed-uniqid", LOCAL[0].encode())
    write("uniqid", "seed-upper", REMOTE[3].upper().encode())
    write("uniqid", "seed-connid", CONN_ID.encode())
    write("uniqid", "seed-bad", (LOCAL[0][:27] + "g").encode())


def config_seeds():
    with open(os.path.join(HERE, "../../etc/netsvr.toml"), "rb") as f:
        write("config", "seed-netsvr.toml", f.read())
    with open(os.path.join(HERE, "../unit/data/go-netsvr.toml"), "rb") as f:
        write("config", "seed-go-netsvr.toml", f.read())
    write("config", "seed-small", b'LogLevel = "debug"\n[Customer]\nListenAddress = "127.0.0.1:1"\n'
          b'ReceivePackLimit = 10\nHandshakeTimeout = "1m30s"\n[Metrics]\nItem = [1, 2, 99]\n')


def inflate_seeds():
    for i, ctl in enumerate([0x08, 0x0C, 0x04, 0x05, 0x03, 0x0E]):
        write("inflate", "seed-%d" % i, bytes([ctl, 40]) + b"hello hello hello " * 3)


def client_edge_seeds():
    """Client bytes: request heads (request_head) and frame streams (ws_frame), built by the
    conformance suite's raw client."""
    sys.path.insert(0, os.path.join(HERE, "../integration"))
    from ws_raw import close_payload, fragments, frame, upgrade_head
    heads = {
        "ok": upgrade_head("/netsvr?a=1", "X-Forwarded-For: 1.2.3.4\r\n"
                           "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"),
        "post": upgrade_head().replace(b"GET", b"POST"),
        "probe": b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        "version-8": upgrade_head(version="8"),
        "garbage": b"HELLO\r\n\r\n",
    }
    for name, data in heads.items():
        write("request_head", "seed-" + name, data)
    streams = {
        "text": frame(1, b"hello"),
        "fragments-and-ping": fragments(1, b"abc", 1)[:-6] + frame(9, b"p") + frame(0, b"c"),
        "close": frame(8, close_payload(1000, b"bye")),
        "binary-300": frame(2, b"x" * 300),
        "rsv1": frame(1, b"x", rsv=4),
        "unmasked": frame(1, b"x", masked=False),
        "len64-head": frame(2, b"y" * 70000)[:40],
    }
    for name, data in streams.items():
        write("ws_frame", "seed-" + name, data)


if __name__ == "__main__":
    client_edge_seeds()
    task_seeds()
    worker_port_seeds()
    packet_seeds()
    uniqid_seeds()
    config_seeds()
    inflate_seeds()
