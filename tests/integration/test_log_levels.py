"""Log levels mean what they say (issue 14, item 5): a drained old-generation worker leaving
after a reload is info, a crash is an error; under systemd the level travels as the journal
priority."""

from __future__ import annotations

import os
import re
import signal

import netsvr_harness as h
from test_reload import wait_only_generation


def log_lines(gw: h.Gateway, since: int = 0) -> list[str]:
    return gw.log_path.read_bytes()[since:].decode(errors="replace").splitlines()


def test_drained_workers_exit_at_info_and_a_crash_is_an_error(gateway_factory):
    gw = gateway_factory({"LogLevel": "info"})
    old = [w["pid"] for w in gw.status()["workers"]]
    cp = gw.cli("reload", timeout=40)
    assert cp.returncode == 0, cp.stderr
    # No clients: the old generation drains at once and its workers exit.
    wait_only_generation(gw, 2, gw.workers, 10)
    h.wait_for(lambda: sum("exited after draining" in l for l in log_lines(gw)) == len(old), 5,
               message="a line per drained worker")
    for pid in old:
        mine = [l for l in log_lines(gw) if f"pid {pid} exited" in l]
        assert len(mine) == 1 and re.search(r" info +master\[", mine[0]), mine
    assert not [l for l in log_lines(gw) if re.search(r" error +", l)], gw.log_tail()

    victim = gw.status()["workers"][0]["pid"]
    size = gw.log_path.stat().st_size
    os.kill(victim, signal.SIGKILL)
    line = h.wait_for(lambda: next((l for l in log_lines(gw, size)
                                    if f"pid {victim} killed by signal 9" in l), None), 5,
                      message="the crash to be logged")
    assert re.search(r" error +master\[", line), line


def test_under_systemd_lines_carry_the_journal_priority(gateway_factory, monkeypatch):
    gw = gateway_factory({"LogLevel": "info"}, start=False)
    # What systemd does for a service whose stderr is the journal: JOURNAL_STREAM names that
    # stream. Here the stream is the harness's log file.
    gw.log_path.touch()
    st = os.stat(gw.log_path)
    monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
    gw.start()
    h.wait_for(lambda: sum("worker ready" in l for l in log_lines(gw)) == gw.workers, 5,
               message="every worker to log readiness")
    lines = [l for l in log_lines(gw) if "master[" in l or "worker " in l]
    assert lines and all(re.match(r"<[3467]>(master|worker \d+/\d+)\[\d+\] ", l) for l in lines), \
        lines[:5]
    assert any(l.startswith("<6>master[") for l in lines), lines[:5]
    victim = gw.status()["workers"][0]["pid"]
    os.kill(victim, signal.SIGKILL)
    h.wait_for(lambda: any(l.startswith("<3>master[") and "killed by signal 9" in l
                           for l in log_lines(gw)), 5, message="the crash at priority 3")
