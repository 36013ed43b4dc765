"""The checker's tools for the `lb` pillar (lb_topology.py walks it): the
finding of one problem at one pillar path, the error that lists them all,
the report, and the checks every section uses (a mapping, unknown keys, an
integer in range, a string of a config language's grammar, an address).

Pure Python (netaddr only), no Salt dunders.
"""

import re
from dataclasses import dataclass, field

import netaddr

import lb_grammar

POOL_KINDS = ("galera", "http", "tcp")
MODES = ("tcp", "http")
CHECK_TYPES = ("tcp-check", "httpchk", "connect", "none")

# Every string that reaches a config file or a shell is checked against
# its language's grammar in lb_grammar (full-match rules); these names are
# the ones this module uses.
BALANCE_RE = lb_grammar.HAPROXY_BALANCE
TIME_RE = lb_grammar.HAPROXY_TIME
NAME_RE = lb_grammar.HAPROXY_NAME
HOSTNAME_RE = lb_grammar.HOSTNAME
DEVICE_RE = lb_grammar.DEVICE
OPTION_RE = lb_grammar.HAPROXY_OPTION
COMMUNITY_RE = lb_grammar.COMMUNITY
# the probe's account: a MySQL user name and the Unix user the probe runs as
PROBE_USER_RE = lb_grammar.Rule("probe_user", re.compile(r"[A-Za-z0-9_]{1,32}"), "a MySQL user name (letters, digits, '_'; at most 32)")


@dataclass(frozen=True)
class Finding:
    """One problem in the topology, at one pillar path."""

    path: str
    message: str

    def as_dict(self) -> dict:
        return {"path": self.path, "message": self.message}

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class TopologyError(ValueError):
    """The topology has errors; `.errors` lists every one of them."""

    def __init__(self, errors: list[Finding], warnings: list[Finding] | None = None):
        self.errors = list(errors)
        self.warnings = list(warnings or [])
        lines = "\n".join(f"  {e}" for e in self.errors)
        super().__init__(f"invalid lb topology ({len(self.errors)} errors):\n{lines}")


@dataclass
class Report:
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)
    model: dict | None = None

    @property
    def valid(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict:
        return {
            "valid": self.valid,
            "errors": [e.as_dict() for e in self.errors],
            "warnings": [w.as_dict() for w in self.warnings],
        }


def pillar_path(*parts) -> str:
    return ":".join(str(p) for p in parts)


class Checker:
    """The findings of one walk, and the checks that add to them."""

    def __init__(self):
        self.errors: list[Finding] = []
        self.warnings: list[Finding] = []
        # per pair name: the VHIDs of CARP groups that are declared but
        # invalid (their own errors said why); what refers to them says
        # nothing more, so only the root cause is reported
        self.broken_vhids: dict[str, set[int]] = {}

    # -- helpers ----------------------------------------------------------
    def err(self, path, message):
        self.errors.append(Finding(path, message))

    def warn(self, path, message):
        self.warnings.append(Finding(path, message))

    def mapping(self, value, path, required=True) -> dict | None:
        if value is None:
            if required:
                self.err(path, "is required (a mapping)")
            return None
        if not isinstance(value, dict):
            self.err(path, f"must be a mapping, not {type(value).__name__}")
            return None
        return value

    def unknown_keys(self, d: dict, allowed, path):
        for key in d:
            if key not in allowed:
                self.err(pillar_path(path, key), f"unknown key (allowed here: {', '.join(sorted(allowed))})")

    def integer(self, value, path, lo, hi, what="") -> int | None:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and value.isdigit():
                value = int(value)
            else:
                self.err(path, f"must be an integer{what} in {lo}-{hi}, got {value!r}")
                return None
        if not lo <= value <= hi:
            self.err(path, f"{value} is outside {lo}-{hi}{what}")
            return None
        return value

    def boolean(self, value, path) -> bool | None:
        if not isinstance(value, bool):
            self.err(path, f"must be true or false, got {value!r}")
            return None
        return value

    def text(self, value, path, rule: lb_grammar.Rule) -> str | None:
        """A string its target language reads back unchanged (``rule``,
        from lb_grammar); numbers are taken as their decimal text."""
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        problem = rule.problem(value)
        if problem is not None:
            self.err(path, problem)
            return None
        return value

    def name(self, value, path, rule: lb_grammar.Rule = NAME_RE) -> bool:
        """A mapping key that names something in a rendered file."""
        problem = rule.problem(value)
        if problem is not None:
            self.err(path, problem)
            return False
        return True

    def time(self, value, path) -> str | None:
        if isinstance(value, bool):
            value = None
        if isinstance(value, int):
            value = str(value)
        if not isinstance(value, str) or not TIME_RE.fullmatch(value):
            self.err(path, f"{value!r} is not {TIME_RE.what}")
            return None
        return value

    def ip(self, value, path) -> netaddr.IPAddress | None:
        if not isinstance(value, str):
            self.err(path, f"must be an IPv4 address as a string, got {value!r}")
            return None
        try:
            addr = netaddr.IPAddress(value, flags=netaddr.INET_PTON)
        except (netaddr.AddrFormatError, ValueError, TypeError):
            self.err(path, f"{value!r} is not a valid IP address")
            return None
        if addr.version != 4:
            self.err(path, f"{value} is IPv6; this product manages IPv4 CARP/VRRP pairs only")
            return None
        return addr

    def cidr(self, value, path, strict=True) -> netaddr.IPNetwork | None:
        if not isinstance(value, str) or "/" not in value:
            self.err(path, f"{value!r} is not an address with a prefix (like 10.2.2.0/24)")
            return None
        try:
            addr, prefix = value.split("/", 1)
            netaddr.IPAddress(addr, flags=netaddr.INET_PTON)
            net = netaddr.IPNetwork(value)
        except (netaddr.AddrFormatError, ValueError, TypeError):
            self.err(path, f"{value!r} is not a valid address with a prefix")
            return None
        if net.version != 4:
            self.err(path, f"{value} is IPv6; this product manages IPv4 only")
            return None
        if strict and net.ip != net.network:
            self.err(path, f"{value} has host bits set; the network is {net.cidr}")
            return None
        return net
