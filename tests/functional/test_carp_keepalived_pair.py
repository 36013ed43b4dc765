"""Two real keepalived, one per network namespace of this test's own, joined
by a bridge in a third one (nothing leaves them), each with the config lb_render renders
for lb-a and lb-b and the scripts the carp module installs: the VIPs move on
maintenance, on leaving it (preemption), on link loss and on the link's
return, and no read of both nodes, every few milliseconds, finds a VIP on
both (break before make: the new master adds a VIP only once no other host
answers ARP for it).  The lab (tests/lab/test_carp_lab.py) does the same
with salt-minions and a client; this one isolates keepalived and the
scripts."""

import contextlib
import os
import threading
import time

import carp_pair_net as net
import pytest
from carp_pair_net import HAPROXY, NODES, kill, sh

import carp_common
import lb_carp_vips
import lb_render_linux
import lb_view
from lab.events_tools import VrrpDrop
from tests.support import install_carp_programs

KEEPALIVED = "/usr/sbin/keepalived"
VIP_DEV, SYS_DEV = "kv0", "ks0"
MOVE_TIMEOUT = 20.0  # seconds for the VIPs to move (bounded waits, not timing assertions)

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not os.path.exists(KEEPALIVED), reason="needs root and keepalived")


def held(ns):
    """The VIP addresses on the node's VIP interface now."""
    return net.held(ns, VIP_DEV)


class Sampler(threading.Thread):
    """Reads lb-a, lb-b, lb-a again, as fast as `ip` answers: a VIP counts
    as on both only if lb-a held it at both of its reads and lb-b at its
    read, in between."""

    def __init__(self, ns, vips):
        super().__init__(daemon=True)
        self.ns, self.vips = ns, vips
        self.overlaps, self.samples = [], 0
        self.halt = threading.Event()

    def run(self):
        deadline = time.monotonic() + 300
        a = held(self.ns["lb-a"])
        while not self.halt.is_set() and time.monotonic() < deadline:
            b = held(self.ns["lb-b"])
            a2 = held(self.ns["lb-a"])
            both = a & b & a2 & self.vips
            if both:
                self.overlaps.append((round(time.monotonic(), 3), sorted(both)))
            self.samples += 1
            a = a2

    def stop(self):
        self.halt.set()
        self.join(10)


@pytest.fixture
def pair(tmp_path):
    _, pair_model = net.seed_pair("keepalived", {"vip": VIP_DEV, "systems": SYS_DEV})
    pids, run_dirs = {}, []
    with net.pair_network("lbkp", pair_model, VIP_DEV) as network:
        ns = network["ns"]
        try:
            for n in NODES:
                # the systems interface keepalived tracks: a veth pair, both ends here and up
                sh("ip", "-n", ns[n], "link", "add", SYS_DEV, "type", "veth", "peer", "name", SYS_DEV + "p")
                sh("ip", "-n", ns[n], "link", "set", SYS_DEV + "p", "up")
                sh("ip", "-n", ns[n], "link", "set", SYS_DEV, "up")
            dirs = {}
            for n in NODES:
                d = {k: tmp_path / n / k for k in ("state", "sbin", "run")}
                for path in d.values():
                    path.mkdir(parents=True)
                no_bird = str(d["run"] / "no-bird.ctl")
                install_carp_programs(
                    d["sbin"],
                    [lb_render_linux.KEEPALIVED_VIPS_SCRIPT, lb_render_linux.ROUTING_READY_SCRIPT, lb_render_linux.HAPROXY_SERVING_SCRIPT],
                    edit=lambda text, no_bird=no_bird: text.replace("/run/bird/bird.ctl", no_bird),
                )
                (d["state"] / lb_render_linux.MAINTENANCE_TRACK_FILE).write_text("0\n")
                conf = tmp_path / n / "keepalived.conf"
                conf.write_text(
                    lb_render_linux.render_keepalived(
                        pair_model,
                        n,
                        state_dir=str(d["state"]),
                        script_dir=str(d["sbin"]),
                        run_dir=str(d["run"]),
                        haproxy_pidfile=str(d["run"] / "haproxy.pid"),
                    )
                )
                run_dirs.append(d["run"])
                sh("ip", "netns", "exec", ns[n], *carp_common.keepalived_argv(KEEPALIVED, str(conf), str(d["run"])))
                pidfile = d["run"] / "keepalived.pid"
                deadline = time.monotonic() + 10
                while time.monotonic() < deadline and not (pidfile.exists() and pidfile.read_text().strip().isdigit()):
                    time.sleep(0.05)
                pids[n] = int(pidfile.read_text())
                dirs[n] = d
            vips = {str(g["vip"].ip) for g in lb_view.node_view(pair_model, "lb-a")["groups"]}
            yield {"ns": ns, "switch": network["switch"], "dirs": dirs, "vips": vips, "pids": pids}
        finally:
            # every keepalived started, by its pid file (also one whose pid was
            # not read yet when something failed)
            for run in run_dirs:
                pidfile = run / "keepalived.pid"
                deadline = time.monotonic() + 5
                while time.monotonic() < deadline and pidfile.exists() and not pidfile.read_text().strip().isdigit():
                    time.sleep(0.05)  # created, not yet written
                if pidfile.exists() and pidfile.read_text().strip().isdigit():
                    pids[str(run)] = int(pidfile.read_text())
            for pid in set(pids.values()):
                try:
                    os.kill(pid, 15)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in pids.values()):
                time.sleep(0.1)
            time.sleep(0.5)  # the FIFO scripts release and exit


