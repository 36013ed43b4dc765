"""Parse FreeBSD's `ifconfig` and `sysctl` output for CARP.

Pure Python, no Salt dunders: the FreeBSD carp provider feeds it what the
commands print, and the unit tests feed it real output kept under
tests/fixtures/freebsd/ (FreeBSD cannot run where the tests run).

`ifconfig` prints, per interface (sbin/ifconfig/carp.c, carp_status()):

    hn1: flags=8943<UP,BROADCAST,RUNNING,PROMISC,SIMPLEX,MULTICAST> metric 0 mtu 1500
    \tinet 10.2.2.4 netmask 0xffffffff broadcast 10.2.2.4 vhid 4
    \tcarp: MASTER vhid 4 advbase 1 advskew 0
    \t      peer 224.0.0.18 peer6 ff02::12          (FreeBSD 14 and later)

With `ifconfig -k` a ` key "<password>"` follows the advskew; the parser
keeps it under "key" so the module can compare it, and nothing else here
ever prints it.
"""

from __future__ import annotations

import re

STATES = ("INIT", "BACKUP", "MASTER")  # CARP_STATES, netinet/ip_carp.h

_IFACE = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+): flags=")
_INET = re.compile(
    r"^\s+inet (?P<addr>\d+\.\d+\.\d+\.\d+) netmask (?P<mask>0x[0-9a-fA-F]{8})(?: broadcast \S+)?(?: vhid (?P<vhid>\d+))?\s*$"
)
_INET6 = re.compile(r"^\s+inet6 (?P<addr>[0-9a-fA-F:]+(?:%\S+)?) prefixlen (?P<plen>\d+)(?P<rest>.*)$")
_VHID = re.compile(r"\bvhid (\d+)\b")
_CARP = re.compile(
    r'^\s+carp: (?P<state>\S+) vhid (?P<vhid>\d+) advbase (?P<advbase>\d+) advskew (?P<advskew>\d+)(?: key "(?P<key>[^"]*)")?'
)
_PEER = re.compile(r"^\s+peer (?P<peer>\S+) peer6 (?P<peer6>\S+)\s*$")
_STATUS = re.compile(r"^\s+status: (?P<status>.+?)\s*$")
_BOOTTIME = re.compile(r"\{\s*sec\s*=\s*(\d+)")


class ParseError(ValueError):
    """Output that does not have the shape FreeBSD prints."""


def _prefixlen(mask: str) -> int:
    bits = bin(int(mask, 16)).count("1")
    return bits


def parse_ifconfig(text: str) -> dict[str, dict]:
    """{interface: {"inet": [...], "inet6": [...], "carp": {vhid: {...}}, "status": str|None}}.

    Lines before the first interface header (output of `ifconfig | grep carp`)
    are filed under the interface name "" so a fragment still parses."""
    out: dict[str, dict] = {}
    cur = None
    last_carp = None

    def iface(name):
        return out.setdefault(name, {"inet": [], "inet6": [], "carp": {}, "status": None})

    for line in text.splitlines():
        m = _IFACE.match(line)
        if m:
            cur = iface(m.group("name"))
            last_carp = None
            continue
        if not line.strip() or line.strip() == "--":
            continue
        if cur is None:
            cur = iface("")
        if m := _CARP.match(line):
            state = m.group("state")
            if state not in STATES:
                raise ParseError(f"unknown CARP state {state!r} in: {line.strip()}")
            vhid = int(m.group("vhid"))
            last_carp = {
                "vhid": vhid,
                "state": state,
                "advbase": int(m.group("advbase")),
                "advskew": int(m.group("advskew")),
                "peer": None,
                "peer6": None,
            }
            if m.group("key") is not None:
                last_carp["key"] = m.group("key")
            cur["carp"][vhid] = last_carp
        elif m := _PEER.match(line):
            if last_carp is None:
                raise ParseError(f"a peer line with no carp line before it: {line.strip()}")
            last_carp["peer"], last_carp["peer6"] = m.group("peer"), m.group("peer6")
        elif m := _INET.match(line):
            vhid = m.group("vhid")
            cur["inet"].append({"address": m.group("addr"), "prefixlen": _prefixlen(m.group("mask")), "vhid": int(vhid) if vhid else None})
        elif m := _INET6.match(line):
            v = _VHID.search(m.group("rest"))
            vhid = v.group(1) if v else None
            cur["inet6"].append({"address": m.group("addr"), "prefixlen": int(m.group("plen")), "vhid": int(vhid) if vhid else None})
        elif m := _STATUS.match(line):
            cur["status"] = m.group("status")
    return out


def carp_groups(text: str) -> dict[int, dict]:
    """Every CARP vhid in `ifconfig` output: {vhid: {interface, state, advbase,
    advskew, vips: [IPv4 and IPv6 addresses of that vhid], peer, peer6}}.

    A vhid is unique on an interface, not on the host; the topology keeps it
    unique per node, so two interfaces with the same vhid are an error here."""
    out: dict[int, dict] = {}
    for name, iface in parse_ifconfig(text).items():
        for vhid, c in iface["carp"].items():
            if vhid in out:
                raise ParseError(f"vhid {vhid} is on both {out[vhid]['interface']} and {name}")
            vips = [a["address"] for a in iface["inet"] + iface["inet6"] if a["vhid"] == vhid]
            entry = {"interface": name or None, **{k: v for k, v in c.items() if k != "vhid"}, "vips": vips}
            out[vhid] = entry
    return out


def parse_sysctl(text: str) -> dict[str, str]:
    """`sysctl name ...` output ("name: value" per line) as {name: value}."""
    out = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ParseError(f"not a sysctl line: {line!r}")
        out[name.strip()] = value.strip()
    return out


def boot_id(kern_boottime: str) -> str:
    """The boot's identity from `sysctl -n kern.boottime`
    ("{ sec = 1700000000, usec = 1 } Tue Nov 14 22:13:20 2023"): its seconds.
    The CARP demotion counter lives in the kernel, so a record of what this
    module added to it is only valid for the boot that has this id."""
    m = _BOOTTIME.search(kern_boottime)
    if not m:
        raise ParseError(f"not a kern.boottime value: {kern_boottime!r}")
    return m.group(1)
