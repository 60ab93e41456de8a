"""permessage-deflate through the real gateway (worker/pm_deflate, docs/COMPRESSION.md).

Raw-socket client from tests/unit/pm_deflate_probe_test.py: frames built by hand, so the RSV1
bit and the negotiated parameters are checked, not just what a client library hides.
Skipped while worker/ws_server.cpp does not register the extension yet.
"""

import asyncio
import os
import ssl
import subprocess
import sys
import time

import pytest

from netsvr_harness import Cmd, pb

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "unit"))
from pm_deflate_probe_test import Client, deflate, expect_closed, send_compressed  # noqa: E402

OFFER = "permessage-deflate; client_max_window_bits"
WANT = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


def _open(gw, biz, offer=OFFER):
    cl = Client(gw.customer_port, ext=offer, path="/netsvr")
    if offer and cl.ext is None:
        pytest.skip("worker/ws_server.cpp does not register worker/pm_deflate yet (docs/COMPRESSION.md)")
    opened = biz.recv_msg(Cmd.ConnOpen, pb.ConnOpen)
    return cl, opened.uniqId


def test_negotiated_roundtrip_and_rsv1(gateway_factory):
    gw = gateway_factory({"Customer": {"CompressionLevel": 6}})
    biz = gw.business(events=5)  # OnOpen | OnMessage
    cl, uid = _open(gw, biz)
    assert cl.ext == WANT
    task = gw.task()
    for data in (b"x" * 3077, b"short", os.urandom(5000).hex().encode(), b"z" * 300000):
        send_compressed(cl, data, pieces=3 if len(data) > 1000 else 1)
        assert biz.recv_msg(Cmd.Transfer, pb.Transfer).data == data
    for data, rsv in ((b"y" * 255, 0), (b"y" * 256, 0x40), (("text " * 2000).encode(), 0x40)):
        task.send(Cmd.SingleCast, pb.SingleCast(uniqId=uid, data=data))
        got_rsv, op, payload = cl.recv_message()
        assert (got_rsv, payload) == (rsv, data)
    cl.close()


@pytest.mark.parametrize("level", [-1, -2])
def test_negative_levels_negotiate_too(gateway_factory, level):
    """-1 (zlib's default) and -2 (Huffman only) enable compression like 1..9: such a connection
    goes through lws, not the gateway's own upgrade (docs/DESIGN.md, "The client edge")."""
    gw = gateway_factory({"Customer": {"CompressionLevel": level}})
    biz = gw.business(events=5)  # OnOpen | OnMessage
    cl = Client(gw.customer_port, ext=OFFER, path="/netsvr")
    assert cl.ext == WANT
    biz.recv_msg(Cmd.ConnOpen, pb.ConnOpen)
    send_compressed(cl, b"x" * 3077)
    assert biz.recv_msg(Cmd.Transfer, pb.Transfer).data == b"x" * 3077
    cl.close()


def test_level_zero_does_not_negotiate(gateway_factory):
    gw = gateway_factory({"Customer": {"CompressionLevel": 0}})
    biz = gw.business(events=5)  # OnOpen | OnMessage
    cl = Client(gw.customer_port, ext=OFFER, path="/netsvr")
    assert cl.ext is None
    biz.recv_msg(Cmd.ConnOpen, pb.ConnOpen)
    cl.send_frame(1, b"plain " * 100)
    assert biz.recv_msg(Cmd.Transfer, pb.Transfer).data == b"plain " * 100
    cl.close()


def test_bad_compressed_input_never_hurts_a_worker(gateway_factory):
    gw = gateway_factory({"Customer": {"CompressionLevel": 6, "ReceivePackLimit": 65536}})
    biz = gw.business(events=5)  # OnOpen | OnMessage
    workers = [w["pid"] for w in gw.status()["workers"]]
    # over the limit once inflated: 1009 as for an uncompressed message
    cl, _ = _open(gw, biz)
    send_compressed(cl, b"\0" * 10_000_000)
    expect_closed(cl, "zip bomb", code=1009)
    cl.close()
    # garbage, RSV1 where it must not be, data after BFINAL: the connection goes, nothing else
    for act in (lambda c: c.send_frame(1, os.urandom(3000), rsv=0x40),
                lambda c: c.send_frame(10, b"pong", rsv=0x40),
                lambda c: (c.send_frame(1, deflate(b"a" * 400)[:5], fin=False, rsv=0x40),
                           c.send_frame(0, b"\x00", fin=True, rsv=0x40)),
                lambda c: c.send_frame(2, deflate(b"abc", final=True) + b"\x01\x02", rsv=0x40)):
        cl, _ = _open(gw, biz)
        act(cl)
        expect_closed(cl, "bad input")
        cl.close()
    # and the workers still serve, quickly (no stall), the same processes as before
    cl, _ = _open(gw, biz)
    t = time.time()
    send_compressed(cl, b"x" * 3077)
    assert biz.recv_msg(Cmd.Transfer, pb.Transfer).data == b"x" * 3077
    assert time.time() - t < 2
    assert [w["pid"] for w in gw.status()["workers"]] == workers
    cl.close()


def test_wss_with_python_websockets(gateway_factory, tmp_path):
    """Over TLS, with a client library's own permessage-deflate (python-websockets 10.4)."""
    import websockets

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cp = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                         "-days", "1", "-keyout", str(key), "-out", str(cert)], capture_output=True, timeout=30)
    assert cp.returncode == 0
    gw = gateway_factory({"Customer": {"CompressionLevel": 6, "TLSCertFile": str(cert), "TLSKeyFile": str(key)}})
    biz = gw.business(events=5)  # OnOpen | OnMessage
    task = gw.task()
    ctx = ssl.create_default_context(cafile=str(cert))

    async def run():
        url = f"wss://127.0.0.1:{gw.customer_port}/netsvr"
        async with websockets.connect(url, ssl=ctx, server_hostname="localhost", max_size=2 ** 24) as c:
            if "permessage-deflate" not in (c.response_headers.get("Sec-WebSocket-Extensions") or ""):
                pytest.skip("worker/ws_server.cpp does not register worker/pm_deflate yet")
            uid = biz.recv_msg(Cmd.ConnOpen, pb.ConnOpen).uniqId
            for data in ("x" * 3077, "short", "y" * 300000):
                await c.send(data)
                assert biz.recv_msg(Cmd.Transfer, pb.Transfer).data == data.encode()
            reply = "secure compressed reply " * 200
            task.send(Cmd.SingleCast, pb.SingleCast(uniqId=uid, data=reply.encode()))
            assert await asyncio.wait_for(c.recv(), 5) == reply
    asyncio.run(run())