def wait_for(pred, timeout=MOVE_TIMEOUT):
    return net.wait_for(pred, timeout)


def on(pair, node):
    """Every VIP on `node`, none on its peer."""
    other = NODES[1 - NODES.index(node)]
    return held(pair["ns"][node]) >= pair["vips"] and not (held(pair["ns"][other]) & pair["vips"])


def test_the_vips_move_and_are_never_on_both_nodes(pair):
    ns, vips = pair["ns"], pair["vips"]
    assert wait_for(lambda: on(pair, "lb-a")), (held(ns["lb-a"]), held(ns["lb-b"]))
    track = pair["dirs"]["lb-a"]["state"] / lb_render_linux.MAINTENANCE_TRACK_FILE
    sampler = Sampler(ns, vips)
    sampler.start()
    try:
        # maintenance on lb-a (what carp.maintenance writes): lb-b takes every VIP
        track.write_text("1\n")
        assert wait_for(lambda: on(pair, "lb-b")), (held(ns["lb-a"]), held(ns["lb-b"]))
        # leaving it: lb-a preempts
        track.write_text("0\n")
        assert wait_for(lambda: on(pair, "lb-a")), (held(ns["lb-a"]), held(ns["lb-b"]))
        # link loss on lb-a (its switch port goes down), then its return (preemption again)
        sh("ip", "-n", pair["switch"], "link", "set", "pa", "down")
        assert wait_for(lambda: held(ns["lb-b"]) >= vips), held(ns["lb-b"])
        sh("ip", "-n", pair["switch"], "link", "set", "pa", "up")
        assert wait_for(lambda: on(pair, "lb-a")), (held(ns["lb-a"]), held(ns["lb-b"]))
    finally:
        sampler.stop()
    assert sampler.samples > 100
    assert sampler.overlaps == []

    # the blackhole routes of the handovers are gone 3 s after each release
    def blackholes():
        return {n: sh("ip", "-n", ns[n], "route", "show", "type", "blackhole").stdout.split() for n in NODES}

    assert wait_for(lambda: blackholes() == {n: [] for n in NODES}, 10), blackholes()

    # while it holds them, lb-a announces its VIPs by ARP every 10 s (a
    # neighbour that learnt the peer's MAC in a split brain comes back)
    sniff = (
        "import socket, time\n"
        "s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806)); s.bind(('br0', 0)); s.settimeout(0.5)\n"
        "end = time.time() + 12\n"
        "while time.time() < end:\n"
        "    try: f = s.recv(256)\n"
        "    except socket.timeout: continue\n"
        "    if f[20:22] == b'\\x00\\x01' and f[28:32] == f[38:42]: print(socket.inet_ntoa(f[28:32]), f[6:12].hex())\n"
    )
    out = sh("ip", "netns", "exec", pair["switch"], "python3", "-c", sniff).stdout.split("\n")
    announced = {line.split()[0] for line in out if line.strip()}
    assert announced == vips, out
    # the states the scripts recorded, as carp.status reads them
    for vhid in (4, 5, 44, 55):
        rec = carp_common.parse_state_file((pair["dirs"]["lb-a"]["state"] / "state" / str(vhid)).read_text())
        assert rec["state"] == "MASTER" and rec["priority"] is not None
        assert carp_common.parse_state_file((pair["dirs"]["lb-b"]["state"] / "state" / str(vhid)).read_text())["state"] == "BACKUP"


