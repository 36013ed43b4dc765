"""The supervisor: the one long-lived process that owns the lab.

`python -m lab up` starts it detached (`python -m lab _supervise`, its own
session, output in .lab/supervisor.log).  It builds the Mininet network from
the plan, starts the salt-master (root namespace), a salt-minion in every LB
and database host and an HTTP server in every web host, records each thing in
.lab/state.json as soon as it exists, sets phase "ready", then waits.  On
SIGTERM (what `down` sends) it stops every daemon by pid, stops Mininet, sweeps
what is left, and exits.  It has to live on because Mininet's hosts are bash
shells on ptys that this process holds: they die with it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from lab import PILLAR, REPO, lock, saltcfg, sshcfg, state
from lab.plan import Plan, plan_from_pillar

# Directories each host gets for itself (bind mounts of .lab/hosts/<host>/...),
# every one the states write to (lab/README.md lists which state writes
# what).  The seeded ones start as a copy of this machine's (the packages'
# defaults), the others empty.  A seeded one missing on this machine is
# skipped rather than created on it; /var/run is skipped where it is a
# symlink to /run (Debian), which is private already.  The product's own
# directories (CREATED_MOUNTPOINTS) are made private even where this machine
# lacks them: the lab creates the empty mount point, records it, and `down`
# removes it.  /usr/local/bin and /usr/local/sbin start empty (the states
# write the probe and the CARP scripts there; a host needs nothing else
# from them).  /etc/network/if-up.d starts empty: the host SLS writes the
# load balancers' static routes there (ifupdown never runs in the lab).
# /etc/systemd/system and /etc/tmpfiles.d get the host SLS's boot files.
SEEDED_DIRS = (
    "/etc/haproxy",
    "/etc/keepalived",
    "/etc/mysql",
    "/etc/xinetd.d",
    "/etc/sysctl.d",
    "/etc/default",
    "/etc/bird",
    # the units' drop-ins and enablement links (lb_boot): written, never
    # used here (no systemd runs in the lab; tests/boot boots them)
    "/etc/systemd/system",
    "/etc/tmpfiles.d",
)
EMPTY_DIRS = (
    "/run",
    "/var/run",
    "/var/lib/haproxy",
    "/var/lib/mysql",
    "/var/log",
    "/usr/local/bin",
    "/usr/local/sbin",
    "/etc/ucarp",
    "/var/lib/lb-carp",
    "/etc/clustercheck",
    "/var/lib/clustercheck",
    "/etc/network/if-up.d",
)
CREATED_MOUNTPOINTS = ("/etc/ucarp", "/var/lib/lb-carp", "/etc/clustercheck", "/var/lib/clustercheck", "/etc/network/if-up.d")
HTTP_READY_TIMEOUT = 10.0

_stop_requested = False


class Stopped(Exception):
    """A stop signal arrived while the lab was being built."""


def main(galera6: bool, lock_fd: int | None = None, booted: bool = False) -> int:
    if lock_fd is not None:
        # The machine's lab lock (lab/lock.py), held for as long as this
        # process lives; not passed on to the hosts' shells and daemons.
        os.set_inheritable(lock_fd, False)
        lock.LAB_LOCK.with_suffix(".owner").write_text(f"pid {os.getpid()} lab supervisor for {REPO}\n")
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _request_stop)
    plan = plan_from_pillar(PILLAR, galera6=galera6)
    st = {
        "supervisor": state.record(os.getpid(), group=False),
        "phase": "building",
        "galera6": galera6,
        # the load balancers booted by systemd under nspawn (lab/lbhosts.py)
        "booted": [h.name for h in plan.hosts if h.role == "lb"] if booted else [],
        "started": time.time(),
        "bridges": plan.bridges,  # recorded before they exist, so a crash leaves nothing unknown
        "links": plan.root_links,
        "nodes": {},
        "daemons": {},
        "hosts": {
            h.name: {"role": h.role, "addresses": [i.address for i in h.interfaces] + [a for _, a, _ in h.aliases]} for h in plan.hosts
        },
    }
    state.save(st)
    net, procs = None, {}
    try:
        net = build(plan, st)
        start_booted(plan, st, procs)
        start_daemons(net, plan, st, procs)
        st["phase"] = "ready"
        st["galera"] = {"phase": "starting"}
        state.save(st)
        print(f"lab ready: {len(plan.hosts)} hosts, {len(st['daemons'])} daemons", flush=True)
        start_galera(plan, st, procs)  # while `up` waits for the minions
        watch(procs)
        return 0
    except Stopped:
        print("stop requested while building", flush=True)
        return 1
    except Exception:
        traceback.print_exc()
        st["phase"] = "failed"
        state.save(st)
        return 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        teardown(net, procs, st)


def build(plan: Plan, st: dict):
    from mininet.log import setLogLevel
    from mininet.net import Mininet
    from mininet.nodelib import LinuxBridge

    setLogLevel("info")
    net = Mininet(switch=LinuxBridge, controller=None, build=False, autoSetMacs=False, autoStaticArp=False)
    for n, network in enumerate(plan.networks.values(), start=1):
        switch = net.addSwitch(network.bridge, dpid=f"{n:x}")
        st["nodes"][network.bridge] = state.record(switch.pid, group=True, kind="switch")
    state.save(st)

    def link(node, intf, address: bool = True) -> None:
        """A veth from `node` (named as the plan says) to its network's
        bridge, with its address (a booted host's own ifupdown sets it)."""
        bridge = net[plan.networks[intf.network].bridge]
        params = {"ip": intf.address} if address else {}
        net.addLink(node, bridge, intfName1=intf.device, intfName2=intf.port, params1=params)

    _make_mountpoints(st)
    for host in plan.hosts:
        _check_stop()
        own_root = host.name in st["booted"]  # its nspawn's root, nothing private to bind
        node = net.addHost(host.name, ip=None, privateDirs=[] if own_root else _private_dirs(host.name))
        st["nodes"][host.name] = state.record(node.pid, group=True, kind="host", netns=state.netns(node.pid))
        state.save(st)
        for intf in host.interfaces:
            link(node, intf, address=not own_root)

    # The salt-master's link: a veth from the root namespace to the mgmt bridge.
    root = net.addHost("master", inNamespace=False, ip=None)
    st["nodes"]["master"] = state.record(root.pid, group=True, kind="root")
    state.save(st)
    link(root, plan.master)
    _check_stop()
    net.build()
    net.start()

    _isolate_root_side(plan)
    # Addresses and gateways of the lab's own hosts (routers, databases, web,
    # client).  The load balancers' routes and sysctls are the product's:
    # the plan gives them none.
    for host in plan.hosts:
        node = net[host.name]
        if host.default_gateway:
            _must(node, f"ip route replace default via {host.default_gateway}")
        for destination, gateway in host.routes:
            _must(node, f"ip route replace {destination} via {gateway}")
        if host.role == "router":
            _must(node, "sysctl -qw net.ipv4.ip_forward=1")
            # r1 has no route out: it answers "unreachable" for the machine's
            # DNS server at once, every time.  Rate-limited (1 s by default),
            # a host's resolver waits its 5 s timeout instead, e.g. for each
            # of the reverse lookups rsync's daemon makes in a Galera SST.
            _must(node, "sysctl -qw net.ipv4.icmp_ratelimit=0")
        for ns in _nameservers():  # fail a lookup at once, not after the resolver's 5 s
            _must(node, f"ip route replace unreachable {ns}/32")
        for device, address, _ in host.aliases:  # stand-ins for another galera pool's servers
            _must(node, f"ip addr add {address} dev {device}")
        if host.peers:  # up1: no route covering the VIPs, only /32s to its BGP peers (lab/plan.py)
            device, peers = host.peers
            address = next(i.address for i in host.interfaces if i.device == device)
            _must(node, f"ip addr del {address} dev {device}")
            _must(node, f"ip addr add {address} dev {device} noprefixroute")
            for peer in peers:
                _must(node, f"ip route replace {peer}/32 dev {device}")
            _must(node, "sysctl -qw net.ipv4.ip_forward=1")
    return net


def start_booted(plan: Plan, st: dict, procs: dict) -> None:
    """Power on the booted load balancers (lab/lbhosts.py), each in its
    Mininet host's network namespace, after recording that namespace's
    sysctls as they are at power-on.  The root is built by `up` first."""
    from lab import booted, lbhosts

    if not st["booted"]:
        return
    pristine = booted.build_root()
    for name in st["booted"]:
        _check_stop()
        netns_pid = st["nodes"][name]["pid"]
        lbhosts.snapshot(name, netns_pid)
        lbhosts.provision(plan.host(name), plan.master_ip, pristine)
        rec = lbhosts.power_on(name, netns_pid)
        st["daemons"][f"host@{name}"] = rec
        state.save(st)
        procs[f"host@{name}"] = _Reaped(rec["pid"])


class _Reaped:
    """A child the supervisor started but whose record `python -m lab
    reboot` may replace: watch() reaps it (poll) once it exits."""

    def __init__(self, pid: int):
        self.pid, self.returncode = pid, None

    def poll(self):
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.returncode = -1
                return self.returncode
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout=None):
        deadline = time.monotonic() + (timeout or 0)
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout)
        return self.returncode


