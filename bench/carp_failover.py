#!/usr/bin/env python3
"""Client-observed gap on link loss of the CARP master, in the lab.

For each provider, side by side in one run:
  keepalived, project defaults  (salt/carp: VRRPv3, advert_int 0.2 s)
  keepalived, by hand           (VRRPv2, advert_int 1 s, priorities 150/100)
  ucarp, project                (salt/carp: advbase 1, advskew 0/100, preempt)
  ucarp, by hand                (ucarp -b 1 -k 0|100 -P, plain up/down scripts)

Each failover: a client in the lab's client host connects to a VIP every
20 ms (a connect not made within 0.1 s has failed); the master's (lb-a) link to the user segment goes down; the gap is the
time from the last successful connect before the failures to the first one
after.  The link comes back, the VIPs return (preempt), and the next run
starts.  Median of N (default 5) failovers per row.  Then a planned
switchover and back, measured with a client's patience (3 s) and the
longest wait between two connects: carp.maintenance for each project
provider, and for keepalived by hand what its users do (lb-a's priority
lowered below lb-b's and keepalived reloaded, then raised again).

Needs a running lab (`.venv/bin/python -m lab up`), and it must be yours:
only one lab runs on a machine.  Everything it starts it stops by pid.

    .venv/bin/python bench/carp_failover.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from lab import control, saltcfg  # noqa: E402
from lab.carp_tools import (  # noqa: E402
    LAB_CARP,
    LBS,
    VIPS,
    Client,
    Services,
    all_on,
    failures,
    holders,
    link,
    longest_wait,
    outage,
    slowest,
    user_device,
    user_port,
    wait_for,
)
from lab.plan import plan_from_pillar  # noqa: E402

BENCH_DIR = "/run/lb-carp-bench"  # private to each lab host
PASSWORD = "benchpw"


def salt(*args, timeout=180):
    return saltcfg.salt_json("-L", ",".join(LBS), *args, timeout=timeout)


def in_host(host, *cmd, timeout=30):
    return control.run(host, *cmd, timeout=timeout)


def use_project(provider):
    salt("carp.absent")
    for m in LBS:
        saltcfg.salt_json(m, "grains.setval", "lb_settings", json.dumps({"carp": dict(LAB_CARP, provider=provider)}))
    saltcfg.sync_all("-L", ",".join(LBS))
    salt("carp.unmaintenance")
    salt("state.apply", "carp", "queue=True")


def stop_project():
    salt("carp.unmaintenance")
    salt("carp.absent")


# -- by hand ------------------------------------------------------------------


class Hand:
    """keepalived or ucarp configured by hand at their own defaults."""

    def __init__(self, plan, kind):
        self.plan, self.kind, self.procs = plan, kind, []

    def _keepalived_conf(self, host, prio):
        """keepalived.conf as its users write it: one instance per VIP."""
        dev = user_device(self.plan, host)
        conf = ["global_defs {", f"    router_id {host}-hand", "}"]
        for v in VIPS:
            vhid = v.rsplit(".", 1)[1]
            conf += [
                f"vrrp_instance H_{vhid} {{",
                "    state BACKUP",
                f"    interface {dev}",
                f"    virtual_router_id {vhid}",
                f"    priority {prio}",
                "    advert_int 1",
                "    virtual_ipaddress {",
                f"        {v}/24 dev {dev}",
                "    }",
                "}",
            ]
        subprocess.run(
            ["mnexec", "-a", str(control.host_pid(host)), "sh", "-c", f"cat > {BENCH_DIR}/keepalived.conf"],
            input="\n".join(conf) + "\n",
            text=True,
            check=True,
            timeout=10,
        )

    def priority(self, host, prio):
        """A planned switchover by hand: host's priority changed, keepalived reloaded (SIGHUP)."""
        self._keepalived_conf(host, prio)
        in_host(host, "sh", "-c", f"kill -HUP $(cat {BENCH_DIR}/k.pid)")

    def __enter__(self):
        for host, prio, skew in (("lb-a", 150, 0), ("lb-b", 100, 100)):
            dev = user_device(self.plan, host)
            src = next(i.address.split("/")[0] for i in self.plan.host(host).interfaces if i.network == "user")
            in_host(host, "mkdir", "-p", BENCH_DIR)
            if self.kind == "keepalived":
                self._keepalived_conf(host, prio)
                path = f"{BENCH_DIR}/keepalived.conf"
                in_host(
                    host,
                    "keepalived",
                    "--vrrp",
                    "--use-file",
                    path,
                    "--pid",
                    f"{BENCH_DIR}/k.pid",
                    "--vrrp_pid",
                    f"{BENCH_DIR}/kv.pid",
                    "--checkers_pid",
                    f"{BENCH_DIR}/kc.pid",
                )
            else:
                script = '#!/bin/sh\n/sbin/ip -4 addr {op} "$2/24" dev "$1" 2>/dev/null || true\n'
                for name, op in (("up", "replace"), ("down", "del")):
                    subprocess.run(
                        [
                            "mnexec",
                            "-a",
                            str(control.host_pid(host)),
                            "sh",
                            "-c",
                            f"cat > {BENCH_DIR}/{name}.sh && chmod 755 {BENCH_DIR}/{name}.sh",
                        ],
                        input=script.format(op=op),
                        text=True,
                        check=True,
                        timeout=10,
                    )
                subprocess.run(
                    ["mnexec", "-a", str(control.host_pid(host)), "sh", "-c", f"umask 077; cat > {BENCH_DIR}/pass"],
                    input=PASSWORD + "\n",
                    text=True,
                    check=True,
                    timeout=10,
                )
                for v in VIPS:
                    vhid = v.rsplit(".", 1)[1]
                    argv = [
                        "ucarp",
                        "-i",
                        dev,
                        "-s",
                        src,
                        "-v",
                        vhid,
                        "-o",
                        f"{BENCH_DIR}/pass",
                        "-a",
                        v,
                        "-b",
                        "1",
                        "-k",
                        str(skew),
                        "-P",
                        "-u",
                        f"{BENCH_DIR}/up.sh",
                        "-d",
                        f"{BENCH_DIR}/down.sh",
                    ]
                    self.procs.append(
                        subprocess.Popen(
                            ["mnexec", "-a", str(control.host_pid(host)), *argv],
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL,
                            start_new_session=True,
                        )
                    )
        return self

    def __exit__(self, *exc):
        if self.kind == "keepalived":
            for host in LBS:
                in_host(host, "sh", "-c", f"kill $(cat {BENCH_DIR}/k.pid) 2>/dev/null; true")
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        time.sleep(1)
        for host in LBS:  # drop any VIP left behind
            dev = user_device(self.plan, host)
            for v in VIPS:
                for plen in (24, 32):  # by hand /24; the project's Linux VIPs are /32
                    in_host(host, "ip", "-4", "addr", "del", f"{v}/{plen}", "dev", dev)


