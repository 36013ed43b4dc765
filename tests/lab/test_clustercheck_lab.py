"""The Galera probe in the lab: a real three-node MariaDB Galera cluster in
the database hosts (db-1 bootstraps, db-2 and db-3 join by SST), the probe
applied by each host's own salt-minion (salt/clustercheck), CARP and HAProxy
on the load balancers from their SLS, and a client writing through the VIP.

- every synced node answers 200, to the load balancers only;
- a second apply changes nothing; the option file is 0600, the probe's user's;
- clustercheck.drain takes a node out of HAProxy, undrain puts it back;
- the active node dies: the writes move to one backup (never two writers),
  and every committed row is there afterwards.

The failover time is reported, not held to the target here: the benchmark
(bench/galera_failover.py) measures it.  Everything started here is stopped
by pid in the fixture's teardown.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import pytest

from lab import control, saltcfg
from lab.carp_tools import LAB_CARP, LBS
from lab.galera_tools import Galera, HaproxyView, Writer, apply_probe, first_write_after, in_host, salt_ok, writers_in_order

# the pillar's timers for galera_a: inter 2s, fall 2, rise 3
FALL_X_INTER = 4.0


@pytest.fixture(scope="module")
def galera(lab):
    # A lab whose converge failed (a salt timeout on a loaded machine) is still
    # used: everything this module needs it syncs and applies itself, and
    # asserts on.
    g = Galera(lab.plan)
    db = list(g.hosts)
    try:
        g.start_all()
        bad = salt_ok(apply_probe(db))
        assert bad == [], bad
        # the converge's CARP first (its own paths), then CARP on the lab's
        # private paths, as the CARP lab tests run it
        saltcfg.sync_all("-L", ",".join(LBS))
        lab.salt("-L", ",".join(LBS), "carp.absent")
        for minion in LBS:
            lab.salt(minion, "grains.setval", "lb_settings", json.dumps({"carp": dict(LAB_CARP, provider="keepalived")}))
        # queue=True: the carp.absent above fires CARP transitions, and the
        # master's reactor answers them with state runs of its own
        bad = salt_ok(lab.salt("-L", ",".join(LBS), "state.apply", "carp", "queue=True", timeout=300))
        bad += salt_ok(lab.salt("-L", ",".join(LBS), "state.apply", "haproxy", "queue=True", timeout=300))
        assert bad == [], bad
        g.app_cnf = g.app_account()
        yield g
    finally:
        for minion in db:
            lab.salt(minion, "clustercheck.undrain")
        lab.salt("-L", ",".join(LBS), "carp.absent")
        for minion in LBS:
            lab.salt(minion, "grains.delkey", "lb_settings", "force=True")
        g.stop_all()  # the lab's cluster: every node running and Synced again
        # and the pair as the lab's highstate made it, for the modules after this one
        saltcfg.apply([*LBS, *db])


def names(lab, g):
    """{db host: its server name in HAProxy (the pillar's)}."""
    return {h: lab.plan.host(h).pillar_name for h in g.hosts}


def http_from(host: str, target: str, port: int = 9200) -> str:
    code = (
        "import socket,sys\n"
        "s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=5)\n"
        "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
        "d=b''\n"
        "while True:\n"
        "    c=s.recv(4096)\n"
        "    if not c: break\n"
        "    d+=c\n"
        "print(d.decode(errors='replace'))\n"
    )
    r = in_host(host, "/usr/bin/python3", "-c", code, target, str(port), timeout=20)
    return r.stdout if r.returncode == 0 else f"error: {r.stderr.strip()[-200:]}"


def test_every_synced_node_answers_200_and_a_second_apply_changes_nothing(lab, galera):
    for host, addr in galera.hosts.items():
        assert http_from("lb-a", addr).startswith("HTTP/1.1 200 OK"), host
        st = lab.salt(host, "clustercheck.status")[host]
        assert st["available"] is True and st["local_state"] == 4, st
    again = apply_probe(list(galera.hosts))
    changed = [(m, k) for m, states in again.items() for k, v in states.items() if v["changes"]]
    assert changed == []


def test_the_installed_probe_is_what_the_preview_shows(lab, galera):
    """The probe program is the state tree's template rendered for Debian;
    clustercheck.preview renders it the same way, through the master's
    fileserver, and shows every file the SLS wrote."""
    shown = lab.salt("db-1", "clustercheck.preview")["db-1"]
    program = shown["/usr/local/bin/clustercheck"]
    assert program.startswith("#!/usr/bin/python3 -IS\n") and "{{" not in program
    for path, text in shown.items():
        if path != "/etc/clustercheck/clustercheck.cnf":  # its password shows as <redacted>
            assert in_host("db-1", "cat", path).stdout == text, path
    r = in_host("db-1", "stat", "-c", "%a %U %G", "/usr/local/bin/clustercheck")
    assert r.stdout.split() == ["755", "root", "root"]


def test_only_the_load_balancers_may_ask(lab, galera):
    addr = galera.hosts["db-1"]
    assert http_from("lb-b", addr).startswith("HTTP/1.1 200 OK")
    # the client host (198.18.0.10) reaches db-1 through r1, but is not in only_from
    assert "HTTP/1.1" not in http_from("client", addr)


def test_option_file_is_0600_and_the_probes_users(lab, galera):
    r = in_host("db-1", "stat", "-c", "%a %U %G", "/etc/clustercheck/clustercheck.cnf")
    assert r.stdout.split() == ["600", "clustercheck", "clustercheck"]
    r = in_host("db-1", "ps", "-ww", "-eo", "user,args")
    assert "clustercheck-lab-pw" not in r.stdout


def test_drain_takes_a_node_out_of_haproxy_and_undrain_puts_it_back(lab, galera):
    view = HaproxyView()
    srv = names(lab, galera)
    assert view.wait_status({srv[h]: "UP" for h in galera.hosts}, 60), view.read()
    try:
        assert lab.salt("db-2", "clustercheck.drain", "reason=lab test")["db-2"]["changed"] is True
        st = lab.salt("db-2", "clustercheck.status")["db-2"]
        assert st["code"] == 503 and st["maintenance"] is True
        assert view.wait_status({srv["db-2"]: "DOWN"}, FALL_X_INTER + 6), view.read()
    finally:
        lab.salt("db-2", "clustercheck.undrain")
    assert view.wait_status({srv["db-2"]: "UP"}, 30), view.read()


def test_the_active_node_dies_and_writes_move_to_one_backup(lab, galera):
    srv = names(lab, galera)
    view = HaproxyView()
    assert view.wait_status({srv[h]: "UP" for h in galera.hosts}, 60), view.read()
    view.start()
    writer = Writer(galera.app_cnf, count=250, every=0.1)
    try:
        time.sleep(4)
        killed_at = galera.kill("db-1")
        results = writer.result()
    finally:
        view.stop()
        if not galera.alive("db-1"):
            galera.start("db-1")  # rejoins by IST
    ok = [r for r in results if r["ok"]]
    assert len(ok) > 50
    order = writers_in_order(results)
    assert order == ["db-1", "db-2"], order  # one failover, to the first backup only
    first = first_write_after(results, killed_at)
    gap = first["end"] - killed_at
    down = view.first(srv["db-1"], "DOWN", killed_at)
    print(
        f"\nactive node killed: HAProxy marked it DOWN after {down - killed_at if down else float('nan'):.2f} s, "
        f"first write through the VIP after {gap:.2f} s (target <= fall x inter + 1 = {FALL_X_INTER + 1:.0f} s)"
    )
    assert gap < 30
    # every committed write is in the cluster
    rows = {int(line.split("\t")[0]): line.split("\t")[1] for line in galera.sql("db-2", "SELECT seq, node FROM lab.writes").splitlines()}
    assert {r["seq"] for r in ok} <= set(rows)
    assert all(rows[r["seq"]] == r["node"] for r in ok)
    # HAProxy never had sessions on two servers of the backend at once
    assert len(view.samples) > 50
    assert view.overlaps == []
    # and db-1 comes back: HAProxy sees it UP again
    assert view.wait_status({srv["db-1"]: "UP"}, 60), view.read()


def probe(host: str, addr: str) -> tuple[str, float]:
    """The probe's answer to a load balancer (lb-a), and how long it took."""
    t0 = time.monotonic()
    out = http_from("lb-a", addr)
    return out, time.monotonic() - t0


def donor_option(lab, host: str, value: bool) -> None:
    override = json.dumps({"lb": {"pairs": {"edge": {"galera_probe": {"available_when_donor": value}}}}})
    bad = salt_ok(lab.salt(host, "state.apply", "clustercheck", f"pillar={override}", "queue=True", timeout=300))
    assert bad == [], bad


def test_the_probe_answers_503_with_the_reason_for_each_failure(lab, galera):
    """db-3 (a backup of galera_a), through each failure the issue names, as
    its load balancer asks: desynced (and 200 with the donor option), in
    maintenance, hung (SIGSTOP: the answer comes within the probe's bound),
    stopped; 200 again after each."""
    host, addr = "db-3", galera.hosts["db-3"]
    assert probe(host, addr)[0].startswith("HTTP/1.1 200 OK")

    # desynced: wsrep_local_state 2 (Donor/Desynced)
    galera.sql(host, "SET GLOBAL wsrep_desync = ON")
    try:
        galera.wait(host, lambda: galera.status(host).get("wsrep_local_state") == "2", 30, "desynced")
        out, _ = probe(host, addr)
        assert out.startswith("HTTP/1.1 503"), out
        assert "is running." not in out
        try:
            donor_option(lab, host, True)
            out, _ = probe(host, addr)
            assert out.startswith("HTTP/1.1 200 OK") and "is running." in out, out
        finally:
            donor_option(lab, host, False)
        assert probe(host, addr)[0].startswith("HTTP/1.1 503")
    finally:
        galera.sql(host, "SET GLOBAL wsrep_desync = OFF")
    galera.wait(host, lambda: galera.status(host).get("wsrep_local_state") == "4", 60, "Synced")
    assert probe(host, addr)[0].startswith("HTTP/1.1 200 OK")

    # in maintenance: 503 with the reason, until undrained
    try:
        lab.salt(host, "clustercheck.drain", "reason=lab-503-test")
        out, _ = probe(host, addr)
        assert out.startswith("HTTP/1.1 503") and "lab-503-test" in out, out
    finally:
        lab.salt(host, "clustercheck.undrain")
    assert probe(host, addr)[0].startswith("HTTP/1.1 200 OK")

    # hung: SIGSTOP; the probe gives up within its bound (galera_probe:timeout)
    pid = galera.pid(host)
    os.kill(pid, signal.SIGSTOP)
    try:
        out, took = probe(host, addr)
        print(f"\nhung server: the probe answered in {took:.2f} s (pillar timeout 2 s)")
        assert out.startswith("HTTP/1.1 503"), out
    finally:
        os.kill(pid, signal.SIGCONT)
    galera.wait(host, lambda: galera.status(host).get("wsrep_local_state") == "4", 120, "Synced after SIGCONT")
    galera.wait_settled()  # the resumed node back in the others' view, not only in its own
    assert probe(host, addr)[0].startswith("HTTP/1.1 200 OK")

    # stopped: 503, then it rejoins (IST) and answers 200 again
    galera.stop(host)
    try:
        out, _ = probe(host, addr)
        assert out.startswith("HTTP/1.1 503"), out
    finally:
        galera.start(host)
    assert probe(host, addr)[0].startswith("HTTP/1.1 200 OK")


CLIENTS = re.compile(r"mysql|mariadb|clustercheck")
PASSWORD_OPTION = re.compile(r"--password|\s-p\S")


def test_ps_during_checks_never_shows_the_password(lab, galera):
    """Checks run back to back from lb-a while db-1's process table is read
    every few ms: neither the probe's password nor a -p option appears."""
    addr = galera.hosts["db-1"]
    code = (
        "import socket,sys\n"
        "for _ in range(60):\n"
        "    s=socket.create_connection((sys.argv[1],9200),timeout=5)\n"
        "    s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
        "    while s.recv(4096): pass\n"
        "    s.close()\n"
    )
    checks = subprocess.Popen(["mnexec", "-a", str(control.host_pid("lb-a")), "/usr/bin/python3", "-c", code, addr])
    seen, probes = [], 0
    try:
        end = time.monotonic() + 30
        while checks.poll() is None and time.monotonic() < end:
            out = in_host("db-1", "ps", "-ww", "-eo", "user,args").stdout
            probes += "clustercheck" in out
            seen += [
                line
                for line in out.splitlines()
                if "clustercheck-lab-pw" in line or (CLIENTS.search(line) and PASSWORD_OPTION.search(line))
            ]
    finally:
        if checks.poll() is None:
            checks.kill()
        checks.wait(10)
    print(f"\nps read while checks ran; probe processes seen in {probes} reads")
    assert probes > 0  # the reads did overlap checks
    assert seen == []
