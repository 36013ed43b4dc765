#!/usr/bin/env python3
"""Benchmark: HAProxy reloads under load, the project's way and the old way.

A fixed, bounded load (--requests HTTP requests, one TCP connection each,
from --clients processes) goes through an HAProxy on loopback while its
configuration is reloaded --reloads times, adding and removing a server
each time.  Two ways, side by side in the same invocation, --runs times
each, alternating:

- project: the `haproxy_cfg` execution module through Salt's loader:
  `haproxy_cfg.write` (candidate, `haproxy -c`, os.replace) then
  `haproxy_cfg.reload` (master-worker, SIGUSR2 to the master; the new worker
  takes the listening sockets over, `expose-fd listeners`);
- plain-sf: HAProxy as a plain daemon, reloaded as Debian's init script does
  it: a new `haproxy -D -f cfg -p pidfile -sf <old pid>` that binds its own
  sockets (SO_REUSEPORT) while the old process lets go of its own.

Reported per way: median requests/s and failed requests (connection refused
or reset, or not HTTP 200) per run, the ratio of the medians, and whether the
project's way met the target (0 failed requests).  Backends are a second
HAProxy answering 200 itself (`http-request return`), so the clients and the
balancer are what is measured.  Addresses are 127.<r>.x.y (Linux routes all
of 127/8 to lo); everything started is stopped by its pid.

    .venv/bin/python bench/haproxy_reload.py [--requests 20000] [--reloads 20]
        [--clients 4] [--runs 3] [--json FILE]
"""

import argparse
import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "_utils"))

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


def farm_config(r, n):
    binds = "\n".join(f"    bind 127.{r}.6.{i}:8081" for i in range(1, n + 1))
    return f"""global
    maxconn 4000
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend farm
{binds}
    http-request return status 200 content-type text/plain string ok
"""


def lb_config(r, d, servers, project):
    head = [
        "global",
        "    maxconn 4000",
        "    hard-stop-after 30s",
    ]
    if project:
        head += [
            "    master-worker",
            f"    pidfile {d}/lb.pid",
            f"    stats socket {d}/admin.sock mode 600 level admin expose-fd listeners",
        ]
    else:
        head += ["    daemon", f"    stats socket {d}/admin.sock mode 600 level admin"]
    body = [
        "defaults",
        "    mode http",
        "    timeout connect 2s",
        "    timeout client 10s",
        "    timeout server 10s",
        "",
        "listen web",
        f"    bind 127.{r}.2.5:8080",
        "    balance roundrobin",
    ]
    body += [f"    server s{i} 127.{r}.6.{i}:8081" for i in range(1, servers + 1)]
    return "\n".join(head + [""] + body) + "\n"


# ---------------------------------------------------------------------------
# load


def client(addr, quota, done, failed, stop_at):
    """Requests on new connections until `quota` (shared) is used up."""
    req = b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n"
    ok = bad = 0
    while time.monotonic() < stop_at:
        with quota.get_lock():
            if quota.value <= 0:
                break
            quota.value -= 1
        try:
            with socket.create_connection(addr, timeout=5) as s:
                s.sendall(req)
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    data += chunk
            if data.startswith((b"HTTP/1.1 200", b"HTTP/1.0 200")):
                ok += 1
            else:
                bad += 1
        except OSError:
            bad += 1
        if (ok + bad) % 50 == 0:
            with done.get_lock():
                done.value += 50
    with done.get_lock():
        done.value += (ok + bad) % 50
    with failed.get_lock():
        failed.value += bad


