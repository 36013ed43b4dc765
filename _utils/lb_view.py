"""What a node gets from its pair, and the facts every renderer shares
(the per-OS parameters are lb_parameters'): the file record a renderer
returns, the secrets filter (redacted in a preview), the node's view of its
pair (its groups with its own advskew and priority, its peer, its devices).

Pure Python, no Salt dunders (lb_render and its parts use it).
"""

from dataclasses import dataclass

import lb_parameters

OS_FAMILIES = ("FreeBSD", "Debian")
REDACTED = "<redacted>"
HEADER = "Managed by Salt from pillar lb:pairs:{pair} for node {node}. Local edits are overwritten."

# Files of FreeBSD's base system that carry other lines than the node's
# (the host's own interfaces, sshd_enable, its loader settings): the states
# keep the node's lines in a marked block (File.block) and leave the rest.
SHARED_FILES = {
    "FreeBSD": (
        "/etc/rc.conf",
        lb_parameters.of("FreeBSD", "node")["sysctl_file"],
        lb_parameters.of("FreeBSD", "carp")["loader_conf"],
    ),
    "Debian": (),
}
# Groups other than the OS's root group: BIRD re-reads its config as `bird`.
FILE_GROUPS = {lb_parameters.of("Debian", "routing")["bird"]: "bird"}


@dataclass(frozen=True)
class File:
    """A rendered file: its content, its mode and owner, whether it holds a
    secret (states must not print its diff), and `block`: "append" when the
    content is the node's marked block inside a file the system owns
    (FreeBSD's /etc/rc.conf), None when the product writes the whole file.
    `group` None is the OS's root group (render_node fills it in).  `link`:
    the file is a symbolic link to that path (content empty; a unit's
    enablement, lb_boot).  `source`: a program installed from the state
    tree (salt://carp/files/...), whose text is that file's (content empty)."""

    content: str
    mode: str = "0644"
    secret: bool = False
    user: str = "root"
    group: str | None = None
    block: str | None = None
    link: str | None = None
    source: str | None = None  # a program: its file in the state tree (content empty)


class Secrets:
    """The filter every secret passes: its value, or `<redacted>` for a preview."""

    def __init__(self, redact: bool):
        self.redact = redact
        self.used = False

    def __call__(self, value) -> str:
        self.used = True
        return REDACTED if self.redact else str(value)


# ---------------------------------------------------------------------------
# derivation


def peer_of(pair: dict, node_id: str) -> str:
    others = [n for n in pair["nodes"] if n != node_id]
    return others[0]


def node_view(pair: dict, node_id: str) -> dict:
    """What this node gets from the pair: its groups with its own advskew,
    VRRP priority and role, and its stats bind address."""
    node = pair["nodes"][node_id]
    groups = []
    for vhid, g in pair["carp"]["groups"].items():
        iface = node["interfaces"][g["interface"]]
        primary = g["primary"] == node_id
        advskew = g["advskew_primary"] if primary else g["advskew_backup"]
        groups.append(
            {
                "vhid": vhid,
                "interface": g["interface"],
                "device": iface["device"],
                "vip": g["vip"],
                "password": g["password"],
                "advbase": g["advbase"],
                "advskew": advskew,
                # VRRP: higher priority wins, CARP: lower advskew wins.
                # 254 - advskew keeps the order and stays below 255, which
                # VRRP reserves for the owner of the address.
                "priority": 254 - advskew,
                "role": "MASTER" if primary else "BACKUP",
                "source": iface["address"],
                "peer_source": pair["nodes"][peer_of(pair, node_id)]["interfaces"][g["interface"]]["address"],
            }
        )
    stats = pair["haproxy"]["stats"]
    stats_addr = node["interfaces"][stats["interface"]]["address"] if stats else None
    return {"node": node, "peer": peer_of(pair, node_id), "groups": groups, "stats_address": stats_addr}


# On Linux (keepalived, ucarp) a VIP goes on its interface as a host address,
# whatever prefix the pillar gives it (the pillar's prefix is checked against
# the subnet, and FreeBSD's carp alias uses it).  As a /32 it is never a
# secondary address of the node's subnet, which the kernel would drop together
# with the primary; and it is a route of its own, so BIRD's `direct` protocol
# announces a VIP exactly while the address is on the node (lb_routing).
LINUX_VIP_PREFIXLEN = 32


def linux_vip(vip) -> str:
    """The VIP as Linux nodes configure it: ``<address>/32``."""
    return f"{vip.ip}/{LINUX_VIP_PREFIXLEN}"


def device(iface: dict, os_family: str) -> str:
    dev = iface["device"] if isinstance(iface, dict) and "device" in iface else iface
    return dev.get(os_family) or dev.get("default") or next(iter(dev.values()))


def tracked_devices(pair: dict, node_id: str, os_family: str) -> list[str]:
    """Interfaces whose loss should hand every VIP to the peer (what FreeBSD's
    net.inet.carp.preempt does for all CARP interfaces together): every
    interface but the stats/management one."""
    node = pair["nodes"][node_id]
    stats = pair["haproxy"]["stats"]
    skip = stats["interface"] if stats else None
    return [device(i, os_family) for name, i in node["interfaces"].items() if name != skip]
