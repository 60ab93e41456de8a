#!/usr/bin/env python3
"""netsvr benchmark driver (called by scripts/bench.sh, i.e. `make bench` / `BENCH=full make bench`).

Starts gateways on free ports with generated configs, runs netsvr-bizsim + netsvr-loadgen
scenarios against them, measures the gateway's processes from /proc and writes the results to
docs/BENCHMARKS.md (the section of this mode is replaced, other sections are kept).

Scenarios (sizes per mode in MODES):
  idle       N connections logged in (customerId, no session) -> memory per connection, open time
  idle+sess  the same with a 2 KiB session per connection
  groupchat  TopicPublish to groups at a fixed rate -> msgs/s, CPU per 1M msgs, latency
  broadcast  Broadcast at a fixed rate -> time for one broadcast to reach all N clients
  singlecast SingleCast round robin at a fixed rate
  mix        netsvr's comparison load: 1,717 clients, ten 50-member groups chatting at 10 msg/s
             each (100 B) and a 1 KiB Broadcast 10 times a second -> CPU per delivered message
  workers    the same TopicPublish load against Workers=1, Workers=2 and Workers=2 without write
             batching (NETSVR_WRITE_BATCHING=0), below and above what the machine delivers

Side by side (--go-bin, or NETSVR_GO_BIN in scripts/bench.sh): every scenario then runs against
the Go netsvr too, after ours, one gateway at a time on the same machine, and the report shows
both columns and the ratio C++ / Go (the workers table gets the Go gateway's rows).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import math
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stresslib as sl  # noqa: E402

# The mix of netsvr's published CPU comparison (the same in both modes): on a machine like ours
# the Go netsvr spent ~20 us of CPU per delivered message on it; our target is at most 10 us.
MIX = {"conns": 1717, "groups": 10, "group_size": 50, "rate": 10, "size": 100, "bc_rate": 10,
       "bc_size": 1024, "workers": 2}
MIX_TARGET_US = 10.0
# Gateway variants of the comparison table: (workers, write batching)
CMP_VARIANTS = [(1, True), (2, True), (2, False)]

MODES = {
    "quick": {
        "conns": 5000, "session": 2048, "hold": 1.5,
        "gc_groups": 50, "gc_rate": 20, "gc_size": 64, "gc_duration": 6,       # 100k msgs/s offered
        "bc_rate": 2, "bc_duration": 4,
        "sc_rate": 10000, "sc_duration": 3,
        # Workers=1 vs 2: 2000 clients in 20 groups; 25k msgs/s, then 400k msgs/s (over capacity)
        "cmp_conns": 2000, "cmp_groups": 20, "cmp_rate_fixed": 12.5, "cmp_rate_over": 200,
        "cmp_duration_fixed": 6, "cmp_duration_over": 3,
        "mix_duration": 10,
    },
    "full": {
        "conns": 50000, "session": 2048, "hold": 5,
        "gc_groups": 100, "gc_rate": 2, "gc_size": 64, "gc_duration": 20,      # 100k msgs/s offered
        "bc_rate": 0.5, "bc_duration": 10,
        "sc_rate": 20000, "sc_duration": 10,
        "cmp_conns": 5000, "cmp_groups": 50, "cmp_rate_fixed": 5, "cmp_rate_over": 80,
        "cmp_duration_fixed": 10, "cmp_duration_over": 5,
        "mix_duration": 30,
        # 100k msgs/s of group chat also with fewer clients (5000 in 50 groups of 100, 20 msg/s
        # per group) on Workers = 2: the latency target at that rate without 50k sockets' cost
        "gc_small": {"conns": 5000, "groups": 50, "rate": 20, "duration": 20},
    },
}


def log(msg: str) -> None:
    print(f"bench: {msg}", flush=True)


class Bench:
    def __init__(self, mode: str, build: Path, workdir: Path, command: str, repo: Path,
                 go_bin: Optional[str] = None):
        self.mode = mode
        self.go_bin = go_bin
        self.go_results: Optional[dict] = None
        self.p = dict(MODES[mode])
        self.gw_bin = str(build / "netsvr")
        self.loadgen = str(build / "netsvr-loadgen")
        self.bizsim = str(build / "netsvr-bizsim")
        self.work = workdir
        self.command = command
        self.repo = repo
        self.results: dict = {"mode": mode, "params": self.p}
        self.notes: list[str] = []
        self.close_drops: list[str] = []
        self.prefix = ""  # "go-" while the Go netsvr runs: its logs and notes

    # ---- one scenario ---------------------------------------------------------------------
    def run_pair(self, gw: sl.Gateway, name: str, scenario: str, conns: int, biz_args: list[str],
                 lg_args: list[str], on_hold=None) -> dict:
        """bizsim + loadgen; CPU of the gateway sampled from 'publishing start' to 'all end
        markers received'. on_hold(gw) runs when loadgen holds its idle connections."""
        name = self.prefix + name
        d = self.work / name
        d.mkdir(parents=True, exist_ok=True)
        cpu: dict = {}
        tools: list = []  # bizsim, then loadgen once started

        def sample(key):
            def fn(_line):
                cpu[key] = (time.monotonic(), gw.cpu(), [sum(x) for x in zip(*(t.cpu() for t in tools))])
            return fn

        biz = sl.Tool([self.bizsim, "--worker", gw.worker_addr, "--task", gw.task_addr, "--scenario", scenario,
                       "--clients", str(conns), "--report", str(d / "bizsim.json"), "--quiet", "--linger", "900",
                       *biz_args],
                      d / "bizsim.log")
        tools.append(biz)
        biz.on_line(r"publishing start", sample("start"))
        if not biz.wait_line(r"registered", 15):
            biz.terminate()
            raise RuntimeError(f"{name}: bizsim did not register:\n{biz.output()}")
        mem_base = gw.memory()
        lg = sl.Tool([self.loadgen, "--url", gw.url, "-n", str(conns), "--scenario", scenario,
                      "--report", str(d / "loadgen.json"), *lg_args], d / "loadgen.log")
        tools.append(lg)
        lg.on_line(r"all end markers received", sample("end"))
        held = None
        if on_hold:
            if lg.wait_line(r"^loadgen: holding", 600):
                held = on_hold(gw)
        try:
            lg_rc = lg.wait(900)
        except subprocess.TimeoutExpired:
            biz.terminate()
            raise
        try:  # bizsim ends when it has seen every ConnClose; if some were dropped, SIGTERM ends it
            biz_rc = biz.wait(1.5)
        except subprocess.TimeoutExpired:
            biz_rc = biz.proc.returncode
        out = {"loadgen": sl.read_json(d / "loadgen.json"), "bizsim": sl.read_json(d / "bizsim.json"),
               "loadgen_rc": lg_rc, "bizsim_rc": biz_rc, "mem_base": mem_base, "held": held}
        time.sleep(0.5)
        out["mem_after"] = gw.memory()
        if "start" in cpu and "end" in cpu:
            (t0, g0, tools0), (t1, g1, tools1) = cpu["start"], cpu["end"]
            out["cpu"] = {**split_cpu(g0, g1), "window_s": t1 - t0,
                          **{f"tools_{k}": v for k, v in split_cpu(tools0, tools1).items()}}
        bzr = out["bizsim"]
        if bzr["closes"] < bzr["clients"]:
            self.close_drops.append(f"{name} {bzr['clients'] - bzr['closes']}/{bzr['clients']}")
        lgr = out["loadgen"]
        log(f"{name}: loadgen rc={lg_rc} ok={lgr['ok']} opened={lgr['opened']} received={lgr['received']} "
            f"lost={lgr['lost']} {lgr['msgs_per_s']:.0f} msgs/s p50={lgr['latency_ms']['p50']:.2f}ms "
            f"p99={lgr['latency_ms']['p99']:.2f}ms; bizsim rc={biz_rc}")
        if lg_rc != 0:
            self.notes.append(f"{name}: loadgen reported a failure (see {d}/loadgen.log)")
        return out

    @staticmethod
    def settled_memory(gw) -> dict:
        """gw.memory() once two readings 100 ms apart agree (at most 3 s): the processes give back
        their start-up memory as they begin to serve."""
        last, deadline = gw.memory(), time.monotonic() + 3
        while time.monotonic() < deadline:
            time.sleep(0.1)
            now = gw.memory()
            if now["total_kib"] == last["total_kib"]:
                break
            last = now
        return last

    def hold_probe(self, gw: sl.Gateway) -> dict:
        time.sleep(0.5)  # let the last logins settle
        return {"clients": gw.clients(), "mem": gw.memory()}

    # ---- the whole run --------------------------------------------------------------------
    def check_limits(self) -> None:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        self.results["nofile"] = soft
        # Each worker holds its share of the connections as file descriptors, two per client
        # (lws's and our frame reader's duplicate): use enough workers that a share fits under
        # the open-files limit (at least 2).
        per_worker = max(1, (soft - 256) // 2)
        self.workers = max(2, math.ceil(self.p["conns"] * 1.1 / per_worker))
        if self.workers > 2:
            self.notes.append(f"open-files limit is {soft} (hard {hard}): {self.workers} workers hold "
                              f"{self.p['conns']} connections")
            log(self.notes[-1])

    @staticmethod
    def machine_cpu_s() -> tuple[float, float, float]:
        """CPU seconds of the whole machine since boot (/proc/stat): in processes (user, nice,
        system), in interrupts (irq, softirq: charged to no process), and stolen by the host."""
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]] + [0] * 8
        return sum(v[0:3]) / sl.CLK_TCK, (v[5] + v[6]) / sl.CLK_TCK, v[7] / sl.CLK_TCK

    @staticmethod
    def own_cpu_s() -> float:
        """CPU seconds of this process and every waited-for descendant (tools, gateways)."""
        a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime

    def run(self) -> None:
        with open("/proc/loadavg") as f:
            self.results["loadavg_before"] = f.read().split()[0]
        machine0, own0 = self.machine_cpu_s(), self.own_cpu_s()
        self.check_limits()
        try:
            self._run(self.results, self.make_gateway)
            if self.go_bin:
                log(f"the same scenarios against the Go netsvr ({self.go_bin})")
                self.go_results = {"mode": self.mode, "params": self.p, "nofile": self.results["nofile"]}
                self._run(self.go_results, self.make_go_gateway)
        finally:
            wall = (self.results.get("total_s") or 0) + ((self.go_results or {}).get("total_s") or 0) or 1
            procs, irq, steal = (b - a for a, b in zip(machine0, self.machine_cpu_s()))
            capacity = wall * (os.cpu_count() or 1)
            self.results["other_cpu_share"] = max(0.0, procs - (self.own_cpu_s() - own0)) / capacity
            self.results["irq_cpu_share"] = irq / capacity
            self.results["steal_cpu_share"] = steal / capacity
            (self.work / "results.json").write_text(json.dumps(self.results, indent=2))
            if self.go_results is not None:
                (self.work / "results-go.json").write_text(json.dumps(self.go_results, indent=2))

    def make_gateway(self, name: str, workers: int, env: Optional[dict] = None) -> sl.Gateway:
        return sl.Gateway(self.gw_bin, self.work / name, workers=workers, env=env)

    def make_go_gateway(self, name: str, workers: int, env: Optional[dict] = None) -> sl.GoGateway:
        return sl.GoGateway(self.go_bin, self.work / f"go-{name}", env=env)

    def _run(self, results: dict, make) -> None:
        """Every scenario on gateways made by make(name, workers, env), results into `results`.
        The Go gateway is one process: its workers table has one row per load."""
        go = make == self.make_go_gateway
        self.prefix = "go-" if go else ""
        p, n = self.p, self.p["conns"]
        if go and results["nofile"] < n + 256:
            self.notes.append(f"Go netsvr: one process holds all {n} connections, more than the open-files "
                              f"limit {results['nofile']} allows: its figures for them are incomplete")
            log(self.notes[-1])
        t_start = time.monotonic()
        idle_lg = ["--duration", str(p["hold"]), "--login-wait", "60", "--quiet"]
        # no client heartbeats: they would be read inside the CPU windows but are no delivered
        # message (the gateway's HeartbeatInterval, 120 s, outlasts every scenario)
        common_lg = ["--duration", "120", "--quiet", "--heartbeat", "0"]
        # Memory is measured on fresh gateways (freed memory stays in the allocator and would be
        # reused by a later run on the same gateway).
        gw = make("gw-idle", self.workers)
        gw.start()
        results["gateway_start_memory"] = self.settled_memory(gw)
        try:
            results["idle"] = self.run_pair(gw, "idle", "idle", n, ["--session-bytes", "0"], idle_lg,
                                                 on_hold=self.hold_probe)
            # the same again: memory that is kept but reused (allocator) vs. memory that leaks
            results["idle_repeat"] = self.run_pair(gw, "idle-repeat", "idle", n, ["--session-bytes", "0"],
                                                        idle_lg, on_hold=self.hold_probe)
        finally:
            gw.stop()
        gw = make("gw-main", self.workers)
        gw.start()
        try:
            results["idle_session"] = self.run_pair(
                gw, "idle-session", "idle", n, ["--session-bytes", str(p["session"])], idle_lg,
                on_hold=self.hold_probe)
            results["groupchat"] = self.run_pair(
                gw, "groupchat", "groupchat", n,
                ["--groups", str(p["gc_groups"]), "--rate", str(p["gc_rate"]), "--size", str(p["gc_size"]),
                 "--duration", str(p["gc_duration"]), "--session-bytes", str(p["session"])], common_lg)
            results["broadcast"] = self.run_pair(
                gw, "broadcast", "broadcast", n,
                ["--rate", str(p["bc_rate"]), "--duration", str(p["bc_duration"]), "--session-bytes",
                 str(p["session"])], common_lg)
            results["singlecast"] = self.run_pair(
                gw, "singlecast", "singlecast", n,
                ["--rate", str(p["sc_rate"]), "--duration", str(p["sc_duration"]), "--session-bytes",
                 str(p["session"])], common_lg)
        finally:
            gw.stop()
        small = p.get("gc_small")
        if small:
            gw = make("gw-gc-small", 2)
            gw.start()
            try:
                results["gc_small"] = self.run_pair(
                    gw, "groupchat-small", "groupchat", small["conns"],
                    ["--groups", str(small["groups"]), "--rate", str(small["rate"]), "--size", str(p["gc_size"]),
                     "--duration", str(small["duration"]), "--session-bytes", str(p["session"])], common_lg)
            finally:
                gw.stop()
        gw = make("gw-mix", MIX["workers"])
        gw.start()
        try:
            results["mix"] = self.run_pair(
                gw, "mix", "mix", MIX["conns"],
                ["--groups", str(MIX["groups"]), "--group-size", str(MIX["group_size"]),
                 "--rate", str(MIX["rate"]), "--size", str(MIX["size"]),
                 "--broadcast-rate", str(MIX["bc_rate"]), "--broadcast-size", str(MIX["bc_size"]),
                 "--duration", str(p["mix_duration"]), "--session-bytes", str(p["session"])], common_lg)
        finally:
            gw.stop()
        # The same TopicPublish load on Workers = 1, 2, and 2 without write batching: below and
        # above what the machine delivers.
        results["workers"] = {}
        for load in ("fixed", "over"):
            for workers, batching in CMP_VARIANTS:
                tag = f"{load}-{workers}{'' if batching else '-nobatch'}"
                if go and (workers, batching) != CMP_VARIANTS[0]:
                    continue  # one Go process: one row per load
                if go:
                    tag = f"{load}-go"
                g = make(f"cmp-{tag}", workers, None if batching else {"NETSVR_WRITE_BATCHING": "0"})
                g.start()
                try:
                    results["workers"][tag] = self.run_pair(
                        g, f"cmp-{tag}", "groupchat", p["cmp_conns"],
                        ["--groups", str(p["cmp_groups"]), "--rate", str(p[f"cmp_rate_{load}"]),
                         "--size", str(p["gc_size"]), "--duration", str(p[f"cmp_duration_{load}"]),
                         "--session-bytes", "0"], common_lg)
                finally:
                    g.stop()
        results["total_s"] = time.monotonic() - t_start

    # ---- report ---------------------------------------------------------------------------
    # A figure is (label, text, number): `number` is what the C++ / Go ratio compares (None: no
    # ratio for that row).

    def per_m(self, res, key):
        # per delivered frame: data messages and the end markers (one per client), both inside
        # the CPU window
        c, lg = res.get("cpu"), res["loadgen"]
        rx = lg["received"] + lg.get("end_markers", 0)
        if key == "tools":
            return (c["tools_user_s"] + c["tools_sys_s"]) / rx * 1e6 if c and rx else float("nan")
        if key == "total":
            return (c["user_s"] + c["sys_s"]) / rx * 1e6 if c and rx else float("nan")
        return c[key] / rx * 1e6 if c and rx else float("nan")

    def cpu_cell(self, res):
        return (f"{self.per_m(res, 'user_s'):.2f} / {self.per_m(res, 'sys_s'):.2f} "
                f"(load tools {self.per_m(res, 'tools'):.2f})")

    @staticmethod
    def lat(res):
        l_ = res["loadgen"]["latency_ms"]
        return f"{l_['p50']:.2f} / {l_['p99']:.2f} / {l_['max']:.1f} ms"

    def small_rows(self, r) -> list[tuple[str, str, Optional[float]]]:
        res, small = r.get("gc_small"), self.p.get("gc_small")
        if not res or not small:
            return []
        lg = res["loadgen"]
        what = (f"Group chat, {small['conns']} clients on Workers = 2: {small['groups']} groups of "
                f"{small['conns'] // small['groups']}, {small['rate']} msg/s per group, {self.p['gc_size']} B")
        offer = small["groups"] * small["rate"] * (small["conns"] // small["groups"])
        return [
            (f"{what}: delivered msgs/s (offered); delivered / expected / lost",
             f"{lg['msgs_per_s']:,.0f} ({offer:,}); {lg['received']:,} / {lg['expected']:,} / {lg['lost']}",
             lg["msgs_per_s"]),
            (f"{what}: gateway CPU s per 1M delivered msgs, user / system (load tools' total); latency p50 / p99 / max",
             f"{self.cpu_cell(res)}; {self.lat(res)}", self.per_m(res, "total")),
        ]

    def main_rows(self, r) -> list[tuple[str, str, Optional[float]]]:
        p = self.p
        n = p["conns"]

        def mem_per_conn(res):
            held = res.get("held") or {}
            if not held:
                return float("nan"), 0
            return (held["mem"]["total_kib"] - res["mem_base"]["total_kib"]) / n, held["clients"]

        def shm_per_conn(res):
            held = res.get("held") or {}
            return (held["mem"]["shm_kib"] - res["mem_base"]["shm_kib"]) / n if held else float("nan")

        idle_kib, held_idle = mem_per_conn(r["idle"])
        sess_kib, held_sess = mem_per_conn(r["idle_session"])
        gc, bc, sc = r["groupchat"], r["broadcast"], r["singlecast"]
        gc_offer = p["gc_groups"] * p["gc_rate"] * (n // p["gc_groups"])
        open_s = r["idle"]["loadgen"]["time_to_open_all_s"]
        start_mem = r["gateway_start_memory"]
        bc_p50 = bc["loadgen"]["fanout_ms"]["p50"]
        return [
            ("Connections held (gateway `status`, idle runs)", f"{held_idle} / {n}; {held_sess} / {n}", None),
            (f"Time to open {n} connections (no rate limit, at most 256 handshakes in flight per loadgen process)",
             f"{open_s:.2f} s ({n / open_s:,.0f} connections/s)" if open_s > 0 else "n/a", open_s),
            ("Gateway memory per connection, logged in (customerId), no session; of which shared memory",
             f"{idle_kib:.2f} KiB; {shm_per_conn(r['idle']):.2f} KiB", idle_kib),
            (f"Gateway memory per connection, logged in, {p['session']} B session; of which shared memory",
             f"{sess_kib:.2f} KiB; {shm_per_conn(r['idle_session']):.2f} KiB", sess_kib),
            ("Gateway memory, idle gateway before the runs (RSS private + shm)",
             f"{start_mem['total_kib'] / 1024:.1f} MiB (shm {start_mem['shm_kib'] / 1024:.1f} MiB)",
             start_mem["total_kib"]),
            ("Memory kept after all clients closed (idle run, vs. before it): private; shared",
             f"{(r['idle']['mem_after']['private_kib'] - r['idle']['mem_base']['private_kib']) / 1024:+.1f} MiB; "
             f"{(r['idle']['mem_after']['shm_kib'] - r['idle']['mem_base']['shm_kib']) / 1024:+.1f} MiB", None),
            ("Leak check: the same idle run again on that gateway, memory after it vs. after the first",
             f"{(r['idle_repeat']['mem_after']['total_kib'] - r['idle']['mem_after']['total_kib']) / 1024:+.1f} MiB "
             f"(held {r['idle_repeat']['held']['clients'] if r['idle_repeat'].get('held') else '?'})", None),
            (f"Group chat: {p['gc_groups']} groups of {n // p['gc_groups']}, {p['gc_rate']} msg/s per group, "
             f"{p['gc_size']} B: delivered msgs/s (offered)",
             f"{gc['loadgen']['msgs_per_s']:,.0f} ({gc_offer:,})", gc["loadgen"]["msgs_per_s"]),
            ("Group chat: gateway CPU s per 1M delivered msgs, user / system (load tools' total)",
             self.cpu_cell(gc), self.per_m(gc, "total")),
            ("Group chat: latency p50 / p99 / max", self.lat(gc), gc["loadgen"]["latency_ms"]["p99"]),
            ("Group chat: delivered / expected / lost",
             f"{gc['loadgen']['received']:,} / {gc['loadgen']['expected']:,} / {gc['loadgen']['lost']}", None),
            *self.small_rows(r),
            (f"Broadcast to all {n}: time for one broadcast to reach every client, p50 / max",
             f"{bc_p50:.1f} / {bc['loadgen']['fanout_ms']['max']:.1f} ms "
             f"({bc['loadgen']['fanout_ms']['messages']} broadcasts)", bc_p50),
            ("Broadcast: fan-out rate (clients / median fan-out time); gateway CPU s per 1M frames, user / system (load tools' total)",
             f"{n / max(bc_p50 / 1000, 1e-9):,.0f} msgs/s; {self.cpu_cell(bc)}", self.per_m(bc, "total")),
            (f"Single-cast, {p['sc_rate']:,} msgs/s round robin: delivered msgs/s; latency p50 / p99 / max",
             f"{sc['loadgen']['msgs_per_s']:,.0f}; {self.lat(sc)}", sc["loadgen"]["latency_ms"]["p99"]),
            ("Single-cast: gateway CPU s per 1M msgs, user / system (load tools' total)", self.cpu_cell(sc),
             self.per_m(sc, "total")),
        ]

    def mix_rows(self, r) -> list[tuple[str, str, Optional[float]]]:
        res = r.get("mix")
        if not res:
            return []
        lg = res["loadgen"]
        rx = lg["received"]
        user, sys_ = self.per_m(res, "user_s"), self.per_m(res, "sys_s")
        total = user + sys_
        verdict = "met" if total <= MIX_TARGET_US else "missed"
        return [
            ("Mix: delivered msgs/s; delivered / expected / lost",
             f"{lg['msgs_per_s']:,.0f}; {rx:,} / {lg['expected']:,} / {lg['lost']}", lg["msgs_per_s"]),
            (f"Mix: gateway CPU µs per delivered message, user / system / total (target ≤ {MIX_TARGET_US:g}; "
             f"Go netsvr ~20)", f"{user:.2f} / {sys_:.2f} / **{total:.2f}** ({verdict})", total),
            ("Mix: latency p50 / p99 / max", f"{lg['latency_ms']['p50']:.2f} / {lg['latency_ms']['p99']:.2f} / "
             f"{lg['latency_ms']['max']:.1f} ms", lg["latency_ms"]["p99"]),
            ("Mix: load tools' CPU µs per delivered message (loadgen + bizsim, same window)",
             f"{self.per_m(res, 'tools'):.2f}", None),
        ]

    def table(self, ours, go) -> list[str]:
        """One value column, or with the Go results: C++, Go and the ratio of the figures marked
        for it (`number`; latency rows compare p99)."""
        if go is None:
            return ["| Figure | Value |", "|---|---|"] + [f"| {a} | {b} |" for a, b, _ in ours]
        out = ["| Figure | netsvr (C++) | Go netsvr | C++ / Go |", "|---|---|---|---|"]
        for (a, b, x), (_, gb, gx) in zip(ours, go):
            ratio = f"{x / gx:.2f}" if x is not None and gx and not math.isnan(x) and not math.isnan(gx) else ""
            out.append(f"| {a} | {b} | {gb} | {ratio} |")
        return out

    def machine(self) -> str:
        cpu = "unknown"
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            total = int(f.readline().split()[1])
        return (f"{os.cpu_count()} CPUs (`nproc` = {len(os.sched_getaffinity(0))}), {cpu}, "
                f"{total / 1024 / 1024:.1f} GiB RAM, Linux {platform.release()}")

    def section(self) -> str:
        r, p, g = self.results, self.p, self.go_results
        try:
            commit = subprocess.run(["git", "-C", str(self.repo), "describe", "--always", "--dirty"],
                                    capture_output=True, text=True).stdout.strip()
        except OSError:
            commit = "?"
        total_s = r["total_s"] + (g["total_s"] if g else 0)
        out = [f"## {self.mode.capitalize()} mode", "",
               f"- Date: {datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z')}",
               f"- Command: `{self.command}` (commit `{commit}`)",
               f"- Machine: {self.machine()}; open-files limit {r['nofile']}",
               f"- Gateway: Workers = {self.workers} (comparison below: 1 and 2), other keys at their defaults; "
               f"bizsim, loadgen and the gateway share the machine"]
        if g is not None:
            out.append(f"- Side by side: every scenario also ran against the Go netsvr (`{self.go_bin}`, one "
                       f"process, the same keys less ours), after ours, one gateway at a time; ratio = C++ / Go "
                       f"of the figure (latency rows: p99; CPU rows: user + system)")
        out += [f"- Total run time: {total_s:.0f} s; load average before: {r['loadavg_before']}; "
                f"other processes used {r['other_cpu_share'] * 100:.0f} % of the machine's CPU during the run; "
                f"interrupts (not charged to any process) {r.get('irq_cpu_share', 0) * 100:.0f} %, "
                f"stolen by the host {r.get('steal_cpu_share', 0) * 100:.0f} %",
                ""]
        out += self.table(self.main_rows(r), self.main_rows(g) if g else None)
        if r.get("mix"):
            group_rate = MIX["groups"] * MIX["rate"] * MIX["group_size"]
            bc_rate = MIX["bc_rate"] * MIX["conns"]
            out += ["", f"Mix (netsvr's CPU comparison): {MIX['conns']:,} clients on Workers = {MIX['workers']}; "
                        f"{MIX['groups']} groups of {MIX['group_size']} publishing {MIX['rate']} msg/s each "
                        f"({MIX['size']} B) and a {MIX['bc_size']} B Broadcast {MIX['bc_rate']} times a second, "
                        f"for {p['mix_duration']} s; offered {group_rate:,} + {bc_rate:,} = "
                        f"{group_rate + bc_rate:,} delivered msgs/s.", ""]
            out += self.table(self.mix_rows(r), self.mix_rows(g) if g and g.get("mix") else None)
        per_group = p["cmp_conns"] // p["cmp_groups"]
        out += ["", f"TopicPublish on Workers = 1, Workers = 2, and Workers = 2 with write batching off "
                    f"(`NETSVR_WRITE_BATCHING=0`: one send(2) per frame at once instead of the frames of a "
                    f"loop iteration written together, corked), same load: {p['cmp_conns']} clients in "
                    f"{p['cmp_groups']} groups of {per_group}, {p['gc_size']} B messages for "
                    f"{p['cmp_duration_fixed']} s (fixed) / {p['cmp_duration_over']} s (over capacity); "
                    f"with 2 workers every publish also goes to the other worker (half of each group is "
                    f"there). The over-capacity load shows the ceiling of this machine "
                    f"(gateway, loadgen and bizsim share its CPUs)."
                    + (" Workers = Go: the Go netsvr, one process." if g else ""), "",
                "| Load | Workers | write batching | offered msgs/s | delivered msgs/s | "
                "gateway CPU s per 1M msgs, user / system | latency p50 / p99 | lost | loadgen + bizsim CPU s per 1M msgs |",
                "|---|---|---|---|---|---|---|---|---|"]
        rows = list(r["workers"].items()) + (list(g["workers"].items()) if g else [])
        for key, res in sorted(rows, key=lambda kv: kv[0].split("-")[0] != "fixed"):
            load, w, *rest = key.split("-")
            offer = p["cmp_groups"] * p[f"cmp_rate_{load}"] * per_group
            lg = res["loadgen"]
            out.append(f"| {'fixed' if load == 'fixed' else 'over capacity'} | {'Go' if w == 'go' else w} | "
                       f"{'–' if w == 'go' else 'off' if rest else 'on'} | {offer:,.0f} | "
                       f"{lg['msgs_per_s']:,.0f} | {self.per_m(res, 'user_s'):.2f} / {self.per_m(res, 'sys_s'):.2f} | "
                       f"{fmt_ms(lg['latency_ms']['p50'])} / {fmt_ms(lg['latency_ms']['p99'])} | {lg['lost']} | "
                       f"{self.per_m(res, 'tools'):.2f} |")
        out += ["", "Memory = sum over master and workers of (VmRSS − RssShmem) plus the shared-memory files "
                    "/dev/shm/netsvr-* counted once (allocated blocks); per connection = (held − before) / N. "
                    "CPU = time on CPU of the master and the workers (sum of /proc/<pid>/task/*/schedstat, ns) "
                    "between bizsim's first publish and the last end marker reaching loadgen, split into user "
                    "and system in the proportion of their /proc/<pid>/stat tick counts; per message = divided "
                    "by the frames delivered in that window (data messages and one end marker per client); "
                    "\"load tools\" = the same for loadgen (all its processes) and bizsim, which share the "
                    "machine. Time on CPU includes the softirq work the kernel runs in a process's context: "
                    "over loopback much of the receiving side's TCP work runs inside the gateway's send(2), so "
                    "the gateway's system time carries part of loadgen's receive cost. Latency = loadgen "
                    "receive time − bizsim send time (CLOCK_MONOTONIC, one machine)."
                    + (" The Go netsvr is one process without shared memory: its memory is its VmRSS, its "
                       "connections held are the established sockets on its client port." if g else "")]
        if self.close_drops:
            out += ["", "ConnClose events that bizsim never received when loadgen closed all its clients at once "
                        "(gateway metric 10, worker-port queue over Worker.SendChanCap): "
                        + ", ".join(self.close_drops) + "."]
        if self.notes:
            out += [""] + [f"Note: {x}" for x in self.notes]
        return "\n".join(out) + "\n"


def split_cpu(before, after) -> dict:
    """CPU used between two (user ticks, system ticks, exact runtime) samples: the exact total,
    split into user and system in the proportion of the tick counts."""
    du, ds, dt = (b - a for a, b in zip(before, after))
    user_share = du / (du + ds) if du + ds > 0 else 0.0
    return {"user_s": dt * user_share, "sys_s": dt * (1 - user_share)}


def fmt_ms(v: float) -> str:
    return f"{v:.2f} ms" if v < 10 else f"{v:,.0f} ms"


def write_doc(path: Path, mode: str, section: str) -> None:
    head = ("# Benchmarks\n\nWritten by `scripts/bench.sh` (`make bench` = quick mode, `BENCH=full make bench` = "
            "full mode); each run replaces the section of its mode. Tools: `tests/stress/` "
            "(netsvr-loadgen, netsvr-bizsim, bench.py).\n")
    text = path.read_text() if path.exists() else head
    title = f"## {mode.capitalize()} mode"
    pattern = re.compile(rf"^{re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _m: section + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip("\n") + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=sorted(MODES), default="quick")
    ap.add_argument("--build", default="build", help="directory with netsvr, netsvr-loadgen, netsvr-bizsim")
    ap.add_argument("--doc", default=None, help="markdown file to update (default docs/BENCHMARKS.md)")
    ap.add_argument("--command", default="make bench", help="command line recorded in the report")
    ap.add_argument("--workdir", default=None, help="where logs and reports go (default: a temp dir)")
    ap.add_argument("--go-bin", default=os.environ.get("NETSVR_GO_BIN") or None,
                    help="the Go netsvr binary: run every scenario against it too, side by side "
                         "(default: $NETSVR_GO_BIN)")
    args = ap.parse_args()
    repo = sl.REPO_ROOT
    build = Path(args.build).resolve()
    for b in ("netsvr", "netsvr-loadgen", "netsvr-bizsim"):
        if not os.access(build / b, os.X_OK):
            print(f"bench: {build / b} is missing: build first (make build)", file=sys.stderr)
            return 2
    work = Path(args.workdir or tempfile.mkdtemp(prefix=f"netsvr-bench-{args.mode}-"))
    work.mkdir(parents=True, exist_ok=True)
    log(f"{args.mode} mode; logs and JSON reports in {work}")
    go_bin = None
    if args.go_bin:
        go_bin = str(Path(args.go_bin).resolve())
        if not os.access(go_bin, os.X_OK):
            print(f"bench: the Go netsvr {args.go_bin} is not an executable file", file=sys.stderr)
            return 2
    bench = Bench(args.mode, build, work, args.command, repo, go_bin)
    bench.run()
    section = bench.section()
    doc = Path(args.doc) if args.doc else repo / "docs" / "BENCHMARKS.md"
    write_doc(doc, args.mode, section)
    print()
    print(section)
    log(f"written to {doc}")
    return 0


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    sys.exit(main())
