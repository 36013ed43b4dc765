"""Helpers for the routing lab tests and bench/routing_failover.py: the
upstream router's (up1) routes to the VIPs, read from its kernel
(/proc/<pid>/net/route, no process spawned), what each node's BIRD
announces (`birdc show route protocol lb_vips`), and a sampler that flags a
node announcing a VIP it does not hold.

Everything is bounded in count and time; nothing is started that outlives a
call.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

from lab import control
from lab.carp_tools import BIRD_SOCKET, LBS, VIPS, local_addresses, wait_for  # noqa: F401 - re-exported for the routing tests

UPSTREAM = "up1"


def up1_routes() -> dict[str, str]:
    """{vip: gateway} of up1's kernel routes to the VIPs (only BGP puts them there)."""
    pid = control.host_pid(UPSTREAM)
    out = {}
    with open(f"/proc/{pid}/net/route") as fh:
        next(fh)
        for line in fh:
            f = line.split()
            dest = socket.inet_ntoa(struct.pack("<I", int(f[1], 16)))
            gw = socket.inet_ntoa(struct.pack("<I", int(f[2], 16)))
            mask = int(f[7], 16)
            if mask == 0xFFFFFFFF and dest in VIPS:
                out[dest] = gw
    return out


def announced(host: str) -> set[str] | None:
    """The VIPs a node's BIRD announces now (its lb_vips routes; the export
    filters pass nothing else), None when BIRD does not answer."""
    r = control.run(host, "birdc", "-s", BIRD_SOCKET, "show", "route", "protocol", "lb_vips", timeout=10)
    if r.returncode != 0 or "ready" not in r.stdout:
        return None
    return {line.split()[0][:-3] for line in r.stdout.splitlines() if line.split() and line.split()[0].endswith("/32")}


def bgp_established(host: str, socket_path: str = BIRD_SOCKET) -> dict[str, bool]:
    """{protocol: Established?} of a host's BIRD BGP sessions."""
    r = control.run(host, "birdc", "-s", socket_path, "show", "protocols", timeout=10)
    out = {}
    for line in r.stdout.splitlines():
        w = line.split()
        if len(w) >= 4 and w[1] == "BGP":
            out[w[0]] = "Established" in line
    return out


class AnnounceSampler(threading.Thread):
    """Every `every` s: what each node announces and what it holds.
    `violations`: (t, host, vip) for a node announcing a VIP it held neither
    just before nor just after reading its announcements (the reads are not
    atomic; an address that arrives or leaves between them is no
    violation).  Bounded by max_seconds."""

    def __init__(self, every: float = 0.1, max_seconds: float = 120):
        super().__init__(daemon=True)
        self.every, self.max_seconds = every, max_seconds
        self.samples = 0
        self.violations: list[tuple[float, str, str]] = []
        self.unanswered = 0
        self._halt = threading.Event()

    def run(self):
        end = time.monotonic() + self.max_seconds
        while not self._halt.is_set() and time.monotonic() < end:
            started = time.monotonic()
            t = time.time()
            for host in LBS:
                before = local_addresses(host)
                ann = announced(host)
                if ann is None:
                    self.unanswered += 1
                    continue
                held = before | local_addresses(host)
                self.violations += [(t, host, vip) for vip in sorted(ann - held)]
            self.samples += 1
            self._halt.wait(max(0.0, self.every - (time.monotonic() - started)))  # one sample per `every` s

    def stop(self):
        self._halt.set()
        self.join(timeout=10)