def run_load(addr, requests, clients, reloads, reload_fn, limit=300):
    quota = mp.Value("l", requests)
    done = mp.Value("l", 0)
    failed = mp.Value("l", 0)
    stop_at = time.monotonic() + limit
    procs = [mp.Process(target=client, args=(addr, quota, done, failed, stop_at)) for _ in range(clients)]
    t0 = time.monotonic()
    for p in procs:
        p.start()
    reload_times = []
    cpu0 = time.process_time()
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    for i in range(reloads):
        # reload i when (i+1)/(reloads+2) of the load is done: all of them
        # land inside the load, none in its first or last stretch
        mark = requests * (i + 1) // (reloads + 2)
        while done.value < mark and any(p.is_alive() for p in procs):
            time.sleep(0.002)
        t = time.monotonic()
        reload_fn(i)
        reload_times.append(time.monotonic() - t)
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # CPU the reloads cost on the controlling side: this process (the Salt
    # loader and the module for `project`) and the commands it ran
    # (haproxy -c, the haproxy launcher); the clients are not counted
    reload_cpu = time.process_time() - cpu0 + (kids1.ru_utime - kids0.ru_utime) + (kids1.ru_stime - kids0.ru_stime)
    for p in procs:
        p.join(limit)
    elapsed = time.monotonic() - t0
    return {
        "requests": requests - max(quota.value, 0),
        "failed": failed.value,
        "seconds": round(elapsed, 3),
        "rps": round((requests - max(quota.value, 0)) / elapsed, 1),
        "reloads": len(reload_times),
        "reload_median_ms": round(statistics.median(reload_times) * 1000, 1) if reload_times else None,
        "reload_cpu_s": round(reload_cpu, 2),
    }


# ---------------------------------------------------------------------------
# the two ways


class Project:
    """The haproxy_cfg module through Salt's loader."""

    name = "project"

    def __init__(self, r, d):
        import salt.config
        import salt.loader
        import yaml

        self.r, self.d = r, d
        self.cfg = os.path.join(d, "lb.cfg")
        state = os.path.join(d, "salt")
        conf = {
            "id": "bench",
            "file_client": "local",
            "root_dir": state,
            "cachedir": os.path.join(state, "cache"),
            "pki_dir": os.path.join(state, "pki"),
            "sock_dir": os.path.join(state, "sock"),
            "log_file": os.path.join(state, "log"),
            "module_dirs": [os.path.join(REPO, "_modules")],
            "utils_dirs": [os.path.join(REPO, "_utils")],
            "lb_settings": {
                "haproxy": {
                    "config": self.cfg,
                    "socket": os.path.join(d, "admin.sock"),
                    "master_socket": os.path.join(d, "master.sock"),
                    "pidfile": os.path.join(d, "lb.pid"),
                    "state_file": os.path.join(d, "server-state"),
                    "certs_dir": os.path.join(d, "certs"),
                }
            },
        }
        with open(os.path.join(d, "minion"), "w") as fh:
            yaml.safe_dump(conf, fh)
        opts = salt.config.minion_config(os.path.join(d, "minion"))
        opts["grains"] = salt.loader.grains(opts)
        self.salt = salt.loader.minion_mods(opts)

    def start(self, servers):
        self.salt["haproxy_cfg.write"](lb_config(self.r, self.d, servers, True), mode="0640")
        return self.salt["haproxy_cfg.start"]()

    def reload(self, servers):
        self.salt["haproxy_cfg.write"](lb_config(self.r, self.d, servers, True))
        res = self.salt["haproxy_cfg.reload"]()
        assert res["reloaded"], res

    def stop(self):
        self.salt["haproxy_cfg.stop"]()


class PlainSf:
    """A daemon reloaded with `haproxy -sf` (Debian's init script's reload)."""

    name = "plain-sf"

    def __init__(self, r, d):
        self.r, self.d = r, d
        self.cfg = os.path.join(d, "lb.cfg")
        self.pidfile = os.path.join(d, "lb.pid")
        self.pids = set()

    def _write(self, servers):
        tmp = self.cfg + ".tmp"
        with open(tmp, "w") as fh:
            fh.write(lb_config(self.r, self.d, servers, False))
        subprocess.run([HAPROXY, "-c", "-q", "-f", tmp], check=True, timeout=30)
        os.replace(tmp, self.cfg)

    def _pid(self):
        with open(self.pidfile) as fh:
            return [int(x) for x in fh.read().split()]

    def start(self, servers):
        self._write(servers)
        subprocess.run([HAPROXY, "-q", "-D", "-f", self.cfg, "-p", self.pidfile], check=True, timeout=30)
        self.pids.update(self._pid())

    def reload(self, servers):
        self._write(servers)
        old = self._pid()
        subprocess.run([HAPROXY, "-q", "-D", "-f", self.cfg, "-p", self.pidfile, "-sf", *map(str, old)], check=True, timeout=30)
        self.pids.update(self._pid())

    def stop(self):
        stop_pids(self.pids)


