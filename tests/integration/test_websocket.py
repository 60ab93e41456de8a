"""Websocket side: HTTP handshake (PROTOCOL §5), heartbeat (§6.5, §6.6), outbound opcode (§6.2)."""

import time

import pytest
import websockets.exceptions

import netsvr_harness as h
from netsvr_harness import Cmd, pb


@pytest.mark.parametrize("path", ["/", "/netsvr", "/some/other/path?x=1"])
def test_plain_http_get_answers_hello(gateway, path):
    status, _headers, body = h.http_request(
        gateway.customer_port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert status == 200
    assert body == b"Hello netsvr"


def test_upgrade_on_other_path_is_404(gateway, ws):
    with pytest.raises(websockets.exceptions.InvalidStatusCode) as ei:
        ws.connect(gateway.ws_url("/not-netsvr"))
    assert ei.value.status_code == 404


def test_never_opened_sockets_produce_no_events(gateway, ws):
    """DECISIONS #3: ConnOpen/ConnClose only for connections that completed open processing."""
    biz = gateway.business(events=7)
    h.http_request(gateway.customer_port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(websockets.exceptions.InvalidStatusCode):
        ws.connect(gateway.ws_url("/elsewhere"))
    biz.expect_silent(1.0)


def test_upgrade_with_query_string(gateway, ws):
    biz = gateway.business(events=1)
    query = "a=1&b=%26x+y&flag"
    c = ws.connect(gateway.ws_url(query=query))
    assert c.is_open
    ev = biz.recv_msg(Cmd.ConnOpen, pb.ConnOpen)
    assert ev.rawQuery == query  # raw, as sent (DECISIONS #1)
    assert ev.uniqId.startswith(gateway.uniq_prefix)


def test_heartbeat_string_is_not_echoed_nor_forwarded(gateway, ws):
    biz = gateway.business(events=7)
    c = ws.connect(gateway.ws_url(query="hb=1"))
    opened = biz.recv_msg(Cmd.ConnOpen, pb.ConnOpen)
    c.send(h.HEARTBEAT)
    c.send("normal text")
    tr = biz.recv_msg(Cmd.Transfer, pb.Transfer)
    assert tr.uniqId == opened.uniqId
    assert tr.data == b"normal text"
    c.expect_no_message(1.0)  # nothing echoed to the client
    biz.expect_silent(0.2)


def test_heartbeat_timeout_closes_silent_client_only(gateway_factory, ws):
    gw = gateway_factory({"Customer": {"HeartbeatInterval": "1s"}})
    silent = ws.connect(gw.ws_url(query="silent=1"))
    active = ws.connect(gw.ws_url(query="active=1"))
    t0 = time.monotonic()
    active.start_heartbeat(h.HEARTBEAT, 0.5)
    try:
        code, reason = silent.wait_closed(5.0)
        assert (code, reason) == (1001, "heartbeat timeout")
        # keep observing the active client until 5 s after opening
        remaining = 5.0 - (time.monotonic() - t0)
        if remaining > 0:
            time.sleep(remaining)  # the active client must stay open for this whole period
        assert active.is_open, f"active client closed: {active.ws.close_code} {active.ws.close_reason}"
    finally:
        active.stop_heartbeat()


def test_send_message_type_binary(gateway_factory, ws):
    gw = gateway_factory({"Customer": {"SendMessageType": 2}})
    biz = gw.business(events=1)
    c = h.open_client(gw, ws, "bin=1", biz)
    task = gw.task()
    task.send(Cmd.SingleCast, pb.SingleCast(uniqId=c.uniq_id, data=b"binary please"))
    msg = c.recv()
    assert isinstance(msg, bytes), f"expected a binary frame, got text {msg!r}"
    assert msg == b"binary please"


def test_send_message_type_text_by_default(gateway, ws):
    biz = gateway.business(events=1)
    c = h.open_client(gateway, ws, "txt=1", biz)
    task = gateway.task()
    task.send(Cmd.SingleCast, pb.SingleCast(uniqId=c.uniq_id, data=b"text please"))
    msg = c.recv()
    assert msg == "text please"