def test_a_reload_keeps_the_vips_and_a_stop_releases_them(pair):
    ns, vips = pair["ns"], pair["vips"]
    assert wait_for(lambda: on(pair, "lb-a"))
    gone = []
    watch = threading.Event()

    def watcher():
        deadline = time.monotonic() + 60
        while not watch.is_set() and time.monotonic() < deadline:
            missing = vips - held(ns["lb-a"])
            if missing:
                gone.append(sorted(missing))

    t = threading.Thread(target=watcher, daemon=True)
    t.start()
    try:
        for _ in range(3):
            os.kill(pair["pids"]["lb-a"], 1)  # SIGHUP: keepalived restarts its FIFO script
            time.sleep(1.0)
    finally:
        watch.set()
        t.join(10)
    assert gone == []  # never dropped, not even for one read
    assert on(pair, "lb-a")
    # the second chance's nft table: one, made by the copy running now
    # (each reload replaced it); the copies before did not delete it
    assert wait_for(lambda: _tables(ns["lb-a"]) == [lb_carp_vips.HANDOVER_TABLE], 10), _tables(ns["lb-a"])
    # it exempts nothing from connection tracking: a host firewall that
    # accepts replies by `ct state established` keeps working
    listed = sh("ip", "netns", "exec", ns["lb-a"], "nft", "list", "table", "ip", lb_carp_vips.HANDOVER_TABLE).stdout
    assert "dup to ip daddr map @takeover" in listed and "notrack" not in listed, listed

    # a copy started later, after the VRRP process (here by the reload
    # carp.present sends when the last copy died; also the reload that
    # replaces an earlier version's notify scripts, where keepalived itself
    # removes its old VIPs) applies the recorded states: a VIP lost
    # meanwhile comes back, without a transition
    sh("ip", "-n", ns["lb-a"], "addr", "del", "10.2.2.44/32", "dev", VIP_DEV)
    vrrp = int((pair["dirs"]["lb-a"]["run"] / "keepalived-vrrp.pid").read_text())
    copies = carp_common.children_running(vrrp, "lb-carp-keepalived-vips")
    # it runs real-time, so a busy node does not delay it
    assert [os.sched_getscheduler(p) & ~os.SCHED_RESET_ON_FORK for p in copies] == [os.SCHED_RR]
    for pid in copies:
        os.kill(pid, 9)
    os.kill(pair["pids"]["lb-a"], 1)
    assert wait_for(lambda: on(pair, "lb-a"), 10), (held(ns["lb-a"]), held(ns["lb-b"]))
    # keepalived stops: its FIFO script releases every VIP, then lb-b takes them
    sampler = Sampler(ns, vips)
    sampler.start()
    try:
        os.kill(pair["pids"]["lb-a"], 15)
        assert wait_for(lambda: on(pair, "lb-b")), (held(ns["lb-a"]), held(ns["lb-b"]))
    finally:
        sampler.stop()
    assert sampler.overlaps == []
    assert wait_for(
        lambda: all((pair["dirs"]["lb-a"]["state"] / "state" / str(v)).read_text().split()[0] == "STOP" for v in (4, 5, 44, 55)), 10
    )
    # and the table goes with keepalived (lb-b's stays)
    assert wait_for(lambda: _tables(ns["lb-a"]) == [], 10), _tables(ns["lb-a"])
    assert _tables(ns["lb-b"]) == [lb_carp_vips.HANDOVER_TABLE]


def _tables(netns):
    """The nft tables of family ip in the namespace."""
    out = sh("ip", "netns", "exec", netns, "nft", "list", "tables", "ip").stdout
    return [line.split()[2] for line in out.splitlines() if line.startswith("table ip ")]


def VrrpCut(switch, ports=("pa", "pb")):  # noqa: N802 - a class, as in the lab
    """Drop VRRP on its way from the switch to both nodes, nothing else:
    each node stops hearing the other while both stay reachable."""
    return VrrpDrop(ports, netns=switch)