def start_daemons(net, plan: Plan, st: dict, procs: dict) -> None:
    def start(name: str, popen, cmd: list[str], log: Path, host: str | None = None, **kwargs) -> None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            proc = popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, **kwargs)
        procs[name] = proc
        st["daemons"][name] = state.record(proc.pid, group=True, host=host, cmd=cmd)
        state.save(st)

    # Root namespace, in its own session: stopped by its pid (and its group) only.
    start("salt-master", subprocess.Popen, saltcfg.master_command(), saltcfg.MASTER_DIR / "console.log", start_new_session=True, cwd=REPO)
    # In the hosts, node.popen runs `mnexec -da <shell pid> cmd`: it joins the
    # host's namespaces and calls setsid(), so each daemon leads its own group.
    for host in plan.hosts:
        _check_stop()
        node = net[host.name]
        if host.minion_id and host.name not in st["booted"]:  # a booted host runs its own
            start(
                f"salt-minion@{host.name}",
                node.popen,
                saltcfg.minion_command(host.minion_id),
                saltcfg.MINIONS_DIR / host.minion_id / "console.log",
                host.name,
            )
        if host.peers:  # the upstream router's BIRD (lab/upstream.py), 0600: it holds the md5sig key
            from lab import upstream

            conf = state.HOSTS_DIR / host.name / "bird.conf"
            conf.parent.mkdir(parents=True, exist_ok=True)
            conf.touch(mode=0o600)
            conf.chmod(0o600)
            conf.write_text(upstream.bird_conf(plan, PILLAR))
            start(f"bird@{host.name}", node.popen, upstream.command(str(conf)), state.HOSTS_DIR / host.name / "bird.log", host.name)
        if host.service:
            address, port = host.service
            www = state.HOSTS_DIR / host.name / "www"
            www.mkdir(parents=True, exist_ok=True)
            (www / "index.html").write_text(f"<html><body>{host.name} ({host.pillar_name})</body></html>\n")
            cmd = ["/usr/bin/python3", "-m", "http.server", str(port), "--bind", address, "--directory", str(www)]
            start(f"http@{host.name}", node.popen, cmd, state.HOSTS_DIR / host.name / "http.log", host.name)
    # sshd in each load balancer, on its management address only, with the
    # lab's own config, host key and authorized key (lab/sshcfg.py): what
    # salt-ssh reaches through the Saltfile (docs/agentless.md)
    sshcfg.write_configs(plan)
    ssh_hosts = {n: a for n, a in sshcfg.ssh_hosts(plan).items() if n not in st["booted"]}
    for name in ssh_hosts:
        _check_stop()
        sshcfg.prepare_host(state.HOSTS_DIR / name)
        start(f"sshd@{name}", net[name].popen, sshcfg.sshd_command(name), sshcfg.SSH_DIR / name / "sshd.log", name)
    _wait_http_listening(net, plan)
    _wait_listening(net, {name: (address, sshcfg.SSHD_PORT) for name, address in ssh_hosts.items()})


