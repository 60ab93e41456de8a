"""Helpers shared by the load-tool tests (test_tools.py) and the benchmark (bench.py).

  * Gateway -- a netsvr instance in its own directory: generated config on free ports, start,
               status, stop; CPU (utime/stime) and memory (RSS + shared memory) of its processes
  * Tool    -- a netsvr-loadgen / netsvr-bizsim process whose output lines are watched
  * tool paths: the tools sit beside the gateway binary (NETSVR_BIN)
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Optional

HEARTBEAT = "~6YOt5rW35piO~"
CLK_TCK = os.sysconf("SC_CLK_TCK")
REPO_ROOT = Path(__file__).resolve().parents[2]


def gateway_binary() -> str:
    return os.path.abspath(os.environ.get("NETSVR_BIN") or str(REPO_ROOT / "build" / "netsvr"))


def tool_path(name: str, gateway_bin: Optional[str] = None) -> str:
    """netsvr-loadgen / netsvr-bizsim, next to the gateway binary."""
    return str(Path(gateway_bin or gateway_binary()).parent / name)


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    raise TypeError(v)


def render_toml(cfg: dict) -> str:
    out = [f"{k} = {_toml(v)}" for k, v in cfg.items() if not isinstance(v, dict)]
    for k, v in cfg.items():
        if isinstance(v, dict):
            out += ["", f"[{k}]"] + [f"{kk} = {_toml(vv)}" for kk, vv in v.items()]
    return "\n".join(out) + "\n"


def proc_cpu(pid: int) -> tuple[float, float, float]:
    """(utime, stime, runtime) of a process in seconds. utime/stime come from /proc/<pid>/stat
    in clock ticks (10 ms here, split by sampling); runtime is the exact CPU time of all its
    threads from /proc/<pid>/task/*/schedstat (ns). Use runtime for totals, the ticks for the
    user/system split."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime/stime are fields 14/15
    runtime_ns = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                runtime_ns += int(f.read().split()[0])
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK, runtime_ns / 1e9


def proc_status_kib(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def sum_cpu(pids) -> tuple[float, float, float]:
    total = [0.0, 0.0, 0.0]
    for pid in pids:
        with contextlib.suppress(OSError):
            total = [a + b for a, b in zip(total, proc_cpu(pid))]
    return total[0], total[1], total[2]


class Gateway:
    """One gateway in `workdir` with Workers=`workers` and free ports (env: extra environment)."""

    def __init__(self, binary: str, workdir: Path, workers: int = 2, env: Optional[dict] = None):
        self.binary = binary
        self.env = {**os.environ, **env} if env else None
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.customer_port, self.worker_port, self.task_port = free_ports(3)
        cfg = {
            "Workers": workers,
            "LogLevel": "warn",
            "LogFile": "netsvr.log",
            "PidFile": "netsvr.pid",
            "Customer": {
                "ListenAddress": f"127.0.0.1:{self.customer_port}",
                "HandlePattern": "/netsvr",
                "HeartbeatMessage": HEARTBEAT,
                "HeartbeatInterval": "120s",
                "MaxOnlineNum": 0,
            },
            "Worker": {"ListenAddress": f"127.0.0.1:{self.worker_port}", "HeartbeatMessage": HEARTBEAT},
            "Task": {"ListenAddress": f"127.0.0.1:{self.task_port}", "HeartbeatMessage": HEARTBEAT},
            "Metrics": {"Item": list(range(1, 14))},
        }
        self.workers = workers
        self.config = cfg
        self.config_path = self.dir / "netsvr.toml"
        self.config_path.write_text(render_toml(cfg))
        self.proc: Optional[subprocess.Popen] = None
        self.instance: Optional[str] = None
        self.master: Optional[int] = None
        self.worker_pids: list[int] = []
        self._out = None

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.customer_port}/netsvr"

    @property
    def worker_addr(self) -> str:
        return f"127.0.0.1:{self.worker_port}"

    @property
    def task_addr(self) -> str:
        return f"127.0.0.1:{self.task_port}"

    def cli(self, *args: str, timeout: float = 15) -> subprocess.CompletedProcess:
        return subprocess.run([self.binary, *args, "-c", str(self.config_path)], capture_output=True,
                              text=True, timeout=timeout, cwd=self.dir)

    def start(self, timeout: float = 15) -> "Gateway":
        self._out = open(self.dir / "netsvr.out", "ab")
        self.proc = subprocess.Popen([self.binary, "start", "-c", str(self.config_path)], cwd=self.dir,
                                     stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=self.env)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode} at start-up:\n{self.log_tail()}")
            st = self.status()
            if st and len(st["workers"]) == self.workers and all(w.get("state") == "running" for w in st["workers"]):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway not ready after {timeout}s:\n{self.log_tail()}")
            time.sleep(0.05)
        while True:  # the ports must accept
            try:
                for port in (self.customer_port, self.worker_port, self.task_port):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        return self

    def status(self) -> Optional[dict]:
        try:
            cp = self.cli("status", timeout=5)
        except subprocess.TimeoutExpired:
            return None
        if cp.returncode != 0:
            return None
        st: dict = {"workers": []}
        for line in cp.stdout.splitlines():
            parts = line.split()
            if not parts:
                continue
            if parts[0] == "instance":
                self.instance = parts[1]
            elif parts[0] == "master":
                self.master = int(parts[1])
            elif parts[0] == "worker":
                w = {}
                for kv in parts[1:]:
                    if "=" in kv:
                        k, v = kv.split("=", 1)
                        w[k] = int(v) if re.fullmatch(r"-?\d+", v) else v
                st["workers"].append(w)
        self.worker_pids = [w["pid"] for w in st["workers"] if "pid" in w]
        return st

    def pids(self) -> list[int]:
        return ([self.master] if self.master else []) + self.worker_pids

    def clients(self) -> int:
        st = self.status()
        return sum(w.get("clients", 0) for w in st["workers"]) if st else -1

    def cpu(self) -> tuple[float, float, float]:
        """Summed (user, system, runtime) CPU seconds of the master and the workers (proc_cpu)."""
        return sum_cpu(self.pids())

    def shm_bytes(self) -> int:
        """Bytes of shared memory in use: allocated blocks of /dev/shm/netsvr-<instance>-* (du)."""
        if not self.instance:
            return 0
        total = 0
        for p in Path("/dev/shm").glob(f"netsvr-{self.instance}-*"):
            with contextlib.suppress(OSError):
                total += p.stat().st_blocks * 512
        return total

    def memory(self) -> dict:
        """rss_kib: sum of VmRSS; private_kib: sum of VmRSS - RssShmem; shm_kib: shared memory
        counted once; total_kib = private + shm."""
        rss = shmem = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                rss += proc_status_kib(pid, "VmRSS")
                shmem += proc_status_kib(pid, "RssShmem")
        shm = self.shm_bytes() // 1024
        return {"rss_kib": rss, "private_kib": rss - shmem, "shm_kib": shm, "total_kib": rss - shmem + shm}

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            # `stop` waits for the master to go away; reap it meanwhile (we are its parent)
            stopper = subprocess.Popen([self.binary, "stop", "-c", str(self.config_path)], cwd=self.dir,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                self.proc.wait(timeout=30)
                stopper.wait(timeout=10)
            except subprocess.TimeoutExpired:
                stopper.kill()
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
                if self.instance:  # a killed gateway leaves its shared memory behind
                    for p in Path("/dev/shm").glob(f"netsvr-{self.instance}-*"):
                        with contextlib.suppress(OSError):
                            p.unlink()
        if self._out:
            self._out.close()
            self._out = None

    def log_tail(self, n: int = 40) -> str:
        text = ""
        for name in ("netsvr.out", "netsvr.log"):
            p = self.dir / name
            if p.exists():
                text += f"--- {p} ---\n" + "\n".join(p.read_text(errors="replace").splitlines()[-n:]) + "\n"
        return text


def established_on_port(port: int) -> int:
    """ESTABLISHED TCP connections whose local port is `port` (IPv4 and IPv6, /proc/net)."""
    n = 0
    for path in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            with open(path) as f:
                for line in f.readlines()[1:]:
                    p = line.split()
                    if p[3] == "01" and int(p[1].rsplit(":", 1)[1], 16) == port:
                        n += 1
    return n


class GoGateway:
    """The Go netsvr (`NETSVR_GO_BIN`, one process: `netsvr -config FILE`) with the same keys
    as Gateway's config, less ours (Workers, PidFile; a Go config has no such keys). The same
    interface as Gateway for bench.py: start, stop, cpu, memory, clients, pids, addresses."""

    def __init__(self, binary: str, workdir: Path, workers: int = 0, env: Optional[dict] = None):
        self.binary = binary
        self.env = {**os.environ, **env} if env else None
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.customer_port, self.worker_port, self.task_port = free_ports(3)
        self.workers = 0
        cfg = {
            "LogLevel": "warn",
            "LogFile": "",
            "ShutdownWaitTime": "5s",
            "PprofListenAddress": "",
            "Limit": {"OnOpen": 0, "OnMessage": 0},
            "Customer": {
                "ListenAddress": f"127.0.0.1:{self.customer_port}",
                "HandlePattern": "/netsvr",
                "HeartbeatMessage": HEARTBEAT,
                "HeartbeatInterval": "120s",
                "MaxOnlineNum": 10_000_000,
            },
            "Worker": {"ListenAddress": f"127.0.0.1:{self.worker_port}", "HeartbeatMessage": HEARTBEAT},
            "Task": {"ListenAddress": f"127.0.0.1:{self.task_port}", "HeartbeatMessage": HEARTBEAT},
            "Metrics": {"Item": list(range(1, 14))},
        }
        self.config = cfg
        self.config_path = self.dir / "netsvr.toml"
        self.config_path.write_text(render_toml(cfg))
        self.proc: Optional[subprocess.Popen] = None
        self._out = None

    url = Gateway.url
    worker_addr = Gateway.worker_addr
    task_addr = Gateway.task_addr

    def start(self, timeout: float = 15) -> "GoGateway":
        self._out = open(self.dir / "netsvr.out", "ab")
        self.proc = subprocess.Popen([self.binary, "-config", str(self.config_path)], cwd=self.dir,
                                     stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT,
                                     start_new_session=True, env=self.env)
        deadline = time.monotonic() + timeout
        while True:  # ready once the three ports accept
            if self.proc.poll() is not None:
                raise RuntimeError(f"Go gateway exited with {self.proc.returncode} at start-up:\n{self.log_tail()}")
            try:
                for port in (self.customer_port, self.worker_port, self.task_port):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Go gateway not ready after {timeout}s:\n{self.log_tail()}")
                time.sleep(0.05)

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc and self.proc.poll() is None else []

    def clients(self) -> int:
        return established_on_port(self.customer_port)

    def cpu(self) -> tuple[float, float, float]:
        return sum_cpu(self.pids())

    def memory(self) -> dict:
        """One process, no shared memory: every figure is its VmRSS."""
        rss = 0
        for pid in self.pids():
            with contextlib.suppress(OSError):
                rss += proc_status_kib(pid, "VmRSS")
        return {"rss_kib": rss, "private_kib": rss, "shm_kib": 0, "total_kib": rss}

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        if self._out:
            self._out.close()
            self._out = None

    def log_tail(self, n: int = 40) -> str:
        p = self.dir / "netsvr.out"
        return "\n".join(p.read_text(errors="replace").splitlines()[-n:]) if p.exists() else ""


class Tool:
    """A load tool process; its stdout+stderr go to `log` and are watched line by line."""

    def __init__(self, argv: list[str], log: Path):
        self.argv = argv
        self.log = Path(log)
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._hooks: list[tuple[re.Pattern, callable]] = []
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def cpu(self) -> tuple[float, float, float]:
        """Summed (user, system, runtime) CPU seconds of the tool and its child processes
        (loadgen forks its clients)."""
        pids, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            with contextlib.suppress(OSError, ValueError):
                for task in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{task}/children") as f:
                        todo += [int(c) for c in f.read().split()]
        return sum_cpu(pids)

    def on_line(self, pattern: str, fn) -> None:
        """Call fn(line) right when a line matching `pattern` arrives (from the reader thread)."""
        with self._cond:
            self._hooks.append((re.compile(pattern), fn))

    def _pump(self) -> None:
        with open(self.log, "w") as out:
            for line in self.proc.stdout:
                out.write(line)
                out.flush()
                with self._cond:
                    hooks = list(self._hooks)
                for rx, fn in hooks:
                    if rx.search(line):
                        fn(line)
                with self._cond:
                    self.lines.append(line.rstrip("\n"))
                    self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_line(self, pattern: str, timeout: float) -> Optional[str]:
        """The first output line matching `pattern` (earlier lines included), or None on
        timeout or process exit."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            i = 0
            while True:
                while i < len(self.lines):
                    if rx.search(self.lines[i]):
                        return self.lines[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._thread.is_alive()):
                    return None
                self._cond.wait(min(left, 0.2))

    def wait(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.terminate()
            self.proc.wait(timeout=10)
            raise
        finally:
            self._thread.join(timeout=5)
        return rc

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def output(self) -> str:
        return "\n".join(self.lines)


def read_json(path: Path) -> dict:
    with open(path) as f:
        return json.load(f)
