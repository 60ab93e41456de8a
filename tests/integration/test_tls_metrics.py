"""TLS on the customer listener (Customer.TLSCertFile / TLSKeyFile) and the Prometheus endpoint
([Metrics] ListenAddress), both additions of ours (README, etc/netsvr.toml)."""

from __future__ import annotations

import http.client
import re
import socket
import ssl
import subprocess
import urllib.request

import pytest

import netsvr_harness as h
from netsvr_harness import Cmd, pb
from test_commands_common import CMD
from test_reload import do_reload


def _metrics(task) -> dict:
    return dict(task.request(CMD.Metrics, b"", pb.MetricsResp).items)


@pytest.fixture
def self_signed(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cp = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                         "-subj", "/CN=localhost", "-days", "1",
                         "-keyout", str(key), "-out", str(cert)],
                        capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, f"openssl failed: {cp.stderr}"
    return cert, key


def test_tls_wss_end_to_end(gateway_factory, ws, self_signed):
    cert, key = self_signed
    gw = gateway_factory({"Customer": {"TLSCertFile": str(cert), "TLSKeyFile": str(key)}})
    biz = gw.business(events=7)
    task = gw.task()
    ctx = ssl.create_default_context(cafile=str(cert))  # verifies the chain and CN=localhost

    # plain GET over https (TLS to 127.0.0.1, certificate checked for "localhost")
    raw = socket.create_connection(("127.0.0.1", gw.customer_port), timeout=5)
    with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        resp = http.client.HTTPResponse(tls)
        resp.begin()
        body = resp.read(resp.length) if resp.length is not None else resp.read()
    assert (resp.status, body) == (200, b"Hello netsvr")

    # wss:// end to end: ConnOpen, Transfer, SingleCast back
    q = "tls=1"
    url = f"wss://127.0.0.1:{gw.customer_port}/netsvr?{q}"
    c = ws.connect(url, ssl=ctx, server_hostname="localhost")
    ev = biz.recv_msg(Cmd.ConnOpen, pb.ConnOpen)
    assert ev.rawQuery == q and ev.uniqId.startswith(gw.uniq_prefix)
    c.send("over tls")
    tr = biz.recv_msg(Cmd.Transfer, pb.Transfer)
    assert (tr.uniqId, tr.data) == (ev.uniqId, b"over tls")
    task.send(CMD.SingleCast, pb.SingleCast(uniqId=ev.uniqId, data=b"secure reply"))
    assert c.recv() == "secure reply"
    c.close()
    assert biz.recv_msg(Cmd.ConnClose, pb.ConnClose).uniqId == ev.uniqId

    # a plaintext websocket upgrade on the TLS port does not open a connection
    with pytest.raises(Exception):
        ws.connect(gw.ws_url(query="plain=1"), timeout=2)
    biz.expect_silent(0.3)


# --------------------------------------------------------------------------------------------
# Prometheus
# --------------------------------------------------------------------------------------------