def start_galera(plan: Plan, st: dict, procs: dict) -> None:
    """Bootstrap every Galera cluster (lab/galera.py) and the application
    account; record each mariadbd as a daemon.  `up` waits for
    st["galera"]["phase"] to be "synced" (or "failed: ...") before the
    highstate, which applies the probe to a running server."""
    from lab import galera

    t0 = time.monotonic()
    try:
        for cluster in galera.clusters(plan):
            cluster.stop_check = _check_stop
            first, *rest = cluster.hosts
            for host in cluster.hosts:
                cluster.prepare(host, install=host == first)
            for host in cluster.hosts:
                proc = cluster.start(host, bootstrap=host == first)
                procs[f"mariadb@{host}"] = proc
                st["daemons"][f"mariadb@{host}"] = state.record(proc.pid, group=True, host=host, cmd=proc.args)
                state.save(st)
            cluster.app_account()
            print(f"galera {cluster.name}: {', '.join(cluster.hosts)} synced", flush=True)
        st["galera"] = {"phase": "synced", "seconds": round(time.monotonic() - t0, 1)}
    except Stopped:
        raise
    except Exception as exc:
        traceback.print_exc()
        st["galera"] = {"phase": f"failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"}
    state.save(st)


def watch(procs: dict) -> None:
    """Wait for a stop signal; reap and report daemons that exit meanwhile."""
    reported = set()
    while not _stop_requested:
        time.sleep(0.5)
        for name, proc in procs.items():
            if name not in reported and proc.poll() is not None:
                reported.add(name)
                print(f"daemon {name} (pid {proc.pid}) exited with {proc.returncode}", flush=True)


