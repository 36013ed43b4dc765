"""The network the CARP pair tests share: two nodes (lb-a, lb-b), each a
network namespace of the test's own, their VIP interfaces plugged into a
bridge in a third namespace (the switch; the client sits there).  Nothing
leaves these namespaces.  Each node gets its own address on the VIP network
as the seed pillar says (a provisioner's job); the product's scripts do the
rest.  Also: HTTP on the VIP on both nodes (a real HAProxy answering with
the node's name), and the straddle client, whose request is sent only once
the switch's ARP entry for the VIP names the node taking it over.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time

import lb_topology
import lb_view
from tests.support import SEED_PILLAR

NODES = ("lb-a", "lb-b")
HAPROXY = "/usr/sbin/haproxy"
CLIENT_ADDRESS = "10.2.2.1/24"  # the client's, on the switch's bridge
PORT = 18080


def seed_pair(provider, devices):
    """(model, the pair's model) of the seed pillar with `provider` and the
    nodes' interface devices {interface: device} of these tests."""
    raw = lb_topology.load_file(SEED_PILLAR)
    p = raw["pairs"]["edge"]
    p["carp"]["linux_provider"] = provider
    for node in p["nodes"].values():
        for interface, device in devices.items():
            node["interfaces"][interface]["device"] = device
    model = lb_topology.load(raw)
    return model, lb_topology.find_node(model, "lb-a")[0]


def sh(*argv, check=True):
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=20, check=check)


