"""The client edge, row by row: PROTOCOL.md §5.2 (handshake) and §6.1 (inbound frames), with
DECISIONS.md, against the real gateway and a registered business. Raw sockets only (ws_raw.py):
each case asserts the exact bytes that come back and that TCP is closed when it must be."""

from __future__ import annotations

import select
import time

import pytest

import netsvr_harness as h
from netsvr_harness import Cmd, pb
from test_commands_common import CMD
from ws_raw import (OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, RawWs, close_payload,
                    fragments, frame, raw_request, upgrade_head)


@pytest.fixture(scope="module")
def edge(netsvr_bin, tmp_path_factory):
    """One gateway (2 workers) with a business registered for every event, for the module."""
    gw = h.Gateway(netsvr_bin, tmp_path_factory.mktemp("conformance"),
                   {"Customer": {"ReceivePackLimit": 4096}})
    gw.start()
    biz = gw.business(events=7)
    task = gw.task()
    yield gw, biz, task
    biz.close()
    task.close()
    gw.stop()


_seq = 0


def open_raw(gw, biz, extra: str = "") -> tuple[RawWs, str]:
    """A raw client whose ConnOpen the business has seen; returns it and its uniqId."""
    global _seq
    _seq += 1
    tag = f"raw{_seq}"
    c = RawWs(gw.customer_port, upgrade_head(f"/netsvr?{tag}", extra))
    ev = biz.recv_matching(Cmd.ConnOpen, pb.ConnOpen, lambda m: m.rawQuery == tag)
    c.uniq_id = ev.uniqId
    return c, ev.uniqId


def expect_conn_close(biz, uniq_id: str) -> None:
    biz.recv_matching(Cmd.ConnClose, pb.ConnClose, lambda m: m.uniqId == uniq_id)


def expect_transfer(biz, uniq_id: str, data: bytes) -> None:
    m = biz.recv_matching(Cmd.Transfer, pb.Transfer, lambda m: m.uniqId == uniq_id)
    assert m.data == data


def answer_gateway_close(c: RawWs, biz, uid: str, payload: bytes) -> None:
    """The gateway's Close frame is `payload`; the client's answering Close gets no echo, the
    TCP connection is closed at once and the business gets the ConnClose."""
    fin, rsv, op, data = c.recv_frame()
    assert (op, data) == (OP_CLOSE, payload)
    c.send(frame(OP_CLOSE, close_payload(1000)))
    c.expect_eof(1.0)
    expect_conn_close(biz, uid)


def metrics(task) -> dict:
    return {k: v.count for k, v in task.request(CMD.Metrics, b"", pb.MetricsResp).items.items()}


# ---- §5.2: the handshake table ---------------------------------------------------------------

def _refusal(code: int, text: str, body: str, extra: str = "") -> bytes:
    return f"HTTP/1.1 {code} {text}\r\nConnection: close\r\n{extra}\r\n{body}".encode()


def _replace(head: bytes, old: str, new: str) -> bytes:
    assert old.encode() in head
    return head.replace(old.encode(), new.encode())