def teardown(net, procs: dict, st: dict) -> None:
    with state.locked():  # `python -m lab reboot` records a booted host's new nspawn there
        st["daemons"].update((state.load() or {}).get("daemons", {}))
    st["phase"] = "stopping"
    state.save(st)
    t0 = time.monotonic()
    state.stop(list(st["daemons"].values()), grace=10)
    found = state.stop_namespaces(st, grace=10)  # what the states started in the hosts
    print(f"daemons stopped in {time.monotonic() - t0:.1f} s ({len(found)} more processes in the hosts)", flush=True)
    for proc in procs.values():
        try:
            proc.wait(timeout=5)  # reap: this machine's init does not, promptly
        except subprocess.TimeoutExpired:
            pass
    if net is not None:
        try:
            net.stop()
        except Exception:
            traceback.print_exc()
    state.sweep(st)
    st["phase"] = "down"
    state.save(st)
    print(f"lab stopped in {time.monotonic() - t0:.1f} s", flush=True)


def _make_mountpoints(st: dict) -> None:
    """Create the missing CREATED_MOUNTPOINTS (empty, root's, 0755),
    recorded before they exist so that `down` removes them."""
    missing = [p for p in CREATED_MOUNTPOINTS if not os.path.lexists(p)]
    st["mountpoints"] = st.get("mountpoints", []) + missing
    state.save(st)
    for path in missing:
        os.makedirs(path, mode=0o755)


def _private_dirs(host: str) -> list[tuple[str, str]]:
    dirs = []
    for path in SEEDED_DIRS + EMPTY_DIRS:
        src = Path(path)
        if src.is_symlink() or not src.is_dir():
            continue
        dst = state.HOSTS_DIR / host / path.lstrip("/")
        shutil.rmtree(dst, ignore_errors=True)
        if path in SEEDED_DIRS:
            shutil.copytree(src, dst, symlinks=True)
        else:
            dst.mkdir(parents=True)
        info = src.stat()
        shutil.chown(dst, info.st_uid, info.st_gid)
        dst.chmod(info.st_mode & 0o7777)
        dirs.append((path, str(dst)))
    return dirs


def _isolate_root_side(plan: Plan) -> None:
    """The root namespace's lab interfaces: no IPv6, no forwarding, and ARP
    answers only for an address on the interface itself (the master's)."""
    for name in plan.bridges + plan.root_links:
        _sysctl(f"ipv6/conf/{name}/disable_ipv6", 1)
    for name in plan.bridges + [plan.master.device]:
        _sysctl(f"ipv4/conf/{name}/forwarding", 0)
        _sysctl(f"ipv4/conf/{name}/arp_ignore", 1)


def _wait_http_listening(net, plan: Plan) -> None:
    deadline = time.monotonic() + HTTP_READY_TIMEOUT
    for host in (h for h in plan.hosts if h.service):
        address, port = host.service
        while not net[host.name].cmd(f"ss -Hltn src {address}:{port}").strip():
            _check_stop()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{host.name}: nothing listens on {address}:{port}")
            time.sleep(0.1)


def _wait_listening(net, services: dict[str, tuple[str, int]]) -> None:
    """Wait until each {host: (address, port)} has a TCP listener."""
    deadline = time.monotonic() + HTTP_READY_TIMEOUT
    for name, (address, port) in services.items():
        while not net[name].cmd(f"ss -Hltn src {address}:{port}").strip():
            _check_stop()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}: nothing listens on {address}:{port}")
            time.sleep(0.1)


def _nameservers() -> list[str]:
    """This machine's IPv4 DNS servers (/etc/resolv.conf, which the hosts
    share): no lab host can reach them, so each gets an `unreachable` route
    to them and its resolver gives up at once.  Otherwise every lookup that
    is not in /etc/hosts (rsync's daemon resolves its peer in each Galera
    SST) waits for the resolver's timeout."""
    out = []
    try:
        lines = Path("/etc/resolv.conf").read_text().splitlines()
    except OSError:
        return out
    for line in lines:
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "nameserver" and fields[1].count(".") == 3:
            out.append(fields[1])
    return out


def _must(node, cmd: str) -> None:
    out = node.cmd(cmd)
    if out.strip():
        raise RuntimeError(f"{node.name}: {cmd}: {out.strip()}")


def _sysctl(key: str, value: int) -> None:
    Path("/proc/sys/net", key).write_text(f"{value}\n")


def _request_stop(signum, frame) -> None:
    global _stop_requested
    _stop_requested = True


def _check_stop() -> None:
    if _stop_requested:
        raise Stopped()


if __name__ == "__main__":
    sys.exit(main("--galera6" in sys.argv, booted="--booted" in sys.argv))
