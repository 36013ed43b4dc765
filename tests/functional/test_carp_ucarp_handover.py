"""ucarp's second chance (docs/carp.md): a connection a planned handover
catches in flight is served by the old master.

ucarp does one thing on a transition: it runs the up script on the node
taking a VIP and the down script on the node giving it up, as `<script>
<interface> <vip> <xparam>`.  This test runs the product's scripts
(lb-carp-vip-up, lb-carp-vip-down, lb-carp-arp-probe) exactly so, with the
arguments of the command line the carp module gives ucarp
(carp_common.ucarp_argv), in the order a preemption runs them, between two
namespaces joined by a switch (carp_pair_net): real `ip`, nft, ARP, HAProxy
and a client.  ucarp itself runs in the lab tier (tests/lab/test_carp_lab.py)
and on booted hosts (tests/boot/test_boot_ucarp.py).
"""

import os
import signal
import subprocess
import time

import carp_pair_net as net
import pytest
from carp_pair_net import NODES, sh

import carp_common
import lb_carp_vips
from tests.support import install_carp_programs

VIP_DEV = "uv0"
NFT = "/usr/sbin/nft"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not all(os.path.exists(p) for p in (NFT, net.HAPROXY)), reason="needs root, nft and haproxy"
)


@pytest.fixture
def pair(tmp_path):
    model, pair_model = net.seed_pair("ucarp", {"vip": VIP_DEV})
    started = []  # every script run here leads a process group of its own
    with net.pair_network("lbuc", pair_model, VIP_DEV) as network:
        try:
            nodes = {}
            for n in NODES:
                d = {k: tmp_path / n / k for k in ("state", "sbin", "run", "ucarp")}
                for path in d.values():
                    path.mkdir(parents=True)
                install_carp_programs(d["sbin"], [carp_common.VIP_UP, carp_common.VIP_DOWN, carp_common.ARP_PROBE])
                paths = {"script_dir": str(d["sbin"]), "state_dir": str(d["state"]), "ucarp_dir": str(d["ucarp"])}
                _, groups = carp_common.node_groups(model, n, "Debian")
                group = min(groups, key=lambda g: g["vhid"])
                nodes[n] = {"group": group, "paths": paths, "run": d["run"]}
            vip = nodes["lb-a"]["group"]["address"]
            yield {**network, "nodes": nodes, "vip": vip, "started": started}
        finally:
            # the scripts' background steps (a probe, an announcement, the
            # end of a soft release) are bounded; whatever still runs goes
            for pgid in started:
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def ucarp_runs(pair, node, script, second_chance=True):
    """Runs `node`'s up or down script as its ucarp would: the interface,
    the VIP and the xparam of carp_common.ucarp_argv."""
    n = pair["nodes"][node]
    argv = carp_common.ucarp_argv("/usr/sbin/ucarp", n["group"], n["paths"], second_chance=second_chance)
    opts = dict(a[2:].split("=", 1) for a in argv[1:] if "=" in a)
    proc = subprocess.Popen(
        ["ip", "netns", "exec", pair["ns"][node], opts[script], opts["interface"], opts["addr"], opts["xparam"]],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    pair["started"].append(proc.pid)
    assert proc.wait(10) == 0


def holds(pair, node):
    """`node` has the VIP as an address, its peer does not."""
    other = NODES[1 - NODES.index(node)]
    return pair["vip"] in net.held(pair["ns"][node], VIP_DEV) and pair["vip"] not in net.held(pair["ns"][other], VIP_DEV)


def takeover_map(pair, node, name="takeover"):
    """The nft map `name` of the second chance on `node`, as listed (empty: no table)."""
    r = sh("ip", "netns", "exec", pair["ns"][node], NFT, "list", "map", "ip", lb_carp_vips.HANDOVER_TABLE, name, check=False)
    return r.stdout if r.returncode == 0 else ""


def gratuitous_arp(pair, node):
    """What ucarp sends as it becomes MASTER, beside running the up script
    (ucarp's carp_set_state): an ARP announcement of the VIP with the node's
    MAC (here lb-carp-arp-probe --announce's first one, in the background)."""
    n = pair["nodes"][node]
    probe = os.path.join(n["paths"]["script_dir"], carp_common.ARP_PROBE)
    proc = subprocess.Popen(
        ["ip", "netns", "exec", pair["ns"][node], probe, "--announce", VIP_DEV, pair["vip"]],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
    )
    pair["started"].append(proc.pid)


def handover(pair, to, second_chance=True, lag=0.3):
    """What ucarp does when `to` preempts its peer: `to`'s up script (its
    ARP probe waits while the peer still answers for the VIP) and its
    gratuitous ARP, then, `lag` seconds later (ucarp reads advertisements
    with a 1 s timeout), the peer's down script (its soft release)."""
    old = NODES[1 - NODES.index(to)]

    def set_off():
        ucarp_runs(pair, to, "upscript", second_chance)
        gratuitous_arp(pair, to)
        time.sleep(lag)
        ucarp_runs(pair, old, "downscript", second_chance)

    return set_off


def test_a_connection_the_ucarp_handover_catches_in_flight_is_served_by_the_old_master(pair):
    """A connection opened to lb-a, whose request is sent only once the
    switch sends the VIP's packets to lb-b: lb-b's probe heard lb-a answer
    for its own address, so lb-b sends that connection's segments on to
    lb-a, whose soft release answers: the client gets lb-a's page, and the
    map's element expires.  The up script run on the node holding the VIP
    (a ucarp replaced without a gap) adds no element.  Without the second
    chance (the xparam without a peer: carp:second_chance false), the handover back resets such a
    connection, and the new master adds nothing to the map."""
    vip = pair["vip"]
    ucarp_runs(pair, "lb-a", "upscript")
    assert net.wait_for(lambda: holds(pair, "lb-a"), 10)
    # lb-b answered lb-a's probe for its address: lb-a made the table and gave the VIP its element
    assert vip in takeover_map(pair, "lb-a")
    assert net.wait_for(lambda: vip not in takeover_map(pair, "lb-a"), 10)
    # a ucarp replaced without a gap claims the group again: the up script
    # on the holder, which is no takeover, so no second chance
    ucarp_runs(pair, "lb-a", "upscript")
    time.sleep(1.0)  # the probe's at most 3 x 30 ms, the announcements' 1.2 s
    assert holds(pair, "lb-a") and vip not in takeover_map(pair, "lb-a")
    sh("ip", "-n", pair["switch"], "addr", "add", net.CLIENT_ADDRESS, "dev", "br0")
    with net.http_on_both(pair["ns"], {n: pair["nodes"][n]["run"] for n in NODES}, vip):
        assert net.straddle(pair, VIP_DEV, vip, "lb-b", handover(pair, "lb-b")) == "lb-a"
        assert net.wait_for(lambda: holds(pair, "lb-b"), 10)
        assert net.wait_for(lambda: vip not in takeover_map(pair, "lb-b"), 10)
        time.sleep(lb_carp_vips.SOFT_SECONDS + 0.5)  # lb-a's soft release is over
        answer = net.straddle(pair, VIP_DEV, vip, "lb-a", handover(pair, "lb-a", second_chance=False))
        assert answer == "ConnectionResetError"
        assert net.wait_for(lambda: holds(pair, "lb-a"), 10)
        assert vip not in takeover_map(pair, "lb-a")


def test_a_ucarp_handover_costs_new_connections_nothing(pair):
    """ucarp's gratuitous ARP moves the client to the new master while the
    old one still holds the VIP (until it hears the new master, up to a
    second later): with the second chance, what reaches the new master
    before it has the address goes on to the old one, so a client making a
    new connection every 10 ms through a handover and back sees no failure
    and no retransmission.  Without it (no peer in the xparam), the same
    handover drops SYNs at the new master (each retransmitted after 1 s)."""
    vip = pair["vip"]
    ucarp_runs(pair, "lb-a", "upscript")
    assert net.wait_for(lambda: holds(pair, "lb-a"), 10)
    sh("ip", "-n", pair["switch"], "addr", "add", net.CLIENT_ADDRESS, "dev", "br0")
    with net.http_on_both(pair["ns"], {n: pair["nodes"][n]["run"] for n in NODES}, vip):
        for second_chance in (True, False):
            client = net.Asking(pair["switch"], vip)
            try:
                time.sleep(0.5)
                for to in ("lb-b", "lb-a"):
                    handover(pair, to, second_chance, lag=0.8)()
                    assert net.wait_for(lambda to=to: holds(pair, to), 10)
                    time.sleep(lb_carp_vips.SOFT_SECONDS + 0.5)  # the old master's soft release is over
            finally:
                results, failed, resent = client.stop()
            assert len(results) > 300
            if second_chance:
                assert failed == [] and resent == [], (failed[:3], resent[:3])
                assert vip not in takeover_map(pair, "lb-a", "pending")  # the element went once the address was added
            else:
                assert resent, "without the second chance no SYN was retransmitted: the test would prove nothing"
