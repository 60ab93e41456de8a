"""The master's HTTP listener ([Metrics] ListenAddress): the status page `/`, `/status.json` and
`netsvr status --json` (the same data), next to `/metrics` (test_tls_metrics.py)."""

from __future__ import annotations

import http.client
import json
import re

import netsvr_harness as h


def get(port: int, path: str) -> tuple[int, str, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.getheader("Content-Type", ""), r.read().decode()
    finally:
        conn.close()


def test_status_json_page_and_cli_agree(gateway_factory, ws):
    mport = h.free_ports(1)[0]
    gw = gateway_factory({"Metrics": {"ListenAddress": f"127.0.0.1:{mport}"}})
    biz = gw.business(events=7)
    gw.task()  # a task link for the status to count
    clients = h.open_spread(gw, ws, biz, min_total=3)

    def counted():
        st = json.loads(get(mport, "/status.json")[2])
        return st if st["totals"]["clients"] == len(clients) else None

    st = h.wait_for(counted, 5, message="/status.json to count the clients")
    assert st["totals"]["businessLinks"] == 1 and st["totals"]["taskLinks"] == 1
    assert st["totals"]["workers"] == gw.workers
    text_status = gw.status()
    (gen,) = st["generations"]
    by_pid = {w["pid"]: w for w in gen["workers"]}
    assert set(by_pid) == {w["pid"] for w in text_status["workers"]}
    for w in text_status["workers"]:
        mine = by_pid[w["pid"]]
        assert (mine["slot"], mine["state"], mine["clients"]) == (w["slot"], w["state"], w["clients"])
    assert st["masterPid"] == text_status["master"] and st["instance"] == text_status["instance"]
    assert st["config"]["path"] == str(gw.config_path)
    assert st["config"]["text"] == gw.config_path.read_text()
    assert [m["item"] for m in st["metrics"]] == list(range(1, 14))
    opens = next(m for m in st["metrics"] if m["name"] == "client_opens")
    assert opens["count"] == len(clients)

    # one history sample a second: the series grow and agree in length
    before = len(st["history"]["time"])
    hist = h.wait_for(lambda: (x := json.loads(get(mport, "/status.json")[2])["history"])
                      and len(x["time"]) > before and x, 5, message="a new history sample")
    assert {len(v) for k, v in hist.items() if isinstance(v, list)} == {len(hist["time"])}
    assert hist["clients"][-1] == len(clients)

    # `netsvr status --json` prints the same document (read from the same shared memory)
    cp = gw.cli("status", "--json")
    assert cp.returncode == 0, cp.stderr
    cli = json.loads(cp.stdout)
    assert cli.keys() == st.keys()
    assert cli["totals"] == counted()["totals"]
    assert cli["config"] == st["config"] and cli["generations"] == st["generations"]


def test_status_page_is_self_contained_and_unknown_paths_are_404(gateway_factory):
    mport = h.free_ports(1)[0]
    # a key the gateway ignores makes the config text, and so /status.json, several lws writes long
    gw = gateway_factory({"Workers": 1, "PprofListenAddress": "x" * 20000,
                          "Metrics": {"ListenAddress": f"127.0.0.1:{mport}"}})
    code, ctype, body = get(mport, "/status.json")
    assert code == 200 and ctype == "application/json" and len(body) > 20000
    assert json.loads(body)["config"]["text"] == gw.config_path.read_text()
    code, ctype, page = get(mport, "/")
    assert code == 200 and ctype.startswith("text/html"), (code, ctype)
    assert "/status.json" in page and "<svg" in page
    # no external assets: nothing is loaded from another origin
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page), "external asset"
    assert get(mport, "/nope")[0] == 404
    # keep-alive: lws serves several requests on one connection
    conn = http.client.HTTPConnection("127.0.0.1", mport, timeout=5)
    for path in ("/status.json", "/metrics", "/status.json"):
        conn.request("GET", path)
        r = conn.getresponse()
        assert r.status == 200 and r.read()
    conn.close()
    # only where [Metrics] ListenAddress points: not on the customer port
    assert '"totals"' not in get(gw.customer_port, "/status.json")[2]


def test_status_json_shows_both_generations_during_a_reload(gateway_factory, ws):
    mport = h.free_ports(1)[0]
    gw = gateway_factory({"Workers": 1, "Metrics": {"ListenAddress": f"127.0.0.1:{mport}"}})
    biz = gw.business(events=7)
    c = ws.connect(gw.ws_url())
    biz.recv_msg(h.Cmd.ConnOpen, h.pb.ConnOpen)
    cp = gw.cli("reload", timeout=30)
    assert cp.returncode == 0, cp.stderr
    st = json.loads(get(mport, "/status.json")[2])
    gens = {g["generation"]: [w["state"] for w in g["workers"]] for g in st["generations"]}
    assert st["generation"] == 2
    assert gens == {1: ["draining"], 2: ["running"]}, gens  # the old one keeps its client
    c.close()
