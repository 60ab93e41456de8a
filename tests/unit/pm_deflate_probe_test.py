#!/usr/bin/python3
"""End-to-end checks of worker/pm_deflate against the real lws 4.1.6 on libuv.

Runs tests/unit/pm_deflate_probe_server (path in PMD_PROBE, default /tmp/pmd/probe) and talks
to it with raw sockets (frames built by hand, zlib for the payloads) and with python3-websockets.

    PMD_PROBE=/tmp/pmd/probe_asan /usr/bin/python3 tests/unit/pm_deflate_probe_test.py [--fuzz N]
"""
import asyncio
import base64
import json
import os
import random
import socket
import struct
import subprocess
import sys
import time
import zlib

PROBE = os.environ.get("PMD_PROBE", "/tmp/pmd/probe")
TRAILER = b"\x00\x00\xff\xff"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, level=6, limit=2097152, extra=()):
        self.port = free_port()
        self.proc = subprocess.Popen([PROBE, str(self.port), str(level), str(limit), *extra],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        line = self.proc.stdout.readline()
        assert line.startswith(b"ready"), line

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        self.proc.terminate()
        try:
            _, err = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return err.decode(errors="replace")


class Client:
    def __init__(self, port, ext="permessage-deflate; client_max_window_bits", timeout=5, path="/"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
        if ext is not None:
            req += f"Sec-WebSocket-Extensions: {ext}\r\n"
        self.sock.sendall((req + "\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            assert chunk, "closed during handshake"
            head += chunk
        head, self.buf = head.split(b"\r\n\r\n", 1)
        lines = head.decode().split("\r\n")
        assert lines[0].startswith("HTTP/1.1 101"), lines[0]
        self.headers = {}
        for l in lines[1:]:
            k, v = l.split(":", 1)
            self.headers[k.strip().lower()] = v.strip()
        self.ext = self.headers.get("sec-websocket-extensions")
        self.wbits = 15
        if self.ext and "server_max_window_bits=" in self.ext:
            self.wbits = int(self.ext.split("server_max_window_bits=")[1].split(";")[0])

    def send_frame(self, opcode, payload, fin=True, rsv=0):
        b0 = (0x80 if fin else 0) | rsv | opcode
        n = len(payload)
        if n < 126:
            hdr = struct.pack("!BB", b0, 0x80 | n)
        elif n < 65536:
            hdr = struct.pack("!BBH", b0, 0x80 | 126, n)
        else:
            hdr = struct.pack("!BBQ", b0, 0x80 | 127, n)
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload)) if n < 4096 else \
            (int.from_bytes(payload, "big") ^ int.from_bytes((mask * (n // 4 + 1))[:n], "big")).to_bytes(n, "big")
        self.sock.sendall(hdr + mask + masked)

    def send_raw(self, data):
        self.sock.sendall(data)

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self):
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._read(8))[0]
        return bool(b0 & 0x80), b0 & 0x70, b0 & 0x0F, self._read(n)

    def recv_message(self):
        """Returns (first frame's RSV bits, opcode, payload decompressed if RSV1)."""
        while True:
            fin, rsv, op, data = self.recv_frame()
            if op in (8, 9, 10):
                return rsv, op, data
            parts, first_rsv, first_op = [data], rsv, op
            while not fin:
                fin, rsv2, op2, data = self.recv_frame()
                assert op2 == 0 and rsv2 == 0
                parts.append(data)
            payload = b"".join(parts)
            if first_rsv & 0x40:
                d = zlib.decompressobj(-self.wbits)
                payload = d.decompress(payload + TRAILER)
            return first_rsv, first_op, payload

    def close(self):
        self.sock.close()


def deflate(data, wbits=15, final=False, level=6):
    c = zlib.compressobj(level, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_FINISH if final else zlib.Z_SYNC_FLUSH)
    if not final:
        assert out.endswith(TRAILER)
        out = out[:-4]
    return out


def send_compressed(cl, data, op=1, pieces=1, pong_between=False, empty_last=False, final=False):
    comp = deflate(data, final=final)
    cuts = sorted(random.sample(range(1, len(comp)), min(pieces - 1, max(len(comp) - 1, 0)))) if pieces > 1 else []
    frags = [comp[a:b] for a, b in zip([0] + cuts, cuts + [len(comp)])]
    if empty_last:
        frags.append(b"")
    for i, f in enumerate(frags):
        first, last = i == 0, i == len(frags) - 1
        cl.send_frame(op if first else 0, f, fin=last, rsv=0x40 if first else 0)
        if pong_between and not last:
            cl.send_frame(10, b"unsolicited pong")


def stats(port):
    cl = Client(port)
    cl.send_frame(1, b"!stats")
    _, _, payload = cl.recv_message()
    cl.close()
    return json.loads(payload)


def expect_echo(cl, data, label):
    t = time.time()
    rsv, op, payload = cl.recv_message()
    dt = time.time() - t
    assert payload == data, f"{label}: echo differs ({len(payload)} vs {len(data)})"
    assert op == 1, label
    if cl.ext:
        if len(data) >= 256 and len(deflate(data)) < len(data):
            assert rsv == 0x40, f"{label}: {len(data)} bytes sent without RSV1"
        if len(data) < 256:
            assert rsv == 0, f"{label}: {len(data)} bytes sent with RSV1"
    else:
        assert rsv == 0
    assert dt < 2, f"{label}: echo took {dt:.2f}s (stall?)"


def expect_closed(cl, label, code=None):
    try:
        while True:
            rsv, op, payload = cl.recv_message()
            if op == 8:
                if code is not None:
                    got = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                    assert got == code, f"{label}: close code {got}, wanted {code}"
                return
    except (ConnectionError, socket.timeout, OSError):
        assert code is None, f"{label}: dropped without close {code}"


def test_negotiation(srv):
    cases = [
        ("permessage-deflate; client_max_window_bits",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ("permessage-deflate",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ("permessage-deflate; server_no_context_takeover; client_no_context_takeover",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ("permessage-deflate; client_no_context_takeover; client_max_window_bits=10",
         "permessage-deflate; client_no_context_takeover; server_no_context_takeover"),
        ("permessage-deflate; server_max_window_bits=10",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10"),
        ("x-webkit-deflate-frame, permessage-deflate; client_max_window_bits",
         "permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
        ("permessage-deflate; server_max_window_bits=8", None),
        ("permessage-deflate; server_max_window_bits", None),
        ("permessage-deflate; foo=1", None),
        ("permessage-deflate; client_no_context_takeover=1", None),
        ("permessage-deflate; client_max_window_bits=99", None),
        (None, None),
    ]
    for offer, want in cases:
        cl = Client(srv.port, ext=offer)
        assert cl.ext == want, f"offer {offer!r}: got {cl.ext!r}, wanted {want!r}"
        data = ("negotiation " * 100).encode()
        if cl.ext:
            send_compressed(cl, data)
        else:
            cl.send_frame(1, data)
        expect_echo(cl, data, f"offer {offer!r}")
        cl.close()
    print("negotiation: ok")


def test_echo(srv):
    cl = Client(srv.port)
    rnd = random.Random(1)
    samples = [b"", b"hi", b"x" * 3077, b"y" * 255, b"y" * 256, os.urandom(300), os.urandom(70000),
               b"z" * 2000000, bytes(rnd.choice(b"abcdefgh ") for _ in range(300000))]
    for data in samples:
        send_compressed(cl, data)
        expect_echo(cl, data, f"compressed {len(data)}")
        cl.send_frame(1, data)  # an uncompressed message on a compressed connection
        expect_echo(cl, data, f"plain {len(data)}")
    for i in range(40):
        data = bytes(rnd.choice(b"abc xyz") for _ in range(rnd.randint(0, 40000)))
        send_compressed(cl, data, pieces=rnd.randint(1, 8), pong_between=rnd.random() < 0.5,
                        empty_last=rnd.random() < 0.3, final=rnd.random() < 0.2)
        expect_echo(cl, data, f"fragmented {i}")
    # a ping in the middle of a fragmented compressed message is answered, the message intact
    data = b"ping inside " * 500
    comp = deflate(data)
    cl.send_frame(1, comp[:100], fin=False, rsv=0x40)
    cl.send_frame(9, b"are you there")
    cl.send_frame(0, comp[100:], fin=True)
    rsv, op, payload = cl.recv_message()
    assert op == 10 and payload == b"are you there", (op, payload)
    expect_echo(cl, data, "ping inside")
    # the same compressed payload trickled one byte per TCP segment
    data = b"trickle " * 400
    comp = deflate(data)
    frame = bytearray([0xC1, 0x80 | 126]) + struct.pack("!H", len(comp)) + b"\0\0\0\0" + comp
    cl.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for b in frame:
        cl.send_raw(bytes([b]))
        time.sleep(0.0005)
    expect_echo(cl, data, "trickled")
    cl.close()
    print("echo: ok")


def test_window_bits(srv):
    cl = Client(srv.port, ext="permessage-deflate; server_max_window_bits=9")
    assert cl.wbits == 9, cl.ext
    data = os.urandom(200).hex().encode() * 50
    send_compressed(cl, data)
    expect_echo(cl, data, "window 9")  # recv_message inflates with a 9-bit window
    cl.close()
    print("server_max_window_bits: ok")


def test_bad_input(srv):
    cases = {
        "rsv1 on continuation": lambda cl: (cl.send_frame(1, deflate(b"a" * 300)[:5], fin=False, rsv=0x40),
                                            cl.send_frame(0, b"\x00", fin=True, rsv=0x40)),
        "rsv1 on pong": lambda cl: cl.send_frame(10, b"x", rsv=0x40),
        "garbage deflate": lambda cl: cl.send_frame(1, b"\xff" * 50, rsv=0x40),
        "data after BFINAL": lambda cl: cl.send_frame(1, deflate(b"abc", final=True) + b"\x12\x34", rsv=0x40),
        "rsv2": lambda cl: cl.send_frame(1, b"abc", rsv=0x20),
    }
    for label, act in cases.items():
        cl = Client(srv.port)
        act(cl)
        expect_closed(cl, label)
        cl.close()
        assert srv.alive(), label
    # over the limit: 1009, as for an uncompressed message
    cl = Client(srv.port)
    send_compressed(cl, b"\0" * (srv_limit + 1))
    expect_closed(cl, "zip bomb", code=1009)
    cl.close()
    cl = Client(srv.port)
    send_compressed(cl, b"\0" * 50_000_000, pieces=3)
    expect_closed(cl, "50 MB zip bomb", code=1009)
    cl.close()
    cl = Client(srv.port)
    data = b"q" * srv_limit  # exactly at the limit: accepted
    send_compressed(cl, data)
    expect_echo(cl, data, "at limit")
    cl.close()
    assert srv.alive()
    print("bad input: ok")


def test_fanout(srv):
    clients = [Client(srv.port) for _ in range(20)]
    time.sleep(0.2)
    before = stats(srv.port)
    text = ("fan-out payload " * 700).encode()
    clients[0].send_frame(1, b"!fan:" + text)
    for cl in clients:
        expect_echo(cl, text, "fan-out")
    after = stats(srv.port)
    # 20 writes of one message: deflated once (plus, maybe, the second !stats reply itself)
    assert after["deflated"] - before["deflated"] <= 2, (before, after)
    assert after["cacheHits"] - before["cacheHits"] >= 19, (before, after)
    for cl in clients:
        cl.close()
    print(f"fan-out: ok (20 writes: {after['deflated'] - before['deflated']} deflate(s) incl. a stats reply, "
          f"{after['cacheHits'] - before['cacheHits']} cache hits)")


def test_python_websockets(srv):
    import websockets

    async def run():
        async with websockets.connect(f"ws://127.0.0.1:{srv.port}/", max_size=2 ** 24) as ws:
            assert "client_no_context_takeover" in ws.response_headers["Sec-WebSocket-Extensions"]
            for data in ["x" * 3077, "y" * 2049, "short", os.urandom(10000).hex(), "z" * 1000000]:
                t = time.time()
                await ws.send(data)
                got = await asyncio.wait_for(ws.recv(), 5)
                assert got == data and time.time() - t < 2
            await ws.send(b"binary" * 1000)
            assert await ws.recv() == "binary" * 1000  # the probe echoes as text
    asyncio.run(run())
    print("python websockets 10.4: ok")


def test_without_hook():
    """ADD_HEADERS not forwarded: clients that did not offer client_no_context_takeover keep
    their compression context between messages, and the extension must follow them."""
    import websockets
    srv = Server(extra=("nohook",))
    try:
        async def run():
            async with websockets.connect(f"ws://127.0.0.1:{srv.port}/", max_size=2 ** 24) as ws:
                ext = ws.response_headers["Sec-WebSocket-Extensions"]
                assert "client_no_context_takeover" not in ext, ext
                for i in range(20):  # similar messages: later ones refer back to earlier ones
                    data = f"message {i} " + "the same long sentence again and again " * 40
                    await ws.send(data)
                    assert await asyncio.wait_for(ws.recv(), 5) == data
        asyncio.run(run())
        cl = Client(srv.port, ext="permessage-deflate; client_no_context_takeover")
        assert cl.ext == "permessage-deflate; client_no_context_takeover", cl.ext  # lws's echo only
        data = b"echoed " * 100
        send_compressed(cl, data)
        expect_echo(cl, data, "offered client_no_context_takeover, no hook")
        cl.close()
        s = stats(srv.port)
        assert s["inflatersLive"] == 0, s  # every connection above has closed
    finally:
        err = srv.stop()
        assert "ERROR" not in err and "runtime error" not in err, err
    print("without the ADD_HEADERS hook: ok")


def fuzz(srv, iterations):
    rnd = random.Random(int(os.environ.get("PMD_SEED", "7")))
    for i in range(iterations):
        cl = Client(srv.port, timeout=2)
        try:
          try:
            kind = rnd.random()
            if kind < 0.4:  # random bytes as the payload of an RSV1 frame, maybe fragmented
                for j in range(rnd.randint(1, 4)):
                    cl.send_frame(1 if j == 0 else 0, os.urandom(rnd.randint(0, 3000)),
                                  fin=rnd.random() < 0.5, rsv=0x40 if j == 0 else 0)
            elif kind < 0.7:  # a valid deflate stream with bytes flipped
                comp = bytearray(deflate(os.urandom(rnd.randint(0, 2000)).hex().encode()))
                for _ in range(rnd.randint(1, 5)):
                    if comp:
                        comp[rnd.randrange(len(comp))] ^= 1 << rnd.randrange(8)
                cl.send_frame(rnd.choice([1, 2]), bytes(comp), rsv=0x40)
            else:  # raw random bytes after the handshake
                cl.send_raw(os.urandom(rnd.randint(1, 5000)))
          except (ConnectionError, OSError):
            pass  # the server closed on bad input while we were still sending: fine
          # whatever happened, the server must answer or close, never hang or die
          try:
            cl.send_frame(1, b"!stats")
            cl.recv_message()
          except (ConnectionError, OSError, socket.timeout, AssertionError, struct.error, zlib.error):
            pass
        finally:
            cl.close()
        assert srv.alive(), f"server died at iteration {i}"
        if i % 200 == 0:
            probe = Client(srv.port)
            data = b"still alive " * 50
            send_compressed(probe, data)
            expect_echo(probe, data, "after fuzz")
            probe.close()
    print(f"fuzz: {iterations} connections, server alive")


srv_limit = 2097152

if __name__ == "__main__":
    n = int(sys.argv[sys.argv.index("--fuzz") + 1]) if "--fuzz" in sys.argv else 300
    srv = Server(level=6, limit=srv_limit)
    try:
        test_negotiation(srv)
        test_echo(srv)
        test_window_bits(srv)
        test_bad_input(srv)
        test_fanout(srv)
        test_python_websockets(srv)
        test_without_hook()
        fuzz(srv, n)
        print("stats:", stats(srv.port))
    finally:
        err = srv.stop()
        if "ERROR" in err or "runtime error" in err:
            print(err)
            sys.exit(1)
    print("all passed")