def wait_for(pred, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def held(ns, dev):
    """The host addresses (/32) on the node's VIP interface now."""
    out = sh("ip", "-n", ns, "-o", "-4", "addr", "show", "dev", dev).stdout
    return {w.split("/")[0] for w in out.split() if w.endswith("/32")}


@contextlib.contextmanager
def pair_network(prefix, pair_model, vip_dev):
    """{"ns": {node: netns}, "switch": netns} for the test's duration; every
    namespace (and with it every veth) is deleted afterwards."""
    tag = os.getpid() % 10000
    ns = {n: f"{prefix}{tag}{n[-1]}" for n in NODES}
    switch = f"{prefix}{tag}s"
    made = []
    try:
        sh("ip", "netns", "add", switch)
        made.append(switch)
        sh("ip", "-n", switch, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", switch, "link", "set", "br0", "up")
        for n in NODES:
            sh("ip", "netns", "add", ns[n])
            made.append(ns[n])
            sh("ip", "-n", ns[n], "link", "set", "lo", "up")
            # the node's VIP interface, plugged into the switch's port p<a|b>
            port, inside, outside = "p" + n[-1], f"{prefix}{tag}v{n[-1]}", f"{prefix}{tag}p{n[-1]}"
            sh("ip", "link", "add", inside, "netns", ns[n], "type", "veth", "peer", "name", outside, "netns", switch)
            sh("ip", "-n", switch, "link", "set", outside, "name", port)
            sh("ip", "-n", switch, "link", "set", port, "master", "br0", "up")
            sh("ip", "-n", ns[n], "link", "set", inside, "name", vip_dev)
            sh("ip", "-n", ns[n], "link", "set", vip_dev, "up")
            source = lb_view.node_view(pair_model, n)["groups"][0]["source"]
            sh("ip", "-n", ns[n], "addr", "add", f"{source}/24", "dev", vip_dev)
        yield {"ns": ns, "switch": switch}
    finally:
        for name in made:
            sh("ip", "netns", "del", name, check=False)


def kill(pid, sig=9):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return
    wait_for(lambda: not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(")")[1].split()[0] == "Z", 10)


@contextlib.contextmanager
def http_on_both(ns, run_dirs, vip):
    """A real HAProxy in each node's namespace answering HTTP on vip:PORT
    with the node's name (bound before the node holds the VIP:
    ip_nonlocal_bind), and the client's address on the switch."""
    pids = {}
    try:
        for n in NODES:
            sh("ip", "netns", "exec", ns[n], "sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1")
            cfg = run_dirs[n] / "haproxy.cfg"
            cfg.write_text(
                "global\n    master-worker\ndefaults\n    mode http\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n"
                f"frontend web\n    bind {vip}:{PORT}\n    http-request return status 200 content-type text/plain string {n}\n"
            )
            pidfile = run_dirs[n] / "haproxy.pid"
            pidfile.unlink(missing_ok=True)
            sh("ip", "netns", "exec", ns[n], HAPROXY, "-W", "-D", "-q", "-f", str(cfg), "-p", str(pidfile))
            assert wait_for(lambda pidfile=pidfile: pidfile.exists() and pidfile.read_text().strip().isdigit(), 10)
            pids[n] = int(pidfile.read_text().split()[0])
        yield pids
    finally:
        for pid in pids.values():
            kill(pid)


CLIENT = r"""
import json, socket, struct, sys, threading, time
vip, port = sys.argv[1], int(sys.argv[2])
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
out, deadline = [], time.monotonic() + 120
while not stop.is_set() and time.monotonic() < deadline:
    t = time.monotonic()
    why, retrans = "", 0
    try:
        with socket.create_connection((vip, port), timeout=3) as s:
            s.settimeout(3)
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            ok = b" 200 " in s.recv(64)
            why = "" if ok else "no 200"
            # tcp_info.tcpi_total_retrans (offset 100): a SYN or request the
            # network lost and the kernel sent again
            retrans = struct.unpack_from("I", s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104), 100)[0]
    except OSError as exc:
        ok, why = False, type(exc).__name__
    out.append((round(t, 4), ok, why, retrans))
    time.sleep(max(0.0, 0.01 - (time.monotonic() - t)))
print(json.dumps(out))
"""


class Asking:
    """CLIENT in the switch's namespace, asking vip:PORT every 10 ms (a new
    connection each time) until stop()."""

    def __init__(self, switch, vip):
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", switch, "python3", "-c", CLIENT, vip, str(PORT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def stop(self):
        """(results, failed, resent): every request; the failed ones (refused,
        reset, no answer in 3 s) as (time, why); the answered ones that
        needed a retransmission as (time, count)."""
        out, _ = self.proc.communicate("", timeout=60)
        results = json.loads(out)
        failed = [(t, why) for t, ok, why, _ in results if not ok]
        resent = [(t, n) for t, ok, _, n in results if ok and n]
        return results, failed, resent


# A connection opened to the VIP, idle while the neighbour's ARP entry moves
# to the other node, then asked: its request reaches the new master first.
STRADDLE_CLIENT = r"""
import json, socket, subprocess, sys, time
vip, port, mac = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = socket.create_connection((vip, port), timeout=5)
print("connected", flush=True)
sys.stdin.readline()  # the handover has been started
moved, deadline = False, time.monotonic() + 20
while not moved and time.monotonic() < deadline:
    moved = f"lladdr {mac} " in subprocess.run(["ip", "neigh", "show", vip], capture_output=True, text=True).stdout
    time.sleep(0.005)
try:
    s.settimeout(5)
    s.sendall(b"GET / HTTP/1.0\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    answer = data.decode(errors="replace").rsplit("\r\n\r\n", 1)[-1] if b" 200 " in data else "no 200"
except OSError as exc:
    answer = type(exc).__name__
print(json.dumps({"moved": moved, "answer": answer}))
"""


def straddle(net, vip_dev, vip, to, set_off):
    """Opens a connection to the VIP from the switch, calls set_off() (which
    starts the handover to node `to`) and, once the switch's ARP entry for
    the VIP names `to`'s MAC, sends a request on that connection: what
    answered (a node's name, or the client's exception)."""
    mac = json.loads(sh("ip", "-n", net["ns"][to], "-j", "link", "show", vip_dev).stdout)[0]["address"]
    client = subprocess.Popen(
        ["ip", "netns", "exec", net["switch"], "python3", "-c", STRADDLE_CLIENT, vip, str(PORT), mac],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert client.stdout.readline().strip() == "connected"
        set_off()
        client.stdin.write("go\n")
        client.stdin.flush()
        out, _ = client.communicate(timeout=60)
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(10)
    result = json.loads(out)
    assert result["moved"], f"the switch never learnt {to}'s MAC for {vip}"
    return result["answer"]
