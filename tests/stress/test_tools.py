"""Small end-to-end checks of the load tools against a real gateway (Workers = 2, free ports).

Run: NETSVR_BIN=<abs>/build/netsvr /usr/bin/python3 -m pytest -q tests/stress
(netsvr-loadgen and netsvr-bizsim are taken from the directory of NETSVR_BIN.)
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stresslib as sl  # noqa: E402

CLIENTS = 200


@pytest.fixture(scope="module")
def binaries() -> dict:
    gw = sl.gateway_binary()
    out = {"gateway": gw, "loadgen": sl.tool_path("netsvr-loadgen", gw), "bizsim": sl.tool_path("netsvr-bizsim", gw)}
    for name, path in out.items():
        if not os.access(path, os.X_OK):
            pytest.fail(f"{name} binary {path!r} not found (build first; NETSVR_BIN points at build/netsvr)",
                        pytrace=False)
    return out


@pytest.fixture
def gateway(binaries, tmp_path):
    gw = sl.Gateway(binaries["gateway"], tmp_path / "gw", workers=2)
    gw.start()
    yield gw
    gw.stop()


def run_pair(binaries, gateway, tmp_path, scenario: str, biz_args: list[str], lg_args: list[str]):
    """Starts bizsim, then loadgen; both must exit by themselves. Returns (loadgen, bizsim) reports."""
    biz_report, lg_report = tmp_path / "bizsim.json", tmp_path / "loadgen.json"
    biz = sl.Tool([binaries["bizsim"], "--worker", gateway.worker_addr, "--task", gateway.task_addr,
                   "--scenario", scenario, "--clients", str(CLIENTS), "--report", str(biz_report), *biz_args],
                  tmp_path / "bizsim.log")
    try:
        assert biz.wait_line(r"registered", 10), "bizsim did not register:\n" + biz.output()
        lg = sl.Tool([binaries["loadgen"], "--url", gateway.url, "-n", str(CLIENTS), "--scenario", scenario,
                      "--heartbeat", "1", "--report", str(lg_report), *lg_args], tmp_path / "loadgen.log")
        lg_rc = lg.wait(60)
        biz_rc = biz.wait(30)
    finally:
        biz.terminate()
    assert lg_rc == 0, "loadgen failed:\n" + lg.output()
    assert biz_rc == 0, "bizsim failed:\n" + biz.output()
    return sl.read_json(lg_report), sl.read_json(biz_report)


def check_common(lg: dict, biz: dict) -> None:
    assert lg["ok"] is True
    assert lg["opened"] == CLIENTS and lg["failed"] == 0 and lg["closed_during_run"] == 0
    assert lg["logged_in"] == CLIENTS
    assert biz["clients"] == CLIENTS and biz["logged_in_before_publish"] == CLIENTS
    assert biz["transfers"] == 0, "heartbeats must not reach the business"
    assert lg["lost"] == 0 and lg["extra"] == 0 and lg["out_of_order"] == 0
    assert lg["clients_without_end"] == 0
    assert lg["received"] == lg["expected"] > 0
    assert lg["latency_ms"]["max"] >= lg["latency_ms"]["p99"] >= lg["latency_ms"]["p50"] > 0


def test_groupchat(binaries, gateway, tmp_path):
    lg, biz = run_pair(binaries, gateway, tmp_path, "groupchat",
                       ["--groups", "10", "--rate", "20", "--duration", "3", "--session-bytes", "2048"],
                       ["--duration", "30"])
    check_common(lg, biz)
    assert biz["barrier_count"] == CLIENTS and biz["barrier_topics"] == 10
    assert biz["published"] == 600 and biz["per_target_min"] == biz["per_target_max"] == 60
    assert lg["groups_seen"] == 10
    assert lg["expected"] == 600 * (CLIENTS // 10)
    assert lg["fanout_ms"]["messages"] == 600 and lg["fanout_ms"]["receivers_mean"] == CLIENTS // 10
    assert biz["gateway_metrics_delta"]["send_failures"] == 0


def test_broadcast(binaries, gateway, tmp_path):
    # three client processes: their counters and fan-out times are merged by the controller
    lg, biz = run_pair(binaries, gateway, tmp_path, "broadcast",
                       ["--rate", "10", "--duration", "2", "--session-bytes", "0"],
                       ["--duration", "30", "--procs", "3"])
    check_common(lg, biz)
    assert biz["barrier_count"] == CLIENTS
    assert lg["expected"] == biz["published"] * CLIENTS == 20 * CLIENTS
    assert lg["procs"] == 3
    assert lg["fanout_ms"]["messages"] == 20 and lg["fanout_ms"]["receivers_mean"] == CLIENTS


def test_singlecast(binaries, gateway, tmp_path):
    lg, biz = run_pair(binaries, gateway, tmp_path, "singlecast",
                       ["--rate", "1000", "--duration", "2"], ["--duration", "30"])
    check_common(lg, biz)
    assert lg["expected"] == biz["published"] == 2000
    assert lg["groups_seen"] == CLIENTS


def test_mix(binaries, gateway, tmp_path):
    """Group chat for the first 4 x 25 clients plus a broadcast to all 200: two streams counted
    separately (losses of either would show), one sequence, order kept per client."""
    lg, biz = run_pair(binaries, gateway, tmp_path, "mix",
                       ["--groups", "4", "--group-size", "25", "--rate", "20", "--size", "100",
                        "--broadcast-rate", "10", "--broadcast-size", "1024", "--duration", "2"],
                       ["--duration", "30"])
    check_common(lg, biz)
    assert biz["barrier_count"] == 100 and biz["barrier_topics"] == 4
    # 4 groups x 20/s x 2 s = 160 group messages, 10/s x 2 s = 20 broadcasts
    assert biz["published"] == 180 and biz["per_target_min"] == biz["per_target_max"] == 40
    assert lg["groups_seen"] == 4
    assert lg["expected"] == 160 * 25 + 20 * CLIENTS
    assert lg["fanout_ms"]["messages"] == 180
    assert biz["gateway_metrics_delta"]["frames_sent"] >= lg["expected"]


def test_idle_without_business(binaries, gateway, tmp_path):
    """Plain connections: the gateway holds them all, then they close cleanly."""
    report = tmp_path / "idle.json"
    lg = sl.Tool([binaries["loadgen"], "--url", gateway.url, "-n", str(CLIENTS), "--scenario", "idle",
                  "--login-wait", "0", "--duration", "2", "--connect-rate", "1000", "--heartbeat", "1",
                  "--report", str(report)], tmp_path / "loadgen.log")
    assert lg.wait_line(r"holding", 20), lg.output()
    assert gateway.clients() == CLIENTS
    assert lg.wait(30) == 0, lg.output()
    rep = sl.read_json(report)
    assert rep["opened"] == CLIENTS and rep["failed"] == 0 and rep["closed_during_run"] == 0
    # rate-limited connect: 200 connections at 1000/s take about 0.2 s
    assert 0.1 < rep["time_to_open_all_s"] < 5
    deadline = time.monotonic() + 5
    while gateway.clients() != 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gateway.clients() == 0


def test_connect_failure_is_reported(binaries, tmp_path):
    """Nothing listens: every connect fails, loadgen says so and exits non-zero."""
    port = sl.free_ports(1)[0]
    report = tmp_path / "fail.json"
    lg = sl.Tool([binaries["loadgen"], "--url", f"ws://127.0.0.1:{port}/netsvr", "-n", "20", "--duration", "1",
                  "--report", str(report)], tmp_path / "loadgen.log")
    assert lg.wait(30) == 1, lg.output()
    rep = sl.read_json(report)
    assert rep["opened"] == 0 and rep["connect_failed"] == 20 and rep["ok"] is False