def test_a_split_brain_heals_with_the_primary_holding_every_vip(pair):
    """Both nodes MASTER while VRRP is cut; when it returns, lb-a (higher
    priority) hears lb-b's lower-priority advertisement and keepalived writes
    MASTER_RX_LOWER_PRI to the FIFO: an event, not a state.  Read as a state
    it released lb-a's VIPs while keepalived stayed MASTER and lb-b went
    BACKUP: no node held any VIP (issue 17's outage).  Three cycles."""
    ns, vips = pair["ns"], pair["vips"]
    assert wait_for(lambda: on(pair, "lb-a")), (held(ns["lb-a"]), held(ns["lb-b"]))
    for cycle in range(3):
        with VrrpCut(pair["switch"]):
            assert wait_for(lambda: held(ns["lb-b"]) >= vips), (cycle, held(ns["lb-b"]))
            assert held(ns["lb-a"]) >= vips  # lb-a kept them: a split brain
        assert wait_for(lambda: on(pair, "lb-a")), (cycle, held(ns["lb-a"]), held(ns["lb-b"]))
        time.sleep(1.0)  # and it stays so (no late release)
        assert on(pair, "lb-a"), (cycle, held(ns["lb-a"]), held(ns["lb-b"]))
        for vhid in (4, 5, 44, 55):
            rec = carp_common.parse_state_file((pair["dirs"]["lb-a"]["state"] / "state" / str(vhid)).read_text())
            assert rec["state"] == "MASTER", (cycle, vhid, rec)


def _start_haproxy(pair, node):
    """A real HAProxy (master-worker, daemon) in the node's namespace, with
    the pid file keepalived's lb_serving check reads; its pid."""
    d = pair["dirs"][node]
    cfg = d["run"] / "haproxy.cfg"
    cfg.write_text(
        "global\n    master-worker\ndefaults\n    mode tcp\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\nlisten hold\n    bind 127.0.0.1:18080\n    server s 127.0.0.1:18081\n"
    )
    pidfile = d["run"] / "haproxy.pid"
    pidfile.unlink(missing_ok=True)
    sh("ip", "netns", "exec", pair["ns"][node], HAPROXY, "-W", "-D", "-q", "-f", str(cfg), "-p", str(pidfile))
    assert wait_for(lambda: pidfile.exists() and pidfile.read_text().strip().isdigit(), 10)
    return int(pidfile.read_text().split()[0])


@pytest.mark.skipif(not os.path.exists(HAPROXY), reason="needs haproxy")
def test_the_master_gives_up_the_vips_while_its_haproxy_does_not_run(pair):
    """No salt-master, no reactor: keepalived's lb_serving check.
    HAProxy killed on lb-a (the MASTER): lb-b takes every VIP, never both;
    HAProxy back on lb-a: lb-a preempts again.  The seed's pair has BGP and
    no BIRD runs here: its part of the check (lb-routing-ready, tested with
    BIRD in test_routing_bird.py) is made to pass on both nodes, so HAProxy
    alone decides."""
    ns, vips = pair["ns"], pair["vips"]
    for n in NODES:
        ready = pair["dirs"][n]["sbin"] / lb_render_linux.ROUTING_READY_SCRIPT
        ready.write_text("#!/bin/sh\n# this test: BGP counts as up\nexit 0\n")
    pids = {}
    try:
        for n in NODES:
            pids[n] = _start_haproxy(pair, n)
        assert wait_for(lambda: on(pair, "lb-a")), (held(ns["lb-a"]), held(ns["lb-b"]))
        sampler = Sampler(ns, vips)
        sampler.start()
        try:
            kill(pids["lb-a"])
            assert wait_for(lambda: on(pair, "lb-b")), (held(ns["lb-a"]), held(ns["lb-b"]))
            pids["lb-a"] = _start_haproxy(pair, "lb-a")
            assert wait_for(lambda: on(pair, "lb-a")), (held(ns["lb-a"]), held(ns["lb-b"]))
        finally:
            sampler.stop()
        assert sampler.overlaps == []
        # both without HAProxy: both drop alike, nothing moves
        for n in NODES:
            kill(pids[n])
        time.sleep(3)
        assert on(pair, "lb-a"), (held(ns["lb-a"]), held(ns["lb-b"]))
    finally:
        for pid in pids.values():
            kill(pid)


@contextlib.contextmanager
def serving_on_both(pair):
    """HAProxy on both nodes answering HTTP on the first VIP, port 18080,
    with the node's name; the client's address (10.2.2.1) on the switch;
    lb-a holding the VIPs.  Yields the VIP."""
    ns, vips = pair["ns"], pair["vips"]
    vip = sorted(vips)[0]
    for n in NODES:
        ready = pair["dirs"][n]["sbin"] / lb_render_linux.ROUTING_READY_SCRIPT
        ready.write_text("#!/bin/sh\n# this test: BGP counts as up\nexit 0\n")
    sh("ip", "-n", pair["switch"], "addr", "add", net.CLIENT_ADDRESS, "dev", "br0")
    with net.http_on_both(ns, {n: pair["dirs"][n]["run"] for n in NODES}, vip):
        assert wait_for(lambda: on(pair, "lb-a")), (held(ns["lb-a"]), held(ns["lb-b"]))
        for n in NODES:  # the script made the VIP device answer ARP only for its own addresses
            assert sh("ip", "netns", "exec", ns[n], "cat", f"/proc/sys/net/ipv4/conf/{VIP_DEV}/arp_ignore").stdout.strip() == "1"
        yield vip