# -- measuring ------------------------------------------------------------------


class ClientLate(RuntimeError):
    """The run measured nothing: the client was not connected before the cut."""


def one_failover(plan, settle, attempts=3):
    """one_failover_once, again (at most `attempts` times) when the client
    was not connected before the cut."""
    for _ in range(attempts):
        try:
            return one_failover_once(plan, settle)
        except ClientLate as exc:
            print(f"run discarded ({exc}); again", file=sys.stderr)
    raise RuntimeError(f"the client was late in {attempts} runs in a row")


def one_failover_once(plan, settle):
    port = user_port(plan, "lb-a")
    # settled: lb-a alone holds every VIP, and still does 3 s later (a pair
    # just started may still be sorting itself out: a first run measured
    # then saw no gap at all, the VIPs having moved before the cut)
    deadline = time.monotonic() + settle + 10
    while True:
        if wait_for(lambda: all_on("lb-a"), settle):
            time.sleep(3.0)
            if all_on("lb-a"):
                break
        if time.monotonic() > deadline:
            raise RuntimeError(f"lb-a does not hold every VIP before the run: {holders()}")
    # a connect on this LAN takes well under a millisecond: a 0.1 s timeout
    # keeps the gap's resolution near 0.12 s (the anchors' 20 ms loop)
    client = Client(VIPS[0], count=int((settle + 5) / 0.02), timeout=0.1)
    # the client's first connect must come before the cut (a loaded lab took
    # over a second to start it: its first attempts came after the cut and
    # the run showed no gap at all, 0.00)
    time.sleep(3.0)
    try:
        t_cut = time.time()
        link(port, up=False)
        # lb-b holds every VIP (what the client can reach; ucarp by hand
        # leaves the VIPs on a node whose link is cut, which no one reaches)
        moved = wait_for(lambda: all("lb-b" in hs for hs in holders().values()), settle)
    finally:
        time.sleep(2.0)
        results = client.result()
        link(port, up=True)
    if not moved:
        raise RuntimeError(f"the VIPs did not move to lb-b: {holders()}")
    wait_for(lambda: all_on("lb-a"), settle + 5)
    time.sleep(2.0)
    if not results or not results[0][1] or results[0][0] > t_cut:
        raise ClientLate(f"the client's first connect ({results[0] if results else None}) was not a success before the cut")
    return outage(results)


