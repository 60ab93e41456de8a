"""Out of file descriptors: the gateway pauses accepting instead of spinning on a listening
socket that stays readable (it used to retry accept(2) and log each EMFILE in a tight loop:
19 GB of log in 15 minutes of the 50,000-client bench under a 20,000 open-files limit), keeps
serving the clients it has, and accepts again once descriptors are free."""

from __future__ import annotations

import socket
import time

import netsvr_harness as h
from ws_raw import OP_PING, OP_PONG, RawWs, frame


def test_emfile_pauses_accepting_serves_the_rest_and_recovers(netsvr_bin, tmp_path):
    wrapper = tmp_path / "netsvr-lowfd"
    # 64 descriptors per process: the gateway's own (listeners, links, log, shared memory) and
    # room for a handful of clients (two descriptors each: lws's and our reader's).
    wrapper.write_text(f"#!/bin/sh\nexec prlimit --nofile=64:64 {netsvr_bin} \"$@\"\n")
    wrapper.chmod(0o755)
    gw = h.Gateway(str(wrapper), tmp_path, {"Workers": 1})
    gw.start()
    try:
        first = RawWs(gw.customer_port)
        # Far more sockets than descriptors: the kernel completes them into the listen backlog,
        # the worker runs out of descriptors accepting them.
        flood = []
        for _ in range(60):
            s = socket.create_connection(("127.0.0.1", gw.customer_port), timeout=5)
            flood.append(s)
        deadline = time.monotonic() + 10
        while "accepting again in" not in gw.log_path.read_text():
            assert time.monotonic() < deadline, "the worker never ran out of descriptors"
            time.sleep(0.1)
        time.sleep(2)  # four pauses of 500 ms at most
        refusals = gw.log_path.read_text().count("accept: ")
        assert refusals <= 12, f"{refusals} accept log lines in ~2 s: accepting spins"
        # the client it has is served all along
        first.send(frame(OP_PING, b"still here"))
        first.expect(OP_PONG, b"still here")
        for s in flood:
            s.close()
        # descriptors come back as the flood's sockets close: a new client gets in
        deadline = time.monotonic() + 10
        while True:
            try:
                late = RawWs(gw.customer_port)
                break
            except (AssertionError, OSError):
                assert time.monotonic() < deadline, "no new client was accepted after the flood"
                time.sleep(0.5)
        late.send(frame(OP_PING, b"late"))
        late.expect(OP_PONG, b"late")
        late.close()
        first.close()
    finally:
        gw.stop()