@pytest.mark.skipif(not os.path.exists(HAPROXY), reason="needs haproxy")
def test_a_planned_handover_costs_the_client_nothing(pair):
    """Maintenance on lb-a and back, with HAProxy serving on both nodes and a
    client in the switch asking a VIP every 10 ms (a new connection each
    time): no request fails (refused, reset, or no answer in 3 s), and none
    needed a retransmission (a SYN that reached a node with neither the
    VIP nor its route is dropped, and sent again after 1 s).  No timing
    is asserted: a slow answer on a loaded machine is not a failure, a
    lost packet is.  The node giving the VIP up keeps a local route for it
    (it answers what still reaches it, and no ARP), so there is never a
    moment when neither answers."""
    ns, vips = pair["ns"], pair["vips"]
    with serving_on_both(pair) as vip:
        track = pair["dirs"]["lb-a"]["state"] / lb_render_linux.MAINTENANCE_TRACK_FILE
        client = net.Asking(pair["switch"], vip)
        sampler = Sampler(ns, vips)
        sampler.start()
        soft_seen = []
        try:
            time.sleep(1)
            track.write_text("1\n")
            assert wait_for(lambda: on(pair, "lb-b")), (held(ns["lb-a"]), held(ns["lb-b"]))
            soft_seen.append(sh("ip", "-n", ns["lb-a"], "route", "show", "table", "local", "proto", "static").stdout)
            time.sleep(4)  # past the soft release: its local route is gone
            soft_seen.append(sh("ip", "-n", ns["lb-a"], "route", "show", "table", "local", "proto", "static").stdout)
            track.write_text("0\n")
            assert wait_for(lambda: on(pair, "lb-a")), (held(ns["lb-a"]), held(ns["lb-b"]))
            time.sleep(1)
        finally:
            results, failed, resent = client.stop()
            sampler.stop()
        assert len(results) > 100
        assert failed == [], f"{len(failed)} of {len(results)} requests failed, first at {failed[:3]}"
        assert resent == [], f"{len(resent)} of {len(results)} requests needed a retransmission, first at {resent[:3]}"
        assert sampler.overlaps == []
        assert f"local {vip} dev {VIP_DEV}" in soft_seen[0], soft_seen
        assert vip not in soft_seen[1], soft_seen


def _straddle(pair, vip, to):
    """The straddle client (carp_pair_net.straddle), the handover to `to`
    set off by lb-a's maintenance track file."""
    track = pair["dirs"]["lb-a"]["state"] / lb_render_linux.MAINTENANCE_TRACK_FILE
    answer = net.straddle(pair, VIP_DEV, vip, to, lambda: track.write_text("1\n" if to == "lb-b" else "0\n"))
    assert wait_for(lambda: on(pair, to)), (held(pair["ns"]["lb-a"]), held(pair["ns"]["lb-b"]))
    return answer


@pytest.mark.skipif(not os.path.exists(HAPROXY), reason="needs haproxy")
def test_a_connection_the_handover_catches_in_flight_is_served_by_the_old_master(pair):
    """A connection opened to lb-a, whose request is sent only once the
    switch sends the VIP's packets to lb-b: lb-b, which took the VIP from a
    live peer, sends the segments of that connection on to lb-a (the second
    chance), whose soft release answers them: the client gets lb-a's page.
    Without the second chance (lb-a's nft table removed, then the same the
    other way), the new master answers such a request with a reset."""
    with serving_on_both(pair) as vip:
        assert _straddle(pair, vip, "lb-b") == "lb-a"
        # the element lb-b added for the takeover expires
        takeover = ("nft", "list", "map", "ip", lb_carp_vips.HANDOVER_TABLE, "takeover")
        assert wait_for(lambda: vip not in sh("ip", "netns", "exec", pair["ns"]["lb-b"], *takeover).stdout, 10)
        time.sleep(lb_carp_vips.SOFT_SECONDS + 0.5)  # lb-a's soft release is over
        sh("ip", "netns", "exec", pair["ns"]["lb-a"], "nft", "delete", "table", "ip", lb_carp_vips.HANDOVER_TABLE)
        assert _straddle(pair, vip, "lb-a") == "ConnectionResetError"
