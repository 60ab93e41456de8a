"""The Debian package (issue 14, `make deb`): built with CPack from the build directory of the
binary under test, installed with dpkg -i, checked, started and stopped as its system user, and
purged. It changes the machine, so it runs only as root (CI: a fresh Debian machine) and only
where no netsvr package is installed already."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path

import pytest

import netsvr_harness as h

CONFIG = Path("/etc/netsvr/netsvr.toml")
UNIT = Path("/usr/lib/systemd/system/netsvr.service")


def run(*args: str, timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, **kw)


def installed() -> bool:
    cp = run("dpkg-query", "-W", "-f=${Status}", "netsvr")
    return cp.returncode == 0 and "ok installed" in cp.stdout


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def dpkg(*args: str) -> subprocess.CompletedProcess:
    """dpkg, retried while another dpkg or apt holds the lock (on a shared machine)."""
    result: list[subprocess.CompletedProcess] = []

    def attempt():
        cp = run("dpkg", *args, timeout=120)
        result[:] = [cp]
        return cp.returncode == 0 or "lock" not in cp.stderr

    h.wait_for(attempt, 60, interval=1, message="the dpkg lock")
    return result[0]


@pytest.fixture
def deb(netsvr_bin, tmp_path) -> Path:
    if os.geteuid() != 0:
        pytest.skip("installing a package needs root")
    missing = [t for t in ("cpack", "dpkg", "dpkg-deb", "dpkg-shlibdeps", "setpriv")
               if not shutil.which(t)]
    if missing:
        pytest.skip(f"missing {missing}")
    config = Path(netsvr_bin).parent / "CPackConfig.cmake"
    if not config.is_file():
        pytest.skip(f"no {config}: the binary was not built by this project's CMake")
    if installed():
        pytest.skip("a netsvr package is already installed here; not ours to replace")
    cp = run("cpack", "-G", "DEB", "--config", str(config), "-B", str(tmp_path / "deb"),
             cwd=config.parent, timeout=180)
    assert cp.returncode == 0, cp.stdout + cp.stderr
    version = run(netsvr_bin, "version").stdout.split()[1]
    path = tmp_path / "deb" / f"netsvr_{version}_amd64.deb"
    assert path.is_file(), list((tmp_path / "deb").iterdir())
    return path


def test_deb_installs_checks_starts_and_stops(deb):
    fields = run("dpkg-deb", "-f", str(deb), "Package", "Depends").stdout
    depends = fields.split("Depends:", 1)[1]
    for lib in ("libwebsockets17", "libwebsockets-evlib-uv", "libuv1", "libprotobuf",
                "libcurl", "passwd"):
        assert lib in depends, fields
    files = run("dpkg-deb", "-c", str(deb)).stdout
    for f in ("./usr/bin/netsvr", f".{CONFIG}", f".{UNIT}", "./usr/share/doc/netsvr/CLUSTER.md"):
        assert f in files, files
    assert run("dpkg-deb", "-I", str(deb), "conffiles").stdout.split() == [str(CONFIG)]

    user_was_there = user_exists("netsvr")
    workdir = Path(tempfile.mkdtemp(prefix="netsvr-deb-"))
    try:
        cp = dpkg("-i", str(deb))
        assert cp.returncode == 0, cp.stdout + cp.stderr
        assert installed()
        user = pwd.getpwnam("netsvr")  # created by postinst
        assert user.pw_uid < 1000 and user.pw_shell.endswith("nologin"), user
        cp = run("/usr/bin/netsvr", "check", "-c", str(CONFIG))
        assert (cp.returncode, cp.stdout.strip()) == (0, f"config {CONFIG} is valid"), cp.stderr
        assert 'PidFile = "/run/netsvr/netsvr.pid"' in CONFIG.read_text()
        if shutil.which("systemd-analyze"):
            cp = run("systemd-analyze", "verify", str(UNIT))
            assert cp.returncode == 0, cp.stdout + cp.stderr

        # The installed binary with the installed config, as the service would run it (user
        # netsvr), on free ports and with the pid file in a directory of its own.
        cfg = tomllib.loads(CONFIG.read_text())
        ports = h.free_ports(3)
        for section, port in zip(("Customer", "Worker", "Task"), ports):
            cfg[section]["ListenAddress"] = f"127.0.0.1:{port}"
        cfg["PidFile"] = str(workdir / "netsvr.pid")
        cfg["Workers"] = 2
        (workdir / "netsvr.toml").write_text(h.render_toml(cfg))
        workdir.chmod(0o755)
        os.chown(workdir, user.pw_uid, user.pw_gid)
        as_netsvr = ["setpriv", "--reuid=netsvr", "--regid=netsvr", "--init-groups",
                     "/usr/bin/netsvr"]
        cli = lambda *a: run(*as_netsvr, *a, "-c", str(workdir / "netsvr.toml"))  # noqa: E731
        cp = cli("start", "--daemon")
        assert cp.returncode == 0, cp.stderr + (workdir / "netsvr.log").read_text()
        st = h.parse_status(cli("status").stdout)
        assert st["master"] and [w["state"] for w in st["workers"]] == ["running"] * 2, st
        master = st["master"]
        uid = next(l for l in Path(f"/proc/{master}/status").read_text().splitlines()
                   if l.startswith("Uid:"))
        assert uid.split()[1] == str(user.pw_uid), uid
        status, _, body = h.http_request(ports[0], "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (status, body) == (200, b"Hello netsvr")
        cp = cli("stop")
        assert cp.returncode == 0, cp.stderr
        h.wait_for(lambda: not h.pid_alive(master), 5, message="the master to exit")
        assert not (workdir / "netsvr.pid").exists()
    finally:
        purged = None
        if installed():
            leftover = workdir / "netsvr.toml"
            if leftover.exists() and h.parse_status(
                    run("/usr/bin/netsvr", "status", "-c", str(leftover)).stdout)["master"]:
                run("/usr/bin/netsvr", "stop", "-c", str(leftover))
            purged = dpkg("--purge", "netsvr")
        if not user_was_there and user_exists("netsvr"):
            run("userdel", "netsvr")
        shutil.rmtree(workdir, ignore_errors=True)
    assert purged is not None and purged.returncode == 0, purged
    assert not installed() and not CONFIG.exists() and not Path("/usr/bin/netsvr").exists()
