"""systemd's readiness protocol (Type=notify) without libsystemd (master/sd_notify.cpp): the
master sends READY=1 once every worker accepts and STOPPING=1 when it stops, as one datagram to
$NOTIFY_SOCKET, a path or an abstract name ('@')."""

from __future__ import annotations

import os
import socket

import pytest


@pytest.mark.parametrize("kind", ["path", "abstract"])
def test_ready_and_stopping_reach_notify_socket(gateway_factory, tmp_path, kind):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if kind == "path":
        name = str(tmp_path / "notify")
        sock.bind(name)
    else:
        name = f"@netsvr-test-notify-{os.getpid()}"
        sock.bind("\0" + name[1:])
    sock.settimeout(10)
    try:
        gw = gateway_factory(start=False)
        gw.start(env={"NOTIFY_SOCKET": name})
        ready = sock.recv(4096).decode()
        assert ready.split("\n")[0] == "READY=1"
        assert "STATUS=generation 1 serves" in ready.split("\n")
        gw.stop()
        assert sock.recv(4096).decode() == "STOPPING=1"
    finally:
        sock.close()