HANDSHAKE_ROWS = {
    "1 request line unparsable": (b"HELLO\r\n\r\n", _refusal(400, "Bad Request", "Bad Request")),
    "1 header without colon": (b"GET /netsvr HTTP/1.1\r\nHost x\r\n\r\n",
                               _refusal(400, "Bad Request", "Bad Request")),
    "2 POST with Upgrade": (upgrade_head().replace(b"GET ", b"POST "),
                            _refusal(405, "Method Not Allowed", "Method Not Allowed")),
    "2 POST without Upgrade": (b"POST /netsvr HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
                               _refusal(405, "Method Not Allowed", "Method Not Allowed")),
    "3 no Upgrade header": (b"GET /netsvr HTTP/1.1\r\nHost: x\r\n\r\n",
                            _refusal(200, "OK", "Hello netsvr")),
    "4 other path": (upgrade_head("/other"), _refusal(404, "Not Found", "Not Found")),
    "6 Upgrade not websocket": (_replace(upgrade_head(), "Upgrade: websocket", "Upgrade: h2c"),
                                _refusal(400, "Bad Request", "invalid Upgrade header")),
    "7 Connection without upgrade": (
        _replace(upgrade_head(), "Connection: Upgrade", "Connection: keep-alive"),
        _refusal(400, "Bad Request", "invalid Connection header")),
    "8 version 8": (upgrade_head(version="8"),
                    _refusal(426, "Upgrade Required", "Upgrade Required",
                             "Sec-WebSocket-Version: 13\r\n")),
    "8 no version": (_replace(upgrade_head(), "Sec-WebSocket-Version: 13\r\n", ""),
                     _refusal(426, "Upgrade Required", "Upgrade Required",
                              "Sec-WebSocket-Version: 13\r\n")),
    "9 extensions unparsable": (upgrade_head(extra="Sec-WebSocket-Extensions: ;;,\r\n"),
                                _refusal(400, "Bad Request",
                                         "invalid Sec-WebSocket-Extensions header")),
    "10 no key": (_replace(upgrade_head(), "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""),
                  _refusal(400, "Bad Request", "missing Sec-WebSocket-Key")),
}


@pytest.mark.parametrize("row", list(HANDSHAKE_ROWS))
def test_handshake_refusals(edge, row):
    gw, biz, _ = edge
    request, expected = HANDSHAKE_ROWS[row]
    assert raw_request(gw.customer_port, request) == expected  # the exact bytes, then EOF


def test_handshake_origin_row(gateway_factory):
    gw = gateway_factory({"Customer": {"AllowOrigin": ["example.com"]}})
    assert raw_request(gw.customer_port, upgrade_head()) == _refusal(403, "Forbidden", "Forbidden")
    ok = RawWs(gw.customer_port, upgrade_head(extra="Origin: https://www.example.com\r\n"))
    ok.close()


def test_handshake_head_in_pieces_and_decisions(edge):
    """A head that arrives a few bytes at a time is judged once complete; DECISIONS.md 1 (path
    only) and 2 (Connection token list) upgrade."""
    gw, biz, _ = edge
    head = _replace(upgrade_head("/netsvr?x=1"), "Connection: Upgrade",
                    "Connection: keep-alive, Upgrade")
    import socket
    with socket.create_connection(("127.0.0.1", gw.customer_port), timeout=5) as s:
        for i in range(0, len(head), 40):
            s.sendall(head[i:i + 40])
            time.sleep(0.01)
        got = s.recv(4096)
        assert got.startswith(b"HTTP/1.1 101 "), got
    biz.recv_matching(Cmd.ConnOpen, pb.ConnOpen, lambda m: m.rawQuery == "x=1")


def test_forwarding_headers_take_the_first_value(edge):
    gw, biz, _ = edge
    c = RawWs(gw.customer_port, upgrade_head(
        "/netsvr?fwd", "X-Forwarded-For: 10.0.0.1, 10.0.0.2\r\nX-Forwarded-For: 10.0.0.3\r\n"
        "X-Real-IP: 10.1.1.1\r\nX-Real-IP: 10.1.1.2\r\n"))
    ev = biz.recv_matching(Cmd.ConnOpen, pb.ConnOpen, lambda m: m.rawQuery == "fwd")
    assert ev.xForwardedFor == "10.0.0.1, 10.0.0.2"
    assert ev.xRealIp == "10.1.1.1"
    c.close()


# ---- §6.1: the frame table -------------------------------------------------------------------

VIOLATIONS = {
    "opcode 3": (frame(3, b"x"), 1002),
    "opcode 11": (frame(11, b"x"), 1002),
    "RSV1 without compression": (frame(OP_TEXT, b"x", rsv=4), 1002),
    "RSV2": (frame(OP_TEXT, b"x", rsv=2), 1002),
    "RSV3 on a ping": (frame(OP_PING, b"x", rsv=1), 1002),
    "data frame inside a message": (frame(OP_TEXT, b"a", fin=False) + frame(OP_TEXT, b"b"), 1002),
    "continuation without a message": (frame(OP_CONT, b"x"), 1002),
    "fragmented ping": (frame(OP_PING, b"x", fin=False), 1002),
    "fragmented close": (frame(OP_CLOSE, close_payload(1000), fin=False), 1002),
    "unmasked": (frame(OP_TEXT, b"hi", masked=False), 1002),
    "64-bit length with MSB": (bytes([0x81, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0]) + b"\1\2\3\4", 1002),
    "ping of 126 bytes": (frame(OP_PING, b"p" * 126), 1002),
    "close payload of 1 byte": (frame(OP_CLOSE, b"\x03"), 1002),
    "close payload of 126 bytes": (frame(OP_CLOSE, close_payload(1000, b"r" * 124)), 1002),
    "close code 999": (frame(OP_CLOSE, close_payload(999)), 1002),
    "close code 1005": (frame(OP_CLOSE, close_payload(1005)), 1002),
    "close code 1016": (frame(OP_CLOSE, close_payload(1016)), 1002),
    "close code 2999": (frame(OP_CLOSE, close_payload(2999)), 1002),
    "close reason not UTF-8": (frame(OP_CLOSE, close_payload(1000, b"\xff")), 1007),
    "text not UTF-8": (frame(OP_TEXT, b"ab\xc3\x28"), 1007),
    "fragmented text not UTF-8": (frame(OP_TEXT, b"\xce", fin=False) + frame(OP_CONT, b"\xff"),
                                  1007),
}


@pytest.mark.parametrize("case", list(VIOLATIONS))
def test_frame_violation_closes_at_once(edge, case):
    """The table's close code, TCP closed at once, a ConnClose, and nothing the client sent after
    the offending frame reaches the business (the text frame that follows it in the same write)."""
    gw, biz, _ = edge
    data, code = VIOLATIONS[case]
    c, uid = open_raw(gw, biz)
    c.send(frame(OP_TEXT, b"before") + data + frame(OP_TEXT, b"after"))
    t0 = time.monotonic()
    c.expect_close(code, eof_within=1.0)
    assert time.monotonic() - t0 < 1.0
    expect_transfer(biz, uid, b"before")
    expect_conn_close(biz, uid)
    with pytest.raises(h.LinkTimeout):
        biz.recv_matching(Cmd.Transfer, pb.Transfer, lambda m: m.uniqId == uid, timeout=0.3)


def test_violation_counts_as_a_close(edge):
    gw, biz, task = edge
    before = metrics(task)[2]
    c, uid = open_raw(gw, biz)
    c.send(frame(3, b""))
    c.expect_close(1002)
    expect_conn_close(biz, uid)
    h.wait_for(lambda: metrics(task)[2] >= before + 1, 3, message="metric 2 to count the close")


def test_valid_close_codes_are_echoed_once(edge):
    gw, biz, _ = edge
    for payload in (b"", close_payload(1000, b"bye"), close_payload(1015),
                    close_payload(3000, "π".encode()), close_payload(4999)):
        c, uid = open_raw(gw, biz)
        c.send(frame(OP_CLOSE, payload) + frame(OP_TEXT, b"after close"))
        fin, rsv, op, data = c.recv_frame()
        assert (op, data) == (OP_CLOSE, payload), f"echo of {payload!r}: {op} {data!r}"
        c.expect_eof(1.0)  # one echo, then the TCP close
        expect_conn_close(biz, uid)
        with pytest.raises(h.LinkTimeout):
            biz.recv_matching(Cmd.Transfer, pb.Transfer, lambda m: m.uniqId == uid, timeout=0.1)


def test_ping_pong_and_fragments_with_control_frames(edge):
    gw, biz, task = edge
    c, uid = open_raw(gw, biz)
    before = metrics(task)[3]
    c.send(frame(OP_PING, b"ping-payload"))
    c.expect(OP_PONG, b"ping-payload")
    c.send(frame(OP_PING))
    c.expect(OP_PONG, b"")
    h.wait_for(lambda: metrics(task)[3] >= before + 2, 3, message="metric 3 to count two pings")
    # a fragmented text with a ping and a pong between its fragments
    c.send(frame(OP_TEXT, b"Hel", fin=False) + frame(OP_PING, b"mid") + frame(OP_CONT, b"l",
           fin=False) + frame(OP_PONG, b"ignored") + frame(OP_CONT, "o κ".encode()))
    c.expect(OP_PONG, b"mid")
    expect_transfer(biz, uid, "Hello κ".encode())
    # binary fragments, and an empty text message
    c.send(frame(OP_BINARY, b"\x00\xff", fin=False) + frame(OP_CONT, b"\x80"))
    expect_transfer(biz, uid, b"\x00\xff\x80")
    c.send(frame(OP_TEXT, b""))
    expect_transfer(biz, uid, b"")
    c.close()


def test_gateway_close_is_not_echoed_back(edge):
    """After the gateway's own Close (ForceOffline), the client's answering Close ends the
    connection without a second Close frame."""
    gw, biz, task = edge
    c, uid = open_raw(gw, biz)
    task.send(CMD.ForceOffline, pb.ForceOffline(uniqIds=[uid]))
    answer_gateway_close(c, biz, uid, close_payload(1008, b"forceOffline"))


def test_message_limit_while_frames_arrive(edge):
    """ReceivePackLimit (4096 here) exactly is delivered; one byte more, in 1-byte frames, is
    closed with 1009 (DECISIONS.md 6)."""
    gw, biz, _ = edge
    c, uid = open_raw(gw, biz)
    c.send(fragments(OP_TEXT, b"a" * 4096, 1))
    expect_transfer(biz, uid, b"a" * 4096)
    c.send(fragments(OP_TEXT, b"a" * 4097, 1))
    answer_gateway_close(c, biz, uid, close_payload(1009, b"message too big"))


def test_pings_keep_a_client_alive_pongs_do_not(gateway_factory):
    """§6.1/§6.6: a Ping updates the last-active time; a Pong does not."""
    gw = gateway_factory({"Customer": {"HeartbeatInterval": "1s"}})
    pinger = RawWs(gw.customer_port)
    ponger = RawWs(gw.customer_port)
    # The ponger is closed once 2 whole seconds have passed (lastActive counts in 1 s steps), at
    # the next sweep (1 s apart): 3 s at worst. Meanwhile the pinger, pinging, must stay open.
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        pinger.send(frame(OP_PING, b"alive"))
        pinger.expect(OP_PONG, b"alive")
        if select.select([ponger.sock], [], [], 0)[0]:
            break  # the gateway has written to the ponger: its Close frame
        ponger.send(frame(OP_PONG, b"alive"))
        time.sleep(0.25)
    fin, rsv, op, data = ponger.recv_frame(0.5)
    assert (fin, rsv, op, data) == (True, 0, OP_CLOSE, b"\x03\xe9heartbeat timeout")
    # TCP ends 2 s after the Close frame at most (§6.8, checked at a sweep); the pinger, pinging
    # on, stays open all along
    eof_deadline = time.monotonic() + 3.5
    while not ponger.eof:
        assert time.monotonic() < eof_deadline, "the ponger's TCP connection is still open"
        pinger.send(frame(OP_PING, b"still"))
        pinger.expect(OP_PONG, b"still")
        try:
            ponger.expect_eof(0.25)
        except AssertionError as e:
            if "timed out" not in str(e):
                raise
    pinger.close()


def test_upper_case_uniq_id_names_no_connection(edge):
    """A uniqId is an exact string: another spelling of a connected id finds nothing."""
    gw, biz, task = edge
    c, uid = open_raw(gw, biz)
    upper = uid.upper()
    assert upper != uid
    task.send(CMD.SingleCast, pb.SingleCast(uniqId=upper, data=b"upper"))
    r = task.request(CMD.CheckOnline, pb.CheckOnlineReq(uniqIds=[upper]), pb.CheckOnlineResp)
    assert list(r.uniqIds) == []
    task.send(CMD.ForceOffline, pb.ForceOffline(uniqIds=[upper]))
    task.send(CMD.SingleCast, pb.SingleCast(uniqId=uid, data=b"exact"))
    c.expect(OP_TEXT, b"exact")  # the upper-case cast and force-offline did nothing
    c.close()


# ---- Autobahn mode (§12.2): an echo server --------------------------------------------------

@pytest.fixture(scope="module")
def echo(netsvr_bin, tmp_path_factory):
    gw = h.Gateway(netsvr_bin, tmp_path_factory.mktemp("autobahn"), {"Autobahn": True})
    gw.start()
    yield gw
    gw.stop()


def _utf8_cases():
    valid = ["", "Hello-µ@ßöäüàá-UTF-8!!", "κόσμε", "\U0001F600" * 3, "\U0010FFFF", "\u07FF\uFFFD"]
    invalid = [b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64",
               b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf4\x90\x80\x80", b"\xed\xa0\x80", b"\xff",
               b"\xce\xba\xe1\xbd"]
    return valid, invalid


def test_echo_sections_1_and_9_framing_and_sizes(echo):
    c = RawWs(echo.customer_port, upgrade_head("/anything"))  # Autobahn: any path
    for n in (0, 125, 126, 127, 128, 65535, 65536, 1 << 20):
        c.send(frame(OP_TEXT, b"*" * n))
        c.expect(OP_TEXT, b"*" * n)
        c.send(frame(OP_BINARY, b"\xfe" * n))
        c.expect(OP_BINARY, b"\xfe" * n)
    big = bytes(range(256)) * 4096  # 1 MiB in 64 KiB fragments (9.4)
    c.send(fragments(OP_BINARY, big, 65536))
    c.expect(OP_BINARY, big)
    c.close()


def test_echo_section_2_pings(echo):
    c = RawWs(echo.customer_port)
    c.send(frame(OP_PING))
    c.expect(OP_PONG, b"")
    c.send(frame(OP_PING, bytes(range(125))))
    c.expect(OP_PONG, bytes(range(125)))
    c.send(frame(OP_PONG, b"unsolicited") + b"".join(frame(OP_PING, b"%d" % i) for i in range(10)))
    for i in range(10):
        c.expect(OP_PONG, b"%d" % i)
    c.send(frame(OP_PING, b"x" * 126))
    c.expect_close(1002)


@pytest.mark.parametrize("rsv", range(1, 8))
def test_echo_section_3_reserved_bits(echo, rsv):
    c = RawWs(echo.customer_port)
    c.send(frame(OP_TEXT, b"small") + frame(OP_TEXT, b"bad", rsv=rsv) + frame(OP_PING, b"p"))
    c.expect(OP_TEXT, b"small")
    c.expect_close(1002)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
def test_echo_section_4_reserved_opcodes(echo, opcode):
    c = RawWs(echo.customer_port)
    c.send(frame(OP_TEXT, b"small") + frame(opcode, b"reserved") + frame(OP_PING, b"p"))
    c.expect(OP_TEXT, b"small")
    c.expect_close(1002)


def test_echo_section_5_fragmentation(echo):
    c = RawWs(echo.customer_port)
    c.send(frame(OP_TEXT, b"frag", fin=False) + frame(OP_CONT, b"ment", fin=False) +
           frame(OP_PING, b"between") + frame(OP_CONT, b"ed"))
    c.expect(OP_PONG, b"between")
    c.expect(OP_TEXT, b"fragmented")
    c.send(fragments(OP_TEXT, b"x" * 100, 1))
    c.expect(OP_TEXT, b"x" * 100)
    c.send(frame(OP_TEXT, b"", fin=False) + frame(OP_CONT, b"", fin=False) + frame(OP_CONT, b""))
    c.expect(OP_TEXT, b"")
    for bad in (frame(OP_PONG, b"p", fin=False), frame(OP_CONT, b"c", fin=True),
                frame(OP_CONT, b"c", fin=False) + frame(OP_TEXT, b"t"),
                frame(OP_TEXT, b"a", fin=False) + frame(OP_BINARY, b"b")):
        d = RawWs(echo.customer_port)
        d.send(bad)
        d.expect_close(1002)


def test_echo_section_6_utf8(echo):
    valid, invalid = _utf8_cases()
    c = RawWs(echo.customer_port)
    for text in valid:
        data = text.encode()
        c.send(frame(OP_TEXT, data))
        c.expect(OP_TEXT, data)
        # split at every byte: a code point may straddle fragments (6.2.3, 6.2.4)
        if 0 < len(data) <= 16:
            c.send(fragments(OP_TEXT, data, 1))
            c.expect(OP_TEXT, data)
    for data in invalid:
        d = RawWs(echo.customer_port)
        d.send(frame(OP_TEXT, data))
        d.expect_close(1007)


def test_echo_section_7_close_handling(echo):
    for payload, answer in ((b"", (OP_CLOSE, b"")),
                            (close_payload(1000), (OP_CLOSE, close_payload(1000))),
                            (close_payload(1000, b"x" * 123), (OP_CLOSE, close_payload(1000, b"x" * 123)))):
        c = RawWs(echo.customer_port)
        c.send(frame(OP_CLOSE, payload) + frame(OP_PING, b"after") + frame(OP_TEXT, b"after"))
        fin, rsv, op, data = c.recv_frame()
        assert (op, data) == answer
        c.expect_eof(1.0)  # nothing answered after the close
    for code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999):
        c = RawWs(echo.customer_port)
        c.send(frame(OP_CLOSE, close_payload(code)))
        fin, rsv, op, data = c.recv_frame()
        assert (op, data) == (OP_CLOSE, close_payload(code))
        c.expect_eof(1.0)
    for code in (0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999):
        c = RawWs(echo.customer_port)
        c.send(frame(OP_CLOSE, close_payload(code)))
        c.expect_close(1002)
    c = RawWs(echo.customer_port)
    c.send(frame(OP_CLOSE, close_payload(1000, b"\xce\xba\xe1\xbd")))
    c.expect_close(1007)
