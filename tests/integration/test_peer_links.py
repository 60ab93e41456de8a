"""Peer links between workers (DESIGN.md, issue 13 item 4): abstract unix sockets carry no file
permissions, so a worker accepts a peer link only from a process of its own user that the
control block lists as a worker or announcer of the instance. The shared-memory objects are
readable and writable by the owner only."""

import os
import socket
import stat
import struct

import netsvr_harness as h
from netsvr_harness import Cmd, pb

K_PEER_TASK = 1  # worker/peer_links.hpp


def peer_socket_names(gw) -> list[str]:
    names = []
    with open("/proc/net/unix") as f:
        for line in f:
            path = line.split()[-1] if len(line.split()) >= 8 else ""
            if path.startswith(f"@netsvr-{gw.instance}-peer"):
                names.append(path[1:])
    return sorted(set(names))


def forwarded_broadcast(data: bytes, sender_serial: int = 0) -> bytes:
    """A kPeerTask packet as a worker writes it: [u32 sender][u32 request id][cmd][Broadcast]."""
    task = struct.pack(">I", Cmd.Broadcast) + pb.Broadcast(data=data).SerializeToString()
    body = struct.pack(">II", sender_serial, 0) + task
    return struct.pack(">II", 4 + len(body), K_PEER_TASK) + body


def test_a_foreign_process_is_refused_on_a_peer_link(gateway, ws):
    biz = gateway.business(events=1)
    client = h.open_client(gateway, ws, "peer=1", biz)
    names = peer_socket_names(gateway)
    assert len(names) == gateway.workers, names
    for name in names:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect("\0" + name)
        try:  # the worker may have closed it already (then the write fails)
            sock.sendall(forwarded_broadcast(b"injected"))
        except (BrokenPipeError, ConnectionResetError):
            pass
        else:
            h.read_until_eof(sock, 5, name)  # the worker closes it without answering
        sock.close()
    h.wait_for(lambda: gateway.log_path.read_text().count(
        f"peer link: refused a connection from pid {os.getpid()} uid {os.geteuid()}") == len(names),
        message="a refusal logged by every worker")
    # Nothing was injected, and the workers still route between themselves.
    task = gateway.task()
    task.send(Cmd.Broadcast, pb.Broadcast(data=b"through the task port"))
    assert client.recv() == "through the task port"
    assert task.request(Cmd.UniqIdCount, b"", pb.UniqIdCountResp).count == 1


def test_shared_memory_objects_are_private_to_the_owner(gateway):
    files = gateway.shm_files()
    assert files, "no shared-memory objects found"
    for f in files:
        st = os.stat(f)
        assert stat.S_IMODE(st.st_mode) == 0o600, f"{f}: {oct(stat.S_IMODE(st.st_mode))}"
        assert st.st_uid == os.geteuid()
