"""A client that stays connected for longer than libwebsockets' own validity window.

lws 4.1 pings every connection 300 s after it opened and hangs up at 310 s unless lws itself
saw a PONG. Our reader takes the client's frames, so lws never does: every client was dropped
after 310 s, whatever it sent (worker/ws_server.cpp turns lws's checks off). Holding a client
for 320 s does not fit `make test`; `make long` runs it (NETSVR_LONG=1).
"""

from __future__ import annotations

import os
import time

import pytest

from ws_raw import OP_PING, OP_PONG, RawWs, frame

pytestmark = pytest.mark.skipif(os.environ.get("NETSVR_LONG") != "1",
                                reason="runs 320 s: make long (NETSVR_LONG=1)")

HOLD_S = 320  # past lws's 310 s hang-up


def test_a_client_outlives_the_lws_validity_window(gateway_factory):
    gw = gateway_factory({"Customer": {"HeartbeatInterval": "60s"}})
    c = RawWs(gw.customer_port)
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < HOLD_S:
        n += 1
        payload = f"alive {n}".encode()
        c.send(frame(OP_PING, payload))
        # The next frame must be our Pong: a Ping of lws's own, or a Close, fails here.
        c.expect(OP_PONG, payload)
        time.sleep(10)
    c.send(frame(OP_PING, b"last"))
    c.expect(OP_PONG, b"last")
    assert not c.eof
    c.close()
