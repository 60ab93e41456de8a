"""The two links a business holds to a netsvr gateway, in plain asyncio: a reference for writing
a business in any language (PROTOCOL.md §2-§4 says the same in prose).

Framing, both ports, both directions:   [u32 length][u32 cmd][protobuf body]   (big-endian;
length counts the cmd and the body, not itself). A heartbeat is a packet whose whole payload is
the configured HeartbeatMessage (no cmd); the gateway closes a link that stays silent for
ReadDeadline (120 s by default), so each link sends one every 30 s.

* WorkerLink: the worker port. Send Register{events}, read RegisterResp (always the first packet
  back), then read ConnOpen / ConnClose / Transfer events for as long as the link lives. When it
  drops (the gateway stopped or restarted), connect and register again after a short pause.
* TaskLink: the task port. Commands without an answer are just sent; a request/response command
  (TopicCustomerIdList, CheckOnline, ...) is answered by exactly one packet with the same cmd, in
  order, so one request at a time per link (a lock). A closed link is replaced before a command
  is written, and a failed send reconnects once and retries.

The protobuf modules are generated from proto/*.proto (`make build` writes them to
build/proto_py; NETSVR_PROTO_PY points elsewhere).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import struct
import sys
from pathlib import Path
from typing import Awaitable, Callable

_PROTO_DIR = os.environ.get("NETSVR_PROTO_PY") or str(
    Path(__file__).resolve().parents[2] / "build" / "proto_py")
sys.path.insert(0, _PROTO_DIR)
try:
    cmd_pb2 = importlib.import_module("cmd_pb2")
except ImportError:
    sys.exit(f"no protobuf modules in {_PROTO_DIR}: run `make build` first (or set NETSVR_PROTO_PY)")


def pb(name: str):
    """The message class `name`, from the module named after it (ConnOpen -> connOpen_pb2)."""
    return getattr(importlib.import_module(name[0].lower() + name[1:] + "_pb2"), name)


Cmd = cmd_pb2.Cmd  # Cmd.Value("TopicPublish") == 900002013
HEARTBEAT_EVERY = 30.0  # seconds; well under the gateway's ReadDeadline
RECONNECT_AFTER = 1.0   # seconds between connection attempts
log = logging.getLogger("netsvr_link")


def packet(cmd: str, message=None) -> bytes:
    body = message.SerializeToString() if message is not None else b""
    return struct.pack(">II", 4 + len(body), Cmd.Value(cmd)) + body


async def read_packet(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    (length,) = struct.unpack(">I", await reader.readexactly(4))
    payload = await reader.readexactly(length)
    return struct.unpack(">I", payload[:4])[0], payload[4:]


async def _heartbeat(writer: asyncio.StreamWriter, heartbeat: bytes) -> None:
    while True:
        await asyncio.sleep(HEARTBEAT_EVERY)
        writer.write(struct.pack(">I", len(heartbeat)) + heartbeat)
        await writer.drain()


class WorkerLink:
    """Receives the gateway's events. `handlers` maps "ConnOpen" / "ConnClose" / "Transfer" to
    async functions taking the decoded message."""

    def __init__(self, host: str, port: int, heartbeat: bytes,
                 handlers: dict[str, Callable[[object], Awaitable[None]]]):
        self.host, self.port, self.heartbeat, self.handlers = host, port, heartbeat, handlers
        self.registered = asyncio.Event()

    async def run_forever(self) -> None:
        while True:
            try:
                await self._session()
            except (OSError, asyncio.IncompleteReadError, ConnectionError) as e:
                log.warning("worker link to %s:%d lost (%s); reconnecting", self.host, self.port, e)
            self.registered.clear()
            await asyncio.sleep(RECONNECT_AFTER)

    async def _session(self) -> None:
        reader, writer = await asyncio.open_connection(self.host, self.port)
        beat = asyncio.create_task(_heartbeat(writer, self.heartbeat))
        try:
            events = 1 | 2 | 4  # OnOpen | OnClose | OnMessage
            writer.write(packet("Register", pb("RegisterReq")(events=events)))
            _cmd, body = await read_packet(reader)  # RegisterResp comes first, always
            resp = pb("RegisterResp").FromString(body)
            if resp.code != 0:
                raise ConnectionError(f"Register refused: {resp.message}")
            log.info("registered on %s:%d (connId %s)", self.host, self.port, resp.connId)
            self.registered.set()
            while True:
                cmd, body = await read_packet(reader)
                name = Cmd.Name(cmd)
                handler = self.handlers.get(name)
                if not handler:
                    continue
                try:
                    await handler(pb(name).FromString(body))
                except ConnectionError as e:  # the task link: this event's answer is lost
                    log.warning("%s not handled: %s", name, e)
                except Exception:  # a bug in one handler must not stop the events
                    log.exception("%s handler failed", name)
        finally:
            beat.cancel()
            writer.close()


class TaskLink:
    """Sends commands to the gateway."""

    def __init__(self, host: str, port: int, heartbeat: bytes):
        self.host, self.port, self.heartbeat = host, port, heartbeat
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.beat: asyncio.Task | None = None
        self.lock = asyncio.Lock()  # one request at a time: answers come back in order

    async def _connect(self) -> None:
        self.close()
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.beat = asyncio.create_task(_heartbeat(self.writer, self.heartbeat))

    def close(self) -> None:
        if self.beat:
            self.beat.cancel()
        if self.writer:
            self.writer.close()
        self.reader = self.writer = self.beat = None

    async def _exchange(self, data: bytes, answer: bool) -> bytes | None:
        for attempt in (1, 2):
            try:
                # A link the gateway closed (its worker drained and exited after a reload) is
                # replaced before writing: a command written to it would be lost without an error.
                if self.writer is None or self.reader.at_eof() or self.writer.is_closing():
                    await self._connect()
                self.writer.write(data)
                await self.writer.drain()
                return (await read_packet(self.reader))[1] if answer else None
            except (OSError, asyncio.IncompleteReadError, ConnectionError) as e:
                self.close()
                if attempt == 2:
                    raise ConnectionError(f"task link to {self.host}:{self.port}: {e}") from e
        return None

    async def send(self, cmd: str, message) -> None:
        """A command without an answer (SingleCast, TopicPublish, ConnInfoUpdate, ...)."""
        async with self.lock:
            await self._exchange(packet(cmd, message), answer=False)

    async def request(self, cmd: str, message, response: str):
        """A request/response command: returns the decoded `response` message."""
        async with self.lock:
            return pb(response).FromString(await self._exchange(packet(cmd, message), answer=True))
