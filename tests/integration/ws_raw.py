"""Raw websocket client for the conformance tests: no websocket library between the test and the
bytes. Frames are built and parsed here by hand (RFC 6455 §5.2)."""

from __future__ import annotations

import socket
import struct
import time
from typing import Optional

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
MASK = b"\x37\xfa\x21\x3d"

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


def upgrade_head(path: str = "/netsvr", extra: str = "", version: str = "13") -> bytes:
    return (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Version: {version}\r\n"
            f"Sec-WebSocket-Key: {KEY}\r\n{extra}\r\n").encode()


def frame(opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0, masked: bool = True,
          length: Optional[int] = None) -> bytes:
    """A client frame; `rsv` is the three RSV bits as a number (4 = RSV1)."""
    n = len(payload) if length is None else length
    out = bytearray([(0x80 if fin else 0) | (rsv << 4) | opcode])
    m = 0x80 if masked else 0
    if n < 126:
        out.append(m | n)
    elif n < 65536:
        out += bytes([m | 126]) + struct.pack(">H", n)
    else:
        out += bytes([m | 127]) + struct.pack(">Q", n)
    if masked:
        out += MASK
        out += bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    else:
        out += payload
    return bytes(out)


def fragments(opcode: int, data: bytes, size: int) -> bytes:
    """`data` as one message in frames of `size` payload bytes (the last may be shorter)."""
    parts = [data[i:i + size] for i in range(0, len(data), size)] or [b""]
    return b"".join(frame(opcode if i == 0 else OP_CONT, p, fin=i == len(parts) - 1)
                    for i, p in enumerate(parts))


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack(">H", code) + reason


class RawWs:
    """One TCP connection that has completed (or is attempting) the websocket upgrade."""

    def __init__(self, port: int, head: bytes = None, timeout: float = 5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = bytearray()
        self.eof = False
        self.sock.sendall(head if head is not None else upgrade_head())
        status = self._read_head(timeout)
        assert status.startswith(b"HTTP/1.1 101 "), f"upgrade refused: {status!r}"

    def _read_head(self, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
            assert not self.eof, f"closed during the handshake: {bytes(self.buf)!r}"
        end = self.buf.index(b"\r\n\r\n") + 4
        head = bytes(self.buf[:end])
        del self.buf[:end]
        return head

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out; unparsed bytes {bytes(self.buf[:200])!r}")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            return
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
        self.buf += chunk

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _parse(self):
        b = self.buf
        if len(b) < 2:
            return None
        assert not b[1] & 0x80, "the gateway must not mask its frames"
        n, at = b[1] & 0x7F, 2
        if n == 126:
            if len(b) < 4:
                return None
            n, at = struct.unpack(">H", b[2:4])[0], 4
        elif n == 127:
            if len(b) < 10:
                return None
            n, at = struct.unpack(">Q", b[2:10])[0], 10
        if len(b) < at + n:
            return None
        f = (bool(b[0] & 0x80), (b[0] >> 4) & 7, b[0] & 0x0F, bytes(b[at:at + n]))
        del b[:at + n]
        return f

    def recv_frame(self, timeout: float = 5.0):
        """(fin, rsv, opcode, payload) of the next frame from the gateway."""
        deadline = time.monotonic() + timeout
        while True:
            f = self._parse()
            if f is not None:
                return f
            assert not self.eof, f"connection closed; unparsed bytes {bytes(self.buf)!r}"
            self._fill(deadline)

    def expect(self, opcode: int, payload: bytes, timeout: float = 5.0) -> None:
        fin, rsv, op, data = self.recv_frame(timeout)
        assert (fin, rsv, op, data) == (True, 0, opcode, payload), \
            f"expected opcode {opcode} {payload[:60]!r}, got fin={fin} rsv={rsv} op={op} {data[:60]!r}"

    def expect_close(self, code: Optional[int], timeout: float = 5.0, eof_within: float = 1.0) -> str:
        """The gateway's Close frame (code checked unless None; empty payload if code is 0), then
        the TCP connection closed within `eof_within` seconds. Returns the reason."""
        fin, rsv, op, data = self.recv_frame(timeout)
        assert op == OP_CLOSE, f"expected a Close frame, got opcode {op} {data[:80]!r}"
        assert fin and rsv == 0
        if code == 0:
            assert data == b"", f"expected an empty Close payload, got {data!r}"
            reason = ""
        else:
            assert len(data) >= 2, f"Close frame without a status code: {data!r}"
            got = struct.unpack(">H", data[:2])[0]
            if code is not None:
                assert got == code, f"close code {got} ({data[2:]!r}), expected {code}"
            reason = data[2:].decode("utf-8")  # must be UTF-8 (RFC 6455 §5.5.1)
        self.expect_eof(eof_within)
        return reason

    def expect_eof(self, within: float = 1.0) -> None:
        deadline = time.monotonic() + within
        while not self.eof:
            f = self._parse()
            assert f is None, f"frame after the close: {f!r}"
            self._fill(deadline)
        assert not self.buf, f"bytes after the close frame: {bytes(self.buf)!r}"

    def expect_silent(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self._parse() is None, "unexpected frame"
            assert not self.eof, "connection closed"
            try:
                self._fill(deadline)
            except AssertionError:
                break
        assert not self.buf and not self.eof

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def raw_request(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Everything the gateway answers to `data` until it closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = bytearray()
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no close after {timeout}s: {bytes(out)!r}"
            s.settimeout(remaining)
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            out += chunk
        return bytes(out)