def stop_pids(pids, timeout=5.0):
    """SIGTERM each pid, then wait until none of them runs (zombies aside)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                with open(f"/proc/{pid}/stat") as fh:
                    if fh.read().rsplit(")", 1)[1].split()[0] != "Z":
                        alive.append(pid)
            except OSError:
                pass
        if not alive:
            return
        time.sleep(0.05)


def one_run(way_cls, r, args):
    d = tempfile.mkdtemp(prefix=f"hxb-{way_cls.name}-")
    way = way_cls(r, d)
    base = 4
    try:
        way.start(base)
        addr = (f"127.{r}.2.5", 8080)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(addr, timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        # servers: 5 on even reloads, back to 4 on odd ones
        return run_load(addr, args.requests, args.clients, args.reloads, lambda i: way.reload(base + 1 - i % 2))
    finally:
        way.stop()
        time.sleep(0.2)
        shutil.rmtree(d, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--reloads", type=int, default=20)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root (HAProxy drops to its own user; the bench binds 127.x addresses)")
    r = random.randint(100, 250)
    farm_dir = tempfile.mkdtemp(prefix="hxb-farm-")
    farm_cfg = os.path.join(farm_dir, "farm.cfg")
    with open(farm_cfg, "w") as fh:
        fh.write(farm_config(r, 5))
    farm_pid = os.path.join(farm_dir, "farm.pid")
    subprocess.run([HAPROXY, "-q", "-D", "-f", farm_cfg, "-p", farm_pid], check=True, timeout=30)
    results = {"project": [], "plain-sf": []}
    try:
        for n in range(args.runs):
            for cls in (Project, PlainSf) if n % 2 == 0 else (PlainSf, Project):
                res = one_run(cls, r, args)
                results[cls.name].append(res)
                print(
                    f"run {n + 1} {cls.name:9s} {res['rps']:9.1f} req/s  failed {res['failed']:4d} / {res['requests']}  reloads {res['reloads']}  (median reload {res['reload_median_ms']} ms, reload CPU {res['reload_cpu_s']} s)",
                    flush=True,
                )
    finally:
        with open(farm_pid) as fh:
            pids = [int(x) for x in fh.read().split()]
        stop_pids(pids)
        shutil.rmtree(farm_dir, ignore_errors=True)
    summary = {}
    for name, runs in results.items():
        summary[name] = {
            "median_rps": statistics.median(x["rps"] for x in runs),
            "failed_per_run": [x["failed"] for x in runs],
            "failed_total": sum(x["failed"] for x in runs),
            "requests_per_run": args.requests,
            "reloads_per_run": args.reloads,
        }
    ratio = summary["project"]["median_rps"] / summary["plain-sf"]["median_rps"]
    print()
    print(f"{'way':10s} {'median req/s':>13s} {'failed (per run)':>20s}")
    for name, s in summary.items():
        print(f"{name:10s} {s['median_rps']:13.1f} {str(s['failed_per_run']):>20s}")
    print(f"ratio project / plain-sf (median req/s): {ratio:.3f}")
    target = summary["project"]["failed_total"] == 0
    print(f"target (0 failed requests with the project's reload): {'met' if target else 'NOT met'}")
    out = {"args": vars(args), "runs": results, "summary": summary, "ratio": round(ratio, 3), "target_met": target}
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    return 0 if target else 1


if __name__ == "__main__":
    sys.exit(main())
