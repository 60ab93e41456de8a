"""Test harness for the netsvr gateway integration tests.

Contents:
  * proto module loading (NETSVR_PROTO_PY, with a protoc fallback for development)
  * Gateway         -- writes a config with free ports, runs `netsvr start`, status/stop/kill
  * BusinessLink    -- a framed business connection to the worker or task port
  * WsLoop/WsClient -- websocket clients driven by an asyncio loop in a background thread,
                       with synchronous wrappers so tests can interleave them with BusinessLink
  * helpers         -- wait_for, free ports, pid checks, spreading clients over workers

Everything that waits does so on a real event with a timeout (no sleep-and-hope).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import websockets
import websockets.exceptions

REPO_ROOT = Path(__file__).resolve().parents[2]
HEARTBEAT = "~6YOt5rW35piO~"
HEARTBEAT_BYTES = HEARTBEAT.encode()
DEFAULT_TIMEOUT = 5.0

# --------------------------------------------------------------------------------------------
# protobuf modules
# --------------------------------------------------------------------------------------------


def _setup_proto_path() -> str:
    """Put the directory of generated *_pb2 modules on sys.path and return it.

    NETSVR_PROTO_PY wins; otherwise <repo>/build/proto_py; otherwise the .proto files of the
    repository are compiled with protoc into a temporary directory (development fallback).
    """
    cand = os.environ.get("NETSVR_PROTO_PY")
    if not cand:
        default = REPO_ROOT / "build" / "proto_py"
        if (default / "cmd_pb2.py").is_file():
            cand = str(default)
    if not cand:
        protoc = shutil.which("protoc")
        proto_dir = REPO_ROOT / "proto"
        protos = sorted(str(p) for p in proto_dir.glob("*.proto"))
        if not protoc or not protos:
            raise RuntimeError(
                "NETSVR_PROTO_PY is not set, build/proto_py does not exist and protoc or "
                f"{proto_dir}/*.proto is missing: cannot load the protobuf modules")
        cand = tempfile.mkdtemp(prefix="netsvr-proto-py-")
        subprocess.run([protoc, f"--proto_path={proto_dir}", f"--python_out={cand}", *protos],
                       check=True)
    if not Path(cand, "cmd_pb2.py").is_file():
        raise RuntimeError(f"protobuf module directory {cand!r} has no cmd_pb2.py")
    if cand not in sys.path:
        sys.path.insert(0, cand)
    return cand


PROTO_PY_DIR = _setup_proto_path()


class _Protos:
    """Lazy access: pb.ConnOpen -> connOpen_pb2.ConnOpen, pb.mod('cmd') -> cmd_pb2."""

    def mod(self, base: str):
        return importlib.import_module(base + "_pb2")

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        # message class named like its file with an upper-case first letter
        base = name[0].lower() + name[1:]
        module = self.mod(base)
        return getattr(module, name)


pb = _Protos()
cmd_pb2 = pb.mod("cmd")


class Cmd:
    """Cmd enum values (taken from the generated cmd_pb2, never hard-coded)."""

    ConnOpen = cmd_pb2.ConnOpen
    ConnClose = cmd_pb2.ConnClose
    Transfer = cmd_pb2.Transfer
    Broadcast = cmd_pb2.Broadcast
    Multicast = cmd_pb2.Multicast
    SingleCast = cmd_pb2.SingleCast
    Register = cmd_pb2.Register
    Unregister = cmd_pb2.Unregister
    UniqIdList = cmd_pb2.UniqIdList
    UniqIdCount = cmd_pb2.UniqIdCount
    CheckOnline = cmd_pb2.CheckOnline


def cmd_name(cmd: int) -> str:
    try:
        return cmd_pb2.Cmd.Name(cmd)
    except ValueError:
        return f"<unknown cmd {cmd}>"


# --------------------------------------------------------------------------------------------
# generic helpers
# --------------------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], Any], timeout: float = DEFAULT_TIMEOUT, interval: float = 0.02,
             message: str | Callable[[], str] = "condition") -> Any:
    """Poll predicate() until it returns a truthy value; return it. AssertionError on timeout.

    Exceptions raised by the predicate are remembered and reported on timeout."""
    deadline = time.monotonic() + timeout
    last_exc: Optional[BaseException] = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last_exc = None
        except Exception as e:  # noqa: BLE001 - reported on timeout
            last_exc = e
        if time.monotonic() >= deadline:
            msg = message() if callable(message) else message
            extra = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {msg}{extra}")
        time.sleep(interval)


def free_ports(n: int, host: str = "127.0.0.1") -> list[int]:
    """n distinct ports that were free a moment ago (bind port 0, read it, close)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((host, 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_accepts(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except (FileNotFoundError, ProcessLookupError):
        return False
    # state is the first field after the parenthesised comm
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def pid_ppid(pid: int) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read().decode(errors="replace")
    except FileNotFoundError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def nonexistent_pid() -> int:
    """A pid that no process currently has."""
    try:
        pid_max = int(Path("/proc/sys/kernel/pid_max").read_text().strip())
    except OSError:
        pid_max = 32768
    for pid in range(pid_max - 1, 300, -1):
        if not Path(f"/proc/{pid}").exists():
            return pid
    raise RuntimeError("no free pid found")


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def render_toml(cfg: dict) -> str:
    lines = []
    for k, v in cfg.items():
        if not isinstance(v, dict):
            lines.append(f"{k} = {toml_value(v)}")
    for k, v in cfg.items():
        if isinstance(v, dict):
            lines.append("")
            lines.append(f"[{k}]")
            for kk, vv in v.items():
                lines.append(f"{kk} = {toml_value(vv)}")
    return "\n".join(lines) + "\n"


def merge_config(base: dict, overrides: Optional[dict]) -> dict:
    """Per-section merge. A value of None deletes the key."""
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for k, v in (overrides or {}).items():
        if isinstance(v, dict):
            sect = out.setdefault(k, {})
            for kk, vv in v.items():
                if vv is None:
                    sect.pop(kk, None)
                else:
                    sect[kk] = vv
        elif v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


# --------------------------------------------------------------------------------------------
# Gateway process
# --------------------------------------------------------------------------------------------


class GatewayError(AssertionError):
    pass


_STATUS_WORKER_RE = re.compile(r"^worker\s+(.*)$")


def parse_status(text: str) -> dict:
    """Parse `netsvr status` output into
    {"instance": str, "master": int, "workers": [{"slot": int, "gen": int, "serial": int,
     "pid": int, "state": str, "clients": int, "links": int}, ...]} (workers sorted by slot)."""
    res: dict = {"instance": None, "master": None, "workers": []}
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("instance "):
            res["instance"] = line.split()[1]
        elif line.startswith("master "):
            res["master"] = int(line.split()[1])
        else:
            m = _STATUS_WORKER_RE.match(line)
            if m:
                w: dict = {}
                for kv in m.group(1).split():
                    if "=" not in kv:
                        continue
                    k, v = kv.split("=", 1)
                    w[k] = int(v) if re.fullmatch(r"-?\d+", v) else v
                res["workers"].append(w)
    res["workers"].sort(key=lambda w: w.get("slot", 0))
    return res


class Gateway:
    """One gateway instance in its own directory with its own config and free ports."""

    def __init__(self, binary: str, workdir: Path, overrides: Optional[dict] = None,
                 name: str = "gw", host: str = "127.0.0.1"):
        self.binary = str(binary)
        self.host = host  # every port listens there (127.0.0.2 ... for several gateways)
        self.dir = Path(workdir) / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.customer_port, self.worker_port, self.task_port = free_ports(3, host)
        base = {
            "Workers": 2,
            "LogLevel": "debug",
            "Customer": {
                "ListenAddress": f"{host}:{self.customer_port}",
                "HandlePattern": "/netsvr",
                "HeartbeatMessage": HEARTBEAT,
                "HeartbeatInterval": "120s",
                "MaxOnlineNum": 100000,
            },
            "Worker": {
                "ListenAddress": f"{host}:{self.worker_port}",
                "HeartbeatMessage": HEARTBEAT,
                "ReceivePackLimit": 65536,
            },
            "Task": {
                "ListenAddress": f"{host}:{self.task_port}",
                "HeartbeatMessage": HEARTBEAT,
                "ReceivePackLimit": 65536,
            },
            "Metrics": {"Item": list(range(1, 14))},
        }
        self.config = merge_config(base, overrides)
        self.config_path = self.dir / "netsvr.toml"
        self.log_path = self.dir / "netsvr.log"
        self.pid_file = self.dir / "netsvr.pid"
        self.proc: Optional[subprocess.Popen] = None
        self._log_fh = None
        self.instance: Optional[str] = None
        self.known_pids: set[int] = set()
        self.expected_exit = False  # set when a test deliberately stops/kills the gateway
        self._links: list[BusinessLink] = []
        self.write_config()

    # ---- config -----------------------------------------------------------------------------

    @property
    def workers(self) -> int:
        return int(self.config.get("Workers", 2))

    @property
    def heartbeat(self) -> bytes:
        return str(self.config["Customer"].get("HeartbeatMessage", HEARTBEAT)).encode()

    def write_config(self) -> None:
        self.config_path.write_text(render_toml(self.config))

    def ws_url(self, path: str = "/netsvr", query: Optional[str] = None) -> str:
        url = f"ws://{self.host}:{self.customer_port}{path}"
        if query is not None:
            url += "?" + query
        return url

    @property
    def uniq_prefix(self) -> str:
        """First 12 hex chars of every uniqId: hex(Task IPv4) + hex(Task port)."""
        return socket.inet_aton(self.host).hex() + "%04x" % self.task_port

    @property
    def conn_prefix(self) -> str:
        """First 12 hex chars of every connId: hex(Worker IPv4) + hex(Worker port)."""
        return socket.inet_aton(self.host).hex() + "%04x" % self.worker_port

    # ---- process control --------------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 15.0) -> subprocess.CompletedProcess:
        """Run `netsvr <args> -c FILE`. While it runs, the master (our child) is reaped as soon as
        it exits, as any supervisor would do: `stop` waits until the master is gone, and an
        unreaped master would stay a zombie."""
        p = subprocess.Popen([self.binary, *args, "-c", str(self.config_path)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=self.dir)
        deadline = time.monotonic() + timeout
        while p.poll() is None:
            if self.proc is not None:
                self.proc.poll()
            if time.monotonic() >= deadline:
                p.kill()
                out, err = p.communicate()
                raise subprocess.TimeoutExpired(p.args, timeout, out, err)
            time.sleep(0.005)
        out, err = p.communicate()
        return subprocess.CompletedProcess(p.args, p.returncode, out, err)

    def start(self, wait: bool = True, timeout: float = 10.0, env: Optional[dict] = None) -> "Gateway":
        """`env`: variables added to the master's environment."""
        assert self.proc is None, "already started"
        self._log_fh = open(self.log_path, "ab")
        self.proc = subprocess.Popen([self.binary, "start", "-c", str(self.config_path)],
                                     stdin=subprocess.DEVNULL, stdout=self._log_fh,
                                     stderr=subprocess.STDOUT, cwd=self.dir,
                                     start_new_session=True,
                                     env={**os.environ, **env} if env else None)
        self.known_pids.add(self.proc.pid)
        if wait:
            self.wait_ready(timeout)
        return self

    def start_expect_exit(self, timeout: float = 10.0) -> subprocess.CompletedProcess:
        """Run `netsvr start` expecting it to exit by itself; returns rc/stdout/stderr."""
        p = subprocess.Popen([self.binary, "start", "-c", str(self.config_path)],
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, cwd=self.dir,
                             start_new_session=True)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            out, err = p.communicate()
            raise GatewayError(
                f"`netsvr start` did not exit within {timeout}s (it was killed).\n"
                f"stderr:\n{err[-3000:]}")
        return subprocess.CompletedProcess(p.args, p.returncode, out, err)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status_raw(self, timeout: float = 5.0) -> subprocess.CompletedProcess:
        return self.cli("status", timeout=timeout)

    def status(self, timeout: float = 5.0) -> dict:
        cp = self.status_raw(timeout)
        if cp.returncode != 0:
            raise GatewayError(f"`netsvr status` exited {cp.returncode}: {cp.stderr.strip()}")
        st = parse_status(cp.stdout)
        if st["instance"]:
            self.instance = st["instance"]
        if st["master"]:
            self.known_pids.add(st["master"])
        for w in st["workers"]:
            if "pid" in w:
                self.known_pids.add(w["pid"])
        return st

    def worker_clients(self) -> dict[int, int]:
        return {w["slot"]: w.get("clients", 0) for w in self.status()["workers"]}

    def wait_ready(self, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        last = "no status yet"
        st = None
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                raise GatewayError(
                    f"gateway exited with {self.proc.returncode} during start-up\n"
                    + self.log_tail())
            try:
                cp = self.status_raw(timeout=2.0)
                if cp.returncode == 0:
                    st = parse_status(cp.stdout)
                    ws = st["workers"]
                    if len(ws) == self.workers and all(w.get("state") == "running" for w in ws):
                        break
                    last = cp.stdout.strip()
                else:
                    last = f"rc={cp.returncode} {cp.stderr.strip()}"
            except subprocess.TimeoutExpired:
                last = "`netsvr status` timed out"
            if time.monotonic() >= deadline:
                raise GatewayError(
                    f"gateway not ready after {timeout}s; last status: {last}\n" + self.log_tail())
            time.sleep(0.05)
        self.status()  # record instance and pids
        for port in (self.customer_port, self.worker_port, self.task_port):
            wait_for(lambda: port_accepts(port, self.host), max(0.5, deadline - time.monotonic()),
                     message=f"port {port} to accept connections")
        return st

    def stop(self, timeout: float = 15.0) -> subprocess.CompletedProcess:
        """`netsvr stop -c FILE`; also reaps the master. Returns the CLI's CompletedProcess."""
        self.expected_exit = True
        cp = self.cli("stop", timeout=timeout)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        return cp

    def kill(self) -> None:
        """SIGKILL the whole process group plus every pid seen in status."""
        self.expected_exit = True
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in list(self.known_pids):
            if pid_alive(pid) and self._is_ours(pid):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)

    def _is_ours(self, pid: int) -> bool:
        """Guard against pid reuse: only kill processes running our binary."""
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
        except OSError:
            return False
        return os.path.realpath(exe) == os.path.realpath(self.binary)

    def shm_files(self) -> list[str]:
        if not self.instance:
            return []
        return sorted(str(p) for p in Path("/dev/shm").glob(f"netsvr-{self.instance}-*"))

    def cleanup(self) -> list[str]:
        """Teardown: stop via CLI if still running, kill what is left, remove leftovers.
        Returns a list of problems noticed (for the teardown report)."""
        problems = []
        for link in self._links:
            link.close()
        if self.proc is not None and self.proc.poll() is not None and not self.expected_exit:
            problems.append(f"gateway master exited unexpectedly with {self.proc.returncode}")
        if self.running():
            try:
                cp = self.cli("stop", timeout=10)
                if cp.returncode != 0:
                    problems.append(f"teardown `netsvr stop` exited {cp.returncode}: "
                                    f"{cp.stderr.strip()}")
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                problems.append("teardown: gateway did not stop within 10 s; killed")
        self.kill()
        for f in self.shm_files():
            with contextlib.suppress(OSError):
                os.unlink(f)
        if self._log_fh:
            self._log_fh.close()
            self._log_fh = None
        return problems

    def log_tail(self, n: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return f"(no log at {self.log_path})"
        return f"--- last {min(n, len(lines))} lines of {self.log_path} ---\n" + "\n".join(lines[-n:])

    # ---- convenience -------------------------------------------------------------------------

    def business(self, events: Optional[int] = None, timeout: float = DEFAULT_TIMEOUT) -> "BusinessLink":
        """A link to the worker port; registered with `events` if given (asserting success)."""
        link = BusinessLink(self.worker_port, host=self.host, heartbeat=str(self.config["Worker"]["HeartbeatMessage"]).encode(),
                            timeout=timeout, name=f"{self.name}/worker")
        self._links.append(link)
        if events is not None:
            resp = link.register(events)
            assert resp.code == 0, f"register failed: {resp}"
            link.conn_id = resp.connId
        return link

    def task(self, timeout: float = DEFAULT_TIMEOUT) -> "BusinessLink":
        link = BusinessLink(self.task_port, host=self.host, heartbeat=str(self.config["Task"]["HeartbeatMessage"]).encode(),
                            timeout=timeout, name=f"{self.name}/task")
        self._links.append(link)
        return link


# --------------------------------------------------------------------------------------------
# Business link (worker / task port)
# --------------------------------------------------------------------------------------------


def read_until_eof(sock: socket.socket, timeout: float, name: str = "socket") -> bytes:
    """Everything the peer sends until it closes the socket (EOF or reset); fails after timeout."""
    deadline = time.monotonic() + timeout
    got = bytearray()
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"{name}: still open after {timeout}s (received {bytes(got[:100])!r})")
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(1 << 20)
        except socket.timeout:
            continue
        except (ConnectionResetError, ConnectionAbortedError):
            return bytes(got)
        if not chunk:
            return bytes(got)
        got += chunk


class LinkClosed(AssertionError):
    pass


class LinkTimeout(AssertionError):
    pass


class BusinessLink:
    """[u32 BE L][u32 BE cmd][protobuf] framing over a plain blocking socket."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = DEFAULT_TIMEOUT,
                 heartbeat: bytes = HEARTBEAT_BYTES, name: str = "link"):
        self.timeout = timeout
        self.heartbeat_bytes = heartbeat
        self.name = name
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = bytearray()
        self._stash: list[tuple[int, bytes]] = []
        self.closed = False
        self.conn_id: Optional[str] = None

    # ---- sending ------------------------------------------------------------------------------

    @staticmethod
    def frame(cmd: int, body: bytes = b"") -> bytes:
        return struct.pack(">II", 4 + len(body), cmd) + body

    def send(self, cmd: int, msg: Any = b"") -> None:
        body = msg if isinstance(msg, (bytes, bytearray)) else msg.SerializeToString()
        self.send_raw(self.frame(cmd, bytes(body)))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def heartbeat(self) -> None:
        self.send_raw(struct.pack(">I", len(self.heartbeat_bytes)) + self.heartbeat_bytes)

    # ---- receiving ----------------------------------------------------------------------------

    def _fill(self, n: int, deadline: float) -> None:
        while len(self._buf) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LinkTimeout(f"{self.name}: no complete packet within the timeout "
                                  f"({len(self._buf)} bytes buffered)")
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as e:
                self.closed = True
                raise LinkClosed(f"{self.name}: connection reset ({e})")
            if not chunk:
                self.closed = True
                raise LinkClosed(f"{self.name}: connection closed by the gateway "
                                 f"({len(self._buf)} bytes buffered)")
            self._buf += chunk

    def recv(self, timeout: Optional[float] = None) -> tuple[int, bytes]:
        """Next packet as (cmd, body)."""
        if self._stash:
            return self._stash.pop(0)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        self._fill(4, deadline)
        (length,) = struct.unpack_from(">I", self._buf, 0)
        self._fill(4 + length, deadline)
        payload = bytes(self._buf[4:4 + length])
        del self._buf[:4 + length]
        if length < 4:
            raise AssertionError(f"{self.name}: gateway sent a packet with L={length} < 4: {payload!r}")
        (cmd,) = struct.unpack_from(">I", payload, 0)
        return cmd, payload[4:]

    def recv_msg(self, expected_cmd: int, cls, timeout: Optional[float] = None):
        cmd, body = self.recv(timeout)
        assert cmd == expected_cmd, (f"{self.name}: expected {cmd_name(expected_cmd)}, got "
                                     f"{cmd_name(cmd)} body={body[:200]!r}")
        msg = cls()
        msg.ParseFromString(body)
        return msg

    def recv_matching(self, cmd: int, cls, predicate: Callable[[Any], bool] = lambda m: True,
                      timeout: Optional[float] = None):
        """Wait for a packet with `cmd` whose decoded message satisfies predicate. Packets that do
        not match are kept (in order) and returned by later recv() calls."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        skipped: list[tuple[int, bytes]] = []
        # look through already stashed packets first
        for i, (c, b) in enumerate(self._stash):
            if c == cmd:
                m = cls()
                m.ParseFromString(b)
                if predicate(m):
                    del self._stash[i]
                    return m
        pending = self._stash
        self._stash = []
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise LinkTimeout(f"{self.name}: no matching {cmd_name(cmd)} within timeout; "
                                      f"other packets: {[cmd_name(c) for c, _ in skipped]}")
                c, b = self.recv(remaining)
                if c == cmd:
                    m = cls()
                    m.ParseFromString(b)
                    if predicate(m):
                        return m
                skipped.append((c, b))
        finally:
            self._stash = pending + skipped + self._stash

    def request(self, cmd: int, msg: Any, resp_cls, timeout: Optional[float] = None):
        """Task-port request/response: the response carries the same cmd."""
        self.send(cmd, msg)
        return self.recv_msg(cmd, resp_cls, timeout)

    def register(self, events: int, timeout: Optional[float] = None):
        req = pb.RegisterReq(events=events)
        resp = self.request(Cmd.Register, req, pb.RegisterResp, timeout)
        if resp.code == 0:
            self.conn_id = resp.connId
        return resp

    def expect_silent(self, timeout: float = 1.0) -> None:
        """Assert that no packet arrives (and the link is not closed) within timeout."""
        assert not self._stash, f"{self.name}: unexpected packets {[cmd_name(c) for c, _ in self._stash]}"
        try:
            cmd, body = self.recv(timeout)
        except LinkTimeout:
            return
        raise AssertionError(f"{self.name}: expected silence, got {cmd_name(cmd)} body={body[:200]!r}")

    def expect_closed(self, timeout: float = DEFAULT_TIMEOUT, allow_data: bool = False) -> bytes:
        """Wait until the gateway closes the link. Returns bytes received meanwhile; unless
        allow_data, any byte received is a failure."""
        got = bytes(self._buf) + read_until_eof(self.sock, timeout, self.name)
        self._buf.clear()
        self.closed = True
        if not allow_data:
            assert not got, f"{self.name}: gateway sent {bytes(got[:100])!r} before closing"
        return bytes(got)

    def is_open(self, timeout: float = 0.05) -> bool:
        """Non-destructive check: link has not been closed by the peer (no data consumed)."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(1, socket.MSG_PEEK)
        except socket.timeout:
            return True
        except OSError:
            return False
        return bool(data)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def collect_from_links(links: Iterable[BusinessLink], cmd: int, cls, total: int,
                       timeout: float = DEFAULT_TIMEOUT) -> dict[BusinessLink, list]:
    """Read `total` packets of `cmd` spread over several links (any other packet fails)."""
    links = list(links)
    got: dict[BusinessLink, list] = {l: [] for l in links}
    deadline = time.monotonic() + timeout
    while sum(len(v) for v in got.values()) < total:
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"only {sum(len(v) for v in got.values())}/{total} {cmd_name(cmd)} packets "
                f"within {timeout}s: {[len(v) for v in got.values()]}")
        for l in links:
            try:
                c, b = l.recv(0.02)
            except LinkTimeout:
                continue
            assert c == cmd, f"{l.name}: expected {cmd_name(cmd)}, got {cmd_name(c)}"
            m = cls()
            m.ParseFromString(b)
            got[l].append(m)
    return got


# --------------------------------------------------------------------------------------------
# websocket clients (asyncio loop in a background thread, synchronous wrappers)
# --------------------------------------------------------------------------------------------


class WsLoop:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="ws-loop", daemon=True)
        self._thread.start()
        self.clients: list[WsClient] = []

    def run(self, coro, timeout: float = DEFAULT_TIMEOUT + 5):
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except TimeoutError:
            fut.cancel()
            raise

    async def _connect(self, url: str, headers: Optional[dict], timeout: float, **kw):
        return await websockets.connect(url, extra_headers=headers, open_timeout=timeout,
                                        ping_interval=None, close_timeout=3, compression=None,
                                        max_queue=None, **kw)

    def connect(self, url: str, headers: Optional[dict] = None, timeout: float = DEFAULT_TIMEOUT,
                **kw) -> "WsClient":
        ws = self.run(self._connect(url, headers, timeout, **kw), timeout + 1)
        c = WsClient(self, ws, url)
        self.clients.append(c)
        return c

    def connect_many(self, urls: list[str], headers: Optional[dict] = None,
                     timeout: float = DEFAULT_TIMEOUT) -> list["WsClient"]:
        """Open several clients concurrently."""
        async def go():
            return await asyncio.gather(*(self._connect(u, headers, timeout) for u in urls))
        wss = self.run(go(), timeout + 2)
        out = [WsClient(self, ws, u) for ws, u in zip(wss, urls)]
        self.clients.extend(out)
        return out

    def recv_all(self, clients: list["WsClient"], timeout: float = DEFAULT_TIMEOUT) -> list:
        """One message from each client, concurrently."""
        async def go():
            return await asyncio.gather(*(asyncio.wait_for(c.ws.recv(), timeout) for c in clients),
                                        return_exceptions=True)
        res = self.run(go(), timeout + 2)
        for c, r in zip(clients, res):
            if isinstance(r, BaseException):
                raise AssertionError(f"client {c.url}: no message within {timeout}s ({r!r})")
        return res

    def close(self) -> None:
        async def close_all():
            await asyncio.gather(*(c.ws.close() for c in self.clients), return_exceptions=True)
        with contextlib.suppress(Exception):
            self.run(close_all(), 10)
        for t in asyncio.all_tasks(self.loop) if not self.loop.is_closed() else []:
            self.loop.call_soon_threadsafe(t.cancel)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self.loop.close()


class WsClient:
    def __init__(self, pool: WsLoop, ws, url: str):
        self.pool = pool
        self.ws = ws
        self.url = url
        self.uniq_id: Optional[str] = None
        self.slot: Optional[int] = None
        self.query: Optional[str] = url.split("?", 1)[1] if "?" in url else None
        self._hb_future = None

    def send(self, data) -> None:
        self.pool.run(self.ws.send(data))

    def recv(self, timeout: float = DEFAULT_TIMEOUT):
        async def go():
            return await asyncio.wait_for(self.ws.recv(), timeout)
        try:
            return self.pool.run(go(), timeout + 2)
        except asyncio.TimeoutError:
            raise AssertionError(f"client {self.url}: no message within {timeout}s") from None

    def expect_no_message(self, timeout: float = 1.0) -> None:
        async def go():
            try:
                return await asyncio.wait_for(self.ws.recv(), timeout)
            except asyncio.TimeoutError:
                return None
        msg = self.pool.run(go(), timeout + 2)
        assert msg is None, f"client {self.url}: unexpected message {msg!r}"

    def wait_closed(self, timeout: float = DEFAULT_TIMEOUT) -> tuple[int, str]:
        """Wait until the connection is closed; return (close code, reason)."""
        async def go():
            await asyncio.wait_for(self.ws.wait_closed(), timeout)
        try:
            self.pool.run(go(), timeout + 2)
        except asyncio.TimeoutError:
            raise AssertionError(f"client {self.url}: still open after {timeout}s") from None
        return self.ws.close_code, self.ws.close_reason

    @property
    def is_open(self) -> bool:
        return self.ws.open

    def close(self, code: int = 1000, reason: str = "") -> None:
        self.pool.run(self.ws.close(code, reason))

    def start_heartbeat(self, message: str = HEARTBEAT, interval: float = 0.5) -> None:
        async def beat():
            with contextlib.suppress(websockets.exceptions.ConnectionClosed, asyncio.CancelledError):
                while True:
                    await self.ws.send(message)
                    await asyncio.sleep(interval)
        self._hb_future = asyncio.run_coroutine_threadsafe(beat(), self.pool.loop)

    def stop_heartbeat(self) -> None:
        if self._hb_future is not None:
            self._hb_future.cancel()
            self._hb_future = None


# --------------------------------------------------------------------------------------------
# composite helpers
# --------------------------------------------------------------------------------------------


def open_client(gw: Gateway, pool: WsLoop, query: Optional[str] = None,
                business: Optional[BusinessLink] = None, headers: Optional[dict] = None,
                timeout: float = DEFAULT_TIMEOUT) -> WsClient:
    """Open one client on /netsvr; if a business registered for OnOpen is given, wait for its
    ConnOpen (matched by rawQuery, which should be unique) and store the uniqId on the client."""
    c = pool.connect(gw.ws_url(query=query), headers=headers, timeout=timeout)
    if business is not None:
        assert query, "a unique query is needed to match the ConnOpen event"
        ev = business.recv_matching(Cmd.ConnOpen, pb.ConnOpen, lambda m: m.rawQuery == query, timeout)
        c.uniq_id = ev.uniqId
    return c


_client_seq = 0


def next_tag(prefix: str = "cid") -> str:
    global _client_seq
    _client_seq += 1
    return f"{prefix}={os.getpid()}-{_client_seq}"


def open_spread(gw: Gateway, pool: WsLoop, business: Optional[BusinessLink] = None,
                min_total: int = 2, cap: int = 64, timeout: float = DEFAULT_TIMEOUT) -> list[WsClient]:
    """Open clients one at a time until every worker has at least one (per `netsvr status`) and
    at least min_total clients are open. Each client gets .slot (the worker it landed on, found
    from the change of the per-worker client counts) and, with a business, .uniq_id."""
    clients: list[WsClient] = []
    before = gw.worker_clients()
    for _ in range(cap):
        c = open_client(gw, pool, next_tag(), business, timeout=timeout)
        expected_total = sum(before.values()) + 1
        after = wait_for(
            lambda: (lambda wc: wc if sum(wc.values()) == expected_total else None)(gw.worker_clients()),
            timeout,
            message=lambda: (f"`netsvr status` to count {expected_total} clients "
                             f"(now {gw.worker_clients()})"))
        grown = [s for s in after if after[s] > before.get(s, 0)]
        assert len(grown) == 1, f"client count changed on {grown}: {before} -> {after}"
        c.slot = grown[0]
        clients.append(c)
        before = after
        if len(clients) >= min_total and all(v > 0 for v in after.values()) and len(after) == gw.workers:
            return clients
    raise AssertionError(
        f"after {cap} clients not every worker has one: per-worker clients {before} "
        "(the kernel's SO_REUSEPORT hashing never picked a worker, or status does not count)")


def http_request(port: int, raw_head: str, timeout: float = DEFAULT_TIMEOUT,
                 host: str = "127.0.0.1") -> tuple[int, dict, bytes]:
    """Send a raw HTTP request head; return (status, headers lower-cased, body). The body is
    read up to Content-Length if given, else until the server closes the connection."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(raw_head.encode())
        data = bytearray()
        head_end = -1
        clen = None
        while True:
            if head_end < 0:
                head_end = data.find(b"\r\n\r\n")
                if head_end >= 0:
                    head = data[:head_end].decode("latin-1")
                    m = re.search(r"(?im)^content-length:\s*(\d+)\s*$", head)
                    clen = int(m.group(1)) if m else None
            if head_end >= 0 and clen is not None and len(data) >= head_end + 4 + clen:
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"HTTP response incomplete after {timeout}s: {bytes(data[:300])!r}")
            s.settimeout(remaining)
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    assert head_end >= 0, f"no complete HTTP response head: {bytes(data[:300])!r}"
    lines = data[:head_end].decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    assert m, f"bad status line {lines[0]!r}"
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            k, v = line.split(":", 1)
            headers.setdefault(k.strip().lower(), v.strip())
    body = bytes(data[head_end + 4:])
    if clen is not None:
        body = body[:clen]
    return int(m.group(1)), headers, body