def _cell(run) -> str:
    value, recovered = run
    return f"{value:.2f}" if recovered else f">={value:.2f}"


def switchover_run(settle, enter, leave):
    """enter() moves the VIPs from lb-a to lb-b, leave() back, each under a
    client connecting every 20 ms with a client's patience (3 s): failed
    connects each way, attempts, the slowest connect, and the longest time
    from one successful connect's answer to the next's (longest_wait)."""
    runs = []
    for move, to in ((enter, "lb-b"), (leave, "lb-a")):
        client = Client(VIPS[0], count=int(settle * 2 / 0.02), timeout=3.0)
        time.sleep(0.5)
        move()
        wait_for(lambda to=to: all_on(to), settle)
        runs.append(client.result())
    out, back = runs
    return failures(out), failures(back), len(out) + len(back), max(slowest(out), slowest(back)), max(longest_wait(out), longest_wait(back))


def maintenance_run(settle):
    """carp.maintenance on lb-a and back (switchover_run)."""
    return switchover_run(
        settle,
        lambda: saltcfg.salt_json("lb-a", "carp.maintenance", timeout=120),
        lambda: saltcfg.salt_json("lb-a", "carp.unmaintenance", timeout=120),
    )


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", choices=("keepalived", "ucarp"), help="the two rows of one daemon")
    args = ap.parse_args(argv)
    st = control.running()
    if not st or st.get("phase") != "ready":
        print("no running lab: start one with `.venv/bin/python -m lab up` (only one lab per machine)")
        return 2
    plan = plan_from_pillar(os.path.join(REPO, "pillar", "lab", "lb.sls"), galera6=st.get("galera6", False))
    rows, switchovers = [], []
    saltcfg.sync_all("-L", ",".join(LBS))
    salt("beacons.disable_beacon", "carp")  # no reactor acting on the failovers measured here
    salt("sysctl.assign", "net.ipv4.ip_forward", "1")  # as the pillar's sysctl:ip_forwarding says
    with Services():
        for label, kind, settle in (
            ("keepalived, project (VRRPv3, advert 0.2 s)", ("project", "keepalived"), 10),
            ("keepalived, by hand (VRRPv2, advert 1 s)", ("hand", "keepalived"), 15),
            ("ucarp, project (advbase 1)", ("project", "ucarp"), 15),
            ("ucarp, by hand (advbase 1)", ("hand", "ucarp"), 15),
        ):
            if args.only and kind[1] != args.only:
                continue
            gaps = []
            if kind[0] == "project":
                use_project(kind[1])
                try:
                    gaps = [one_failover(plan, settle) for _ in range(args.runs)]
                    switchovers.append((f"{kind[1]}, project (carp.maintenance and back)", *maintenance_run(settle)))
                finally:
                    stop_project()
            else:
                with Hand(plan, kind[1]) as hand:
                    gaps = [one_failover(plan, settle) for _ in range(args.runs)]
                    if kind[1] == "keepalived":
                        assert wait_for(lambda: all_on("lb-a"), settle), holders()
                        run = switchover_run(settle, lambda: hand.priority("lb-a", 50), lambda: hand.priority("lb-a", 150))
                        switchovers.append(("keepalived, by hand (priority 150 -> 50, reload, and back)", *run))
            rows.append((label, gaps))
            print(f"{label}: " + " ".join(_cell(g) for g in gaps), flush=True)
    for m in LBS:
        saltcfg.salt_json(m, "grains.delkey", "lb_settings", "force=True")
    salt("beacons.enable_beacon", "carp")
    print()
    print("A gap marked >= is a run where the client had not reached the VIP again by its last attempt.")
    print("| setup | gaps (s) | median gap (s) | vs the same daemon by hand | runs without recovery |")
    print("|---|---|---|---|---|")
    medians = {label: statistics.median(g for g, _ in gaps) for label, gaps in rows}
    for label, gaps in rows:
        daemon = label.split(",")[0]
        base = next((m for lab_, m in medians.items() if lab_.startswith(daemon) and "by hand" in lab_), None)
        ratio = f"{medians[label] / base:.2f}" if base else "-"
        cells = " ".join(_cell(g) for g in gaps)
        print(f"| {label} | {cells} | {medians[label]:.2f} | {ratio} | {sum(1 for _, ok in gaps if not ok)} |")
    print()
    print("| planned switchover | failed connects entering | leaving | attempts | slowest connect (s) | longest gap (s) |")
    print("|---|---|---|---|---|---|")
    for setup, enter, leave, total, slow, gap in switchovers:
        print(f"| {setup} | {enter} | {leave} | {total} | {slow:.3f} | {gap:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
