"""RSS per active connection of the gateway with permessage-deflate negotiated and without
(issue 5). Usage: /usr/bin/python3 tests/stress/compression_memory.py [N=1000]
Each connection sends three 3 KB messages and gets three back; memory = growth of the summed
worker VmRSS after N connections beyond 50 warm-up ones, divided by N."""
import os, sys, time, tempfile, resource
from pathlib import Path
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tests/integration')); sys.path.insert(0, str(ROOT / 'tests/unit'))
os.environ.setdefault("NETSVR_PROTO_PY", str(ROOT / 'build/proto_py'))
import netsvr_harness as h
from netsvr_harness import Cmd, pb
from pm_deflate_probe_test import Client, send_compressed
s, hd = resource.getrlimit(resource.RLIMIT_NOFILE); resource.setrlimit(resource.RLIMIT_NOFILE, (hd, hd))
N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
TEXT = (" ".join(str(i * 7919 % 10007) for i in range(700))).encode()[:3072]

def rss(pids):
    tot = 0
    for p in pids:
        for line in open(f"/proc/{p}/status"):
            if line.startswith("VmRSS:"): tot += int(line.split()[1])
    return tot

def run(offer):
    tmp = tempfile.mkdtemp()
    gw = h.Gateway(os.environ.get('NETSVR_BIN', str(ROOT / 'build/netsvr')), Path(tmp), {"Customer": {"CompressionLevel": 6}}, name="mem")
    gw.start()
    try:
        pids = [w["pid"] for w in gw.status()["workers"]]
        task = gw.task()
        keep = []
        def open_some(n):
            out = []
            for _ in range(n):
                cl = Client(gw.customer_port, ext=offer, path="/netsvr")
                assert (cl.ext is not None) == (offer is not None), cl.ext
                for _ in range(3):
                    if offer: send_compressed(cl, TEXT)
                    else: cl.send_frame(1, TEXT)
                out.append(cl)
            return out
        def broadcast(clients):
            for _ in range(3):
                task.send(Cmd.Broadcast, pb.Broadcast(data=TEXT))
            for cl in clients:
                for _ in range(3):
                    rsv, op, payload = cl.recv_message()
                    assert payload == TEXT and rsv == (0x40 if offer else 0)
        keep += open_some(50); broadcast(keep); time.sleep(0.5)
        before = rss(pids)
        new = open_some(N); keep += new; broadcast(keep); time.sleep(1)
        after = rss(pids)
        return before, after
    finally:
        for cl in locals().get("keep", []): cl.close()
        gw.stop()

res = {}
for name, offer in (("plain", None), ("compressed", "permessage-deflate; client_max_window_bits")):
    b, a = run(offer)
    res[name] = (a - b) / N
    print(f"{name:10s}: workers' VmRSS {b} kB -> {a} kB for {N} connections: {res[name]:.2f} KiB each")
print(f"difference: {res['compressed'] - res['plain']:.2f} KiB per active connection")