_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def scrape(port: int) -> tuple[str, list[tuple[str, dict, float]]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.status == 200
        ctype = r.headers.get("Content-Type", "")
        text = r.read().decode()
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _LINE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = dict(_LABEL.findall(m.group(2) or ""))
        samples.append((m.group(1), labels, float(m.group(3))))
    return ctype, samples


def _totals(samples) -> dict[int, int]:
    return {int(lab["item"]): int(v) for name, lab, v in samples
            if name.startswith("netsvr_") and name.endswith("_total") and "item" in lab}


def test_prometheus_endpoint(gateway_factory, ws):
    mport = h.free_ports(1)[0]
    items = [1, 2, 4, 6, 8]
    gw = gateway_factory({"Workers": 2,
                          "Metrics": {"Item": items, "ListenAddress": f"127.0.0.1:{mport}"}})
    h.wait_for(lambda: h.port_accepts(mport), 5, message="the metrics port to accept")
    biz = gw.business(events=7)
    task = gw.task()
    clients = h.open_spread(gw, ws, biz, min_total=4)
    task.send(CMD.Broadcast, pb.Broadcast(data=b"prom"))
    assert ws.recv_all(clients) == ["prom"] * len(clients)

    def settled():
        _ctype, s = scrape(mport)
        cmd = _metrics(task)
        tot = _totals(s)
        ok = all(tot.get(i) == cmd[i].count for i in (1, 6)) and cmd[6].count >= len(clients)
        return (s, cmd) if ok else None

    samples, cmd = h.wait_for(settled, 5, interval=0.1,
                              message=lambda: f"Prometheus item 1/6 == Metrics command "
                                              f"({_totals(scrape(mport)[1])} vs "
                                              f"{ {k: v.count for k, v in _metrics(task).items()} })")
    ctype, _ = scrape(mport)
    assert ctype.startswith("text/plain"), ctype
    tot = _totals(samples)
    assert sorted(tot) == items, f"items on /metrics {sorted(tot)}, enabled {items}"
    assert sorted(cmd) == items
    assert tot[1] == len(clients)
    names = {name for name, _l, _v in samples}
    for i in items:
        assert any(n.endswith("_total") and lab.get("item") == str(i) for n, lab, _v in samples)
    assert "netsvr_generation" in names

    st = gw.status()
    pids = {str(w["pid"]) for w in st["workers"]}
    conns = [(lab, v) for name, lab, v in samples if name == "netsvr_connections"]
    assert {lab["pid"] for lab, _v in conns} == pids
    assert {lab["slot"] for lab, _v in conns} == {"0", "1"}
    assert all(lab.get("state") == "running" and "generation" in lab for lab, _v in conns), conns
    assert sum(v for _l, v in conns) == len(clients)
    by_slot = {int(lab["slot"]): int(v) for lab, v in conns}
    assert by_slot == gw.worker_clients()
    links = [(lab, v) for name, lab, v in samples if name == "netsvr_business_links"]
    assert {lab["pid"] for lab, _v in links} == pids
    assert sum(v for _l, v in links) == 1

    # a close shows in the gauges and in item 2
    gone = clients[0]
    gone.close()
    assert biz.recv_msg(Cmd.ConnClose, pb.ConnClose).uniqId == gone.uniq_id

    def after_close():
        _c, s = scrape(mport)
        conns_now = sum(v for name, _l, v in s if name == "netsvr_connections")
        t = _totals(s)
        return s if conns_now == len(clients) - 1 and t.get(2) == 1 else None

    h.wait_for(after_close, 5, interval=0.1,
               message=lambda: f"gauges to drop to {len(clients) - 1} and item 2 to be 1: "
                               f"{[x for x in scrape(mport)[1] if 'connections' in x[0] or x[1].get('item') == '2']}")
    _c, s = scrape(mport)
    assert _totals(s)[2] == _metrics(task)[2].count == 1


def test_reload_changes_the_metrics_items_but_not_the_metrics_address(gateway_factory):
    mport = h.free_ports(1)[0]
    gw = gateway_factory({"Workers": 1, "Metrics": {"Item": [1, 2], "ListenAddress": f"127.0.0.1:{mport}"}})
    h.wait_for(lambda: h.port_accepts(mport), 5, message="the metrics port to accept")
    assert sorted(_totals(scrape(mport)[1])) == [1, 2]
    cp, _ = do_reload(gw, {"Metrics": {"Item": [1, 6, 7]}})
    assert cp.returncode == 0, (cp.stdout, cp.stderr)
    assert sorted(_totals(scrape(mport)[1])) == [1, 6, 7]
    other = h.free_ports(1)[0]
    cp, _ = do_reload(gw, {"Metrics": {"ListenAddress": f"127.0.0.1:{other}"}})
    assert cp.returncode == 1 and "cannot change on reload" in cp.stderr, (cp.stdout, cp.stderr)
    assert sorted(_totals(scrape(mport)[1])) == [1, 6, 7]
