"""Fixtures for the netsvr integration tests.

Run: NETSVR_BIN=<abs>/build/netsvr NETSVR_PROTO_PY=<abs>/build/proto_py \
     /usr/bin/python3 -m pytest -q tests/integration
"""

from __future__ import annotations

import os

import pytest

import netsvr_harness as h


def _binary() -> str:
    b = os.environ.get("NETSVR_BIN") or str(h.REPO_ROOT / "build" / "netsvr")
    return b


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def _test_failed(request) -> bool:
    for when in ("setup", "call"):
        rep = getattr(request.node, "rep_" + when, None)
        if rep is not None and rep.failed:
            return True
    return False


@pytest.fixture(scope="session")
def netsvr_bin() -> str:
    b = _binary()
    if not (os.path.isfile(b) and os.access(b, os.X_OK)):
        pytest.fail(f"gateway binary {b!r} not found or not executable (set NETSVR_BIN)",
                    pytrace=False)
    return os.path.abspath(b)


@pytest.fixture
def gateway_factory(netsvr_bin, tmp_path, request):
    """make(overrides=None, start=True, name=None, host="127.0.0.1") -> Gateway. Every gateway made is stopped
    (or killed) at teardown; if the test failed, the gateway logs' tails are printed."""
    made: list[h.Gateway] = []

    def make(overrides: dict | None = None, start: bool = True, name: str | None = None,
             timeout: float = 10.0, host: str = "127.0.0.1") -> h.Gateway:
        gw = h.Gateway(netsvr_bin, tmp_path, overrides, name=name or f"gw{len(made)}", host=host)
        made.append(gw)
        if start:
            gw.start(timeout=timeout)
        return gw

    yield make

    problems = []
    for gw in made:
        problems += [f"{gw.name}: {p}" for p in gw.cleanup()]
    if _test_failed(request) or problems:
        for gw in made:
            print(gw.log_tail(80))
    if problems and not _test_failed(request):
        pytest.fail("gateway teardown problems: " + "; ".join(problems), pytrace=False)


@pytest.fixture
def gateway(gateway_factory) -> h.Gateway:
    """A started gateway with Workers=2 and the default test config."""
    return gateway_factory()


@pytest.fixture
def ws():
    """Websocket client pool (asyncio loop in a thread); every client is closed at teardown."""
    pool = h.WsLoop()
    yield pool
    pool.close()
