"""Two gateways driven as one cluster (issue 14, docs/CLUSTER.md): a business of our own that
routes like the Go and PHP SDKs (PROTOCOL.md §2.6) holds a worker link and a task link on each
gateway. Commands addressed by uniqId go to the gateway whose task address is the uniqId's first
12 hex characters; broadcast, topic publish and the queries go to every gateway, and the
answers of the queries are merged."""

from __future__ import annotations

from typing import Iterable

import netsvr_harness as h
from netsvr_harness import Cmd, pb
from test_commands_common import CMD

HOSTS = ("127.0.0.2", "127.0.0.3")  # one "machine" each, as in docs/CLUSTER.md


class ClusterBusiness:
    def __init__(self, gateways: list[h.Gateway]):
        self.gateways = gateways
        self.events = {gw.name: gw.business(events=7) for gw in gateways}
        # The SDK keys its task pools by hex(IPv4) + hex(port) of each configured task address.
        self.tasks = {gw.uniq_prefix: gw.task() for gw in gateways}

    def task_for(self, uniq_id: str) -> h.BusinessLink:
        link = self.tasks.get(uniq_id[:12] if len(uniq_id) == 28 else "")
        assert link is not None, f"no gateway for {uniq_id} (the SDK would drop the command)"
        return link

    def by_gateway(self, uniq_ids: Iterable[str]) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for u in uniq_ids:
            groups.setdefault(u[:12], []).append(u)
        return groups

    # ---- routed by uniqId ------------------------------------------------------------------

    def single_cast(self, uniq_id: str, data: bytes) -> None:
        self.task_for(uniq_id).send(CMD.SingleCast, pb.SingleCast(uniqId=uniq_id, data=data))

    def multicast(self, uniq_ids: list[str], data: bytes) -> None:
        for prefix, ids in self.by_gateway(uniq_ids).items():
            self.tasks[prefix].send(CMD.Multicast, pb.Multicast(uniqIds=ids, data=data))

    def subscribe(self, uniq_id: str, topics: list[str]) -> None:
        self.task_for(uniq_id).send(CMD.TopicSubscribe,
                                    pb.TopicSubscribe(uniqId=uniq_id, topics=topics))

    def check_online(self, uniq_ids: list[str]) -> set[str]:
        online: set[str] = set()
        for prefix, ids in self.by_gateway(uniq_ids).items():
            resp = self.tasks[prefix].request(CMD.CheckOnline, pb.CheckOnlineReq(uniqIds=ids),
                                              pb.CheckOnlineResp)
            online.update(resp.uniqIds)
        return online

    # ---- fanned out to every gateway ---------------------------------------------------------

    def broadcast(self, data: bytes) -> None:
        for link in self.tasks.values():
            link.send(CMD.Broadcast, pb.Broadcast(data=data))

    def publish(self, topics: list[str], data: bytes) -> None:
        for link in self.tasks.values():
            link.send(CMD.TopicPublish, pb.TopicPublish(topics=topics, data=data))

    def uniq_id_count(self) -> int:
        return sum(link.request(CMD.UniqIdCount, b"", pb.UniqIdCountResp).count
                   for link in self.tasks.values())

    def uniq_id_list(self) -> set[str]:
        out: set[str] = set()
        for link in self.tasks.values():
            out.update(link.request(CMD.UniqIdList, b"", pb.UniqIdListResp).uniqIds)
        return out

    def topic_count(self, topic: str) -> int:
        return sum(link.request(CMD.TopicUniqIdCount, pb.TopicUniqIdCountReq(topics=[topic]),
                                pb.TopicUniqIdCountResp).items.get(topic, 0)
                   for link in self.tasks.values())


def test_two_gateways_serve_as_one_cluster(gateway_factory, ws):
    gws = [gateway_factory({"Workers": 1}, name=f"gw{i}", host=host, start=False)
           for i, host in enumerate(HOSTS)]
    for gw in gws:
        gw.start()
    assert gws[0].uniq_prefix != gws[1].uniq_prefix
    biz = ClusterBusiness(gws)

    # Three clients on each gateway (a TCP load balancer would spread them so); each ConnOpen
    # arrives on the worker link of the gateway the client is on.
    clients: dict[str, h.WsClient] = {}
    owner: dict[str, h.Gateway] = {}
    for gw in gws:
        for i in range(3):
            tag = f"{gw.name}-{i}"
            c = h.open_client(gw, ws, f"c={tag}", biz.events[gw.name])
            assert c.uniq_id.startswith(gw.uniq_prefix), (c.uniq_id, gw.uniq_prefix)
            clients[c.uniq_id] = c
            owner[c.uniq_id] = gw
    uids = list(clients)

    # Unicast by prefix reaches the right gateway's client, and only there is it known.
    for u, c in clients.items():
        biz.single_cast(u, f"to {u}".encode())
    for u, c in clients.items():
        assert c.recv() == f"to {u}"
    for gw in gws:
        mine = [u for u in uids if owner[u] is gw]
        asked = biz.tasks[gw.uniq_prefix].request(CMD.CheckOnline, pb.CheckOnlineReq(uniqIds=uids),
                                                  pb.CheckOnlineResp)
        assert sorted(asked.uniqIds) == sorted(mine), "a gateway knows only its own clients"
    assert biz.check_online(uids) == set(uids)

    # Multicast over both gateways: grouped by prefix, one command per gateway.
    picked = [uids[0], uids[4], uids[5]]
    biz.multicast(picked, b"some")
    # Broadcast fans out: every client on both gateways. For the clients not picked above it is
    # the next message, so the multicast reached no one else.
    biz.broadcast(b"all")
    for u, c in clients.items():
        if u in picked:
            assert c.recv() == "some"
        assert c.recv() == "all"

    # Topic: subscribed by uniqId (routed), published to every gateway.
    room = [uids[1], uids[2], uids[3]]
    for u in room:
        biz.subscribe(u, ["room"])
    assert biz.topic_count("room") == 3
    biz.publish(["room"], b"in the room")
    biz.broadcast(b"marker")
    for u, c in clients.items():
        if u in room:
            assert c.recv() == "in the room"
        assert c.recv() == "marker"

    # Counts and lists merge over the gateways.
    assert biz.uniq_id_count() == 6
    assert biz.uniq_id_list() == set(uids)

    # A client leaving is reported by its own gateway.
    gone = uids[4]
    clients[gone].close()
    ev = biz.events[owner[gone].name].recv_matching(Cmd.ConnClose, pb.ConnClose,
                                                    lambda m: m.uniqId == gone)
    assert ev.uniqId == gone
    h.wait_for(lambda: biz.uniq_id_count() == 5, 5, message="the merged count to drop to 5")
