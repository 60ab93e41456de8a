"""`netsvr check -c FILE` (issue 14): validates a config without starting anything, like
`nginx -t`; `netsvr reload` runs the same check before it signals the master."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import netsvr_harness as h


def check(gw: h.Gateway) -> subprocess.CompletedProcess:
    return gw.cli("check")


def check_with(gw: h.Gateway, changes: dict) -> subprocess.CompletedProcess:
    gw.config = h.merge_config(gw.config, changes)
    gw.write_config()
    return check(gw)


def expect_invalid(cp: subprocess.CompletedProcess, *words: str) -> None:
    assert cp.returncode == 1, (cp.returncode, cp.stdout, cp.stderr)
    assert "is valid" not in cp.stdout, cp.stdout
    for w in words:
        assert w in cp.stderr, f"{w!r} not in {cp.stderr!r}"


@pytest.fixture
def pem_pair(tmp_path) -> tuple[Path, Path]:
    """Two self-signed certificates with their keys: (cert, key) of the first, and the second
    key in tmp_path/other-key.pem."""
    for name in ("", "other-"):
        cp = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                             "-subj", "/CN=localhost", "-days", "1",
                             "-keyout", str(tmp_path / f"{name}key.pem"),
                             "-out", str(tmp_path / f"{name}cert.pem")],
                            capture_output=True, text=True, timeout=30)
        assert cp.returncode == 0, f"openssl failed: {cp.stderr}"
    return tmp_path / "cert.pem", tmp_path / "key.pem"


def test_a_valid_config_passes_and_nothing_starts(gateway_factory):
    metrics = h.free_ports(1)[0]
    gw = gateway_factory({"Metrics": {"ListenAddress": f"127.0.0.1:{metrics}"},
                          "Unknown": {"Key": 1}}, start=False)
    cp = check(gw)
    assert cp.returncode == 0, cp.stderr
    assert cp.stdout.strip() == f"config {gw.config_path} is valid"
    assert "Unknown.Key is not used" in cp.stderr, cp.stderr
    # Directories that a service manager creates at start (RuntimeDirectory=) are only noted.
    for key, name in (("PidFile", "x.pid"), ("LogFile", "x.log")):
        gw.config = h.merge_config(gw.config, {key: str(gw.dir / "no-dir" / name)})
        gw.write_config()
        cp = check(gw)
        assert cp.returncode == 0, cp.stderr
        assert f"note: {gw.config_path}: {key} = " in cp.stderr and "does not exist" in cp.stderr, \
            cp.stderr
        gw.config = h.merge_config(gw.config, {key: None})
    # Nothing was started: no pid file, no shared memory, no port bound.
    assert not gw.pid_file.exists()
    for port in (gw.customer_port, gw.worker_port, gw.task_port, metrics):
        assert not h.port_accepts(port), port


def test_each_kind_of_invalid_config_names_its_key(gateway_factory, pem_pair, tmp_path):
    gw = gateway_factory(start=False)
    good = gw.config
    cert, key = pem_pair
    cases = [
        # a key's value
        ({"LogLevel": "loud"}, ["LogLevel", "debug"]),
        # a required key
        ({"Worker": {"HeartbeatMessage": None}}, ["Worker.HeartbeatMessage is required"]),
        # business addresses (§12.3)
        ({"Task": {"ListenAddress": "127.0.0.2:7000"}}, ["Task.ListenAddress", "same host"]),
        ({"Task": {"ListenAddress": f"127.0.0.1:{gw.worker_port}"}},
         ["Task.ListenAddress", "different port"]),
        # addresses that must resolve
        ({"Customer": {"ListenAddress": "no-such-host.invalid:6060"}},
         ["Customer.ListenAddress", "cannot resolve"]),
        ({"Metrics": {"ListenAddress": "no-such-host.invalid:9100"}}, ["Metrics.ListenAddress"]),
        # TLS files: missing, not PEM, a key of another certificate
        ({"Customer": {"TLSCertFile": str(tmp_path / "none.pem"), "TLSKeyFile": str(key)}},
         ["Customer.TLSCertFile", "cannot read", "No such file"]),
        ({"Customer": {"TLSCertFile": str(gw.config_path), "TLSKeyFile": str(key)}},
         ["Customer.TLSCertFile", "not a PEM certificate"]),
        ({"Customer": {"TLSCertFile": str(cert), "TLSKeyFile": str(tmp_path / "other-key.pem")}},
         ["Customer.TLSKeyFile", "does not match"]),
        # callbacks
        ({"Customer": {"OnOpenCallbackApi": "ftp://127.0.0.1/x"}},
         ["Customer.OnOpenCallbackApi", "http"]),
        ({"Customer": {"OnCloseCallbackApi": "http://[::1"}}, ["Customer.OnCloseCallbackApi"]),
    ]
    for changes, words in cases:
        gw.config = good
        cp = check_with(gw, changes)
        expect_invalid(cp, str(gw.config_path), *words)
    # The good pair passes, so the cases above failed for what they name.
    gw.config = good
    cp = check_with(gw, {"Customer": {"TLSCertFile": str(cert), "TLSKeyFile": str(key)}})
    assert cp.returncode == 0, cp.stderr
    # A TOML syntax error names its line; a missing file says so.
    gw.config_path.write_text(h.render_toml(good) + "Workers = = 3\n")
    lines = len(gw.config_path.read_text().splitlines())
    expect_invalid(check(gw), f"{gw.config_path}:{lines}:", "syntax")
    gw.config_path.unlink()
    expect_invalid(check(gw), "cannot read config file")


def test_unreadable_tls_key_is_reported_for_the_user_that_checks(gateway_factory, pem_pair):
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    cert, key = pem_pair
    key.chmod(0)
    gw = gateway_factory(start=False)
    cp = check_with(gw, {"Customer": {"TLSCertFile": str(cert), "TLSKeyFile": str(key)}})
    expect_invalid(cp, "Customer.TLSKeyFile", "Permission denied")


def test_reload_runs_the_check_before_it_signals_the_master(gateway_factory, tmp_path):
    gw = gateway_factory()
    before = gw.status()
    log_size = gw.log_path.stat().st_size
    # Parses fine (loadConfig alone accepts it), but the certificate file does not exist.
    gw.config = h.merge_config(gw.config, {"Customer": {
        "TLSCertFile": str(tmp_path / "none.pem"), "TLSKeyFile": str(tmp_path / "none.key")}})
    gw.write_config()
    cp = gw.cli("reload")
    assert cp.returncode == 1, (cp.stdout, cp.stderr)
    assert "Customer.TLSCertFile" in cp.stderr and "nothing changed" in cp.stderr, cp.stderr
    # The master was never asked: no reload in its log, the same generation serves.
    assert "reload" not in gw.log_path.read_bytes()[log_size:].decode(errors="replace")
    after = gw.status()
    assert [w["pid"] for w in after["workers"]] == [w["pid"] for w in before["workers"]]
