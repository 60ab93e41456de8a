"""The CLI works while the config on disk is broken (issue 10, item 6): after a refused reload,
`netsvr status` and `netsvr stop` still find the running instance through its pid file, say
which key is invalid, and `status` tells which generation runs and whether the file on disk
differs from what runs."""

from __future__ import annotations

import os
import signal

import netsvr_harness as h


def config_line(status_stdout: str) -> str:
    lines = [l for l in status_stdout.splitlines() if l.startswith("config ")]
    assert len(lines) == 1, status_stdout
    return lines[0]


def generation(status_stdout: str) -> int:
    lines = [l for l in status_stdout.splitlines() if l.startswith("generation ")]
    assert len(lines) == 1, status_stdout
    return int(lines[0].split()[1])


def test_status_and_stop_after_a_refused_reload(gateway_factory):
    gw = gateway_factory()
    st = gw.cli("status")
    assert st.returncode == 0, st.stderr
    assert generation(st.stdout) == 1
    assert config_line(st.stdout) == f"config {gw.config_path} is the one running"
    master = gw.status()["master"]
    pids = [w["pid"] for w in gw.status()["workers"]]

    # A key the gateway refuses: `reload` refuses it, naming the key.
    gw.config = h.merge_config(gw.config, {"Customer": {"SendMessageType": 3}})
    gw.write_config()
    cp = gw.cli("reload")
    assert cp.returncode == 1 and "Customer.SendMessageType" in cp.stderr, cp.stderr

    # `status` still reports what runs, and why the file on disk is not it.
    st = gw.cli("status")
    assert st.returncode == 0, st.stderr
    assert "Customer.SendMessageType" in st.stderr, st.stderr
    parsed = h.parse_status(st.stdout)
    assert parsed["master"] == master
    assert [w["pid"] for w in parsed["workers"]] == pids
    assert all(w["state"] == "running" for w in parsed["workers"])
    assert generation(st.stdout) == 1
    line = config_line(st.stdout)
    assert line.startswith(f"config {gw.config_path} is invalid") and \
        "Customer.SendMessageType" in line, line

    # `stop` stops it all the same.
    cp = gw.stop()
    assert cp.returncode == 0, cp.stderr
    assert "Customer.SendMessageType" in cp.stderr, cp.stderr
    h.wait_for(lambda: not h.pid_alive(master), 5, message="the master to exit")
    assert not any(h.pid_alive(p) for p in pids)
    assert not gw.pid_file.exists()


def test_a_syntax_error_refused_by_the_master_hides_neither_pid_file_nor_reason(
        gateway_factory):
    # A pid file that is not the default: it is found in a file that does not even parse.
    gw = gateway_factory({"PidFile": "run/gw.pid"}, start=False)
    (gw.dir / "run").mkdir()
    gw.start()
    pid_file = gw.dir / "run" / "gw.pid"
    assert pid_file.exists()
    master = gw.status()["master"]
    # SIGHUP straight to the master (as `kill -HUP` or a supervisor would): it refuses.
    gw.config_path.write_text(h.render_toml(gw.config) + "[Worker\nx = = 1\n")
    log_size = gw.log_path.stat().st_size
    os.kill(master, signal.SIGHUP)
    h.wait_for(lambda: "reload refused" in
               gw.log_path.read_bytes()[log_size:].decode(errors="replace"),
               5, message="the master to log the refused reload")
    st = gw.cli("status")
    assert st.returncode == 0, st.stderr
    assert h.parse_status(st.stdout)["master"] == master
    assert "syntax" in config_line(st.stdout), st.stdout
    refused = [l for l in st.stdout.splitlines() if l.startswith("last reload refused: ")]
    assert refused and "syntax" in refused[0], st.stdout
    cp = gw.stop()
    assert cp.returncode == 0, cp.stderr
    h.wait_for(lambda: not h.pid_alive(master), 5, message="the master to exit")
    assert not pid_file.exists()
    # Nothing runs now: both say so, and still name the broken file's problem.
    for cmd in ("status", "stop"):
        cp = gw.cli(cmd)
        assert cp.returncode == 1 and "not running" in cp.stderr and "syntax" in cp.stderr, \
            (cmd, cp.stderr)


def test_status_tells_a_changed_file_from_the_running_one(gateway_factory):
    gw = gateway_factory()
    gw.config = h.merge_config(gw.config, {"Limit": {"OnOpen": 50}})
    gw.write_config()
    st = gw.cli("status")
    assert config_line(st.stdout) == \
        f"config {gw.config_path} differs from the one running (reload applies it)", st.stdout
    assert generation(st.stdout) == 1
    cp = gw.cli("reload", timeout=40)
    assert cp.returncode == 0, cp.stderr
    st = gw.cli("status")
    assert config_line(st.stdout) == f"config {gw.config_path} is the one running", st.stdout
    assert generation(st.stdout) == 2
    assert "last reload refused" not in st.stdout
