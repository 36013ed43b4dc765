"""The lab's network, derived from the lab pillar.

`plan_from_pillar` reads `pillar/lab/lb.sls` and returns what the lab builds:
one bridge per pillar network, the pair's nodes with the pillar's device names
and addresses, one router (r1) holding every gateway, the database servers
(pools of kind `galera`) and HTTP servers (pools of kind `http`).  Only the
client host and the salt-master's link are the lab's own (constants below).
Pure: it reads one file and computes; nothing touches the system.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path

import netaddr
import yaml

# The lab's own parts, which the pillar does not describe.
CLIENT_NETWORK = "198.18.0.0/24"  # the pillar's `usernet` route points here
# The upstream router (BGP) and the external client behind it: only when the
# pillar has routing:bgp.  up1 stands at the (first) BGP neighbor's address;
# ext reaches the VIPs only through up1's BGP-learned /32s (the pillar's
# `extnet` route brings the answers back).
UPSTREAM = "up1"
EXT_NETWORK = "198.19.2.0/24"
EXT_ROUTER_INDEX = 1  # up1 at 198.19.2.1
EXT_HOST_INDEX = 10  # ext at 198.19.2.10
CLIENT_HOST_INDEX = 10  # client at 198.18.0.10
ROUTER_HOST_INDEX = 254  # r1's address on segments without a pillar gateway
MASTER_HOST_INDEX = 250  # salt-master at 198.18.1.250 on the mgmt segment
DB_MGMT_FIRST_INDEX = 11  # database hosts' salt-only mgmt addresses: .11, .12 ...
ROUTER = "r1"
MASTER_DEVICE = "lab-master"  # root-namespace end of the master's veth
IFNAMSIZ = 15  # Linux interface names are at most 15 characters


@dataclass(frozen=True)
class Network:
    name: str  # the pillar's network name ("client" for the lab's own)
    cidr: str
    bridge: str  # Linux bridge in the root namespace
    router: str  # r1's address on it, "198.18.2.254/24"


@dataclass(frozen=True)
class Interface:
    device: str  # name inside the host (the pillar's `device` for the nodes)
    network: str  # Network.name
    address: str  # "198.18.1.241/24"
    port: str = ""  # bridge-side veth end in the root namespace


@dataclass
class Host:
    name: str
    role: str  # lb | router | db | web | client | upstream | ext
    interfaces: list[Interface]
    routes: list[tuple[str, str]] = field(default_factory=list)  # (destination, gateway)
    default_gateway: str | None = None
    minion_id: str | None = None
    service: tuple[str, int] | None = None  # (address, port) of the HTTP server
    pillar_name: str | None = None  # the server's name in the pillar (db, web)
    # (device, "address/prefix", pillar name): another galera pool's server
    # this host stands in for (without --galera6, see _stand_ins)
    aliases: list[tuple[str, str, str]] = field(default_factory=list)
    # upstream router: (device, [peer addresses]): its address on that device
    # covers no prefix (noprefixroute), only a /32 route to each peer, so
    # what it forwards to the VIPs follows its BGP routes alone
    peers: tuple[str, list[str]] | None = None


@dataclass
class Plan:
    pair: str
    networks: dict[str, Network]
    hosts: list[Host]
    master: Interface  # the salt-master's end of its link, in the root namespace

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    @property
    def minion_ids(self) -> list[str]:
        return [h.minion_id for h in self.hosts if h.minion_id]

    @property
    def master_ip(self) -> str:
        return self.master.address.split("/")[0]

    @property
    def bridges(self) -> list[str]:
        return [n.bridge for n in self.networks.values()]

    @property
    def root_links(self) -> list[str]:
        """Every interface the lab creates in the root namespace besides bridges."""
        ports = [i.port for h in self.hosts for i in h.interfaces]
        return ports + [self.master.port, self.master.device]


def plan_from_pillar(path: str | Path, galera6: bool = False) -> Plan:
    """Derive the lab from the lab pillar at `path`.

    Database hosts come from the first pool of kind `galera` (db-1..3); with
    `galera6` from every galera pool (db-1..6).  HTTP hosts come from every
    pool of kind `http` (web-1..).
    """
    doc = yaml.safe_load(Path(path).read_text())
    pairs = doc["lb"]["pairs"]
    if len(pairs) != 1:
        raise ValueError(f"the lab builds exactly one pair, {path} has {sorted(pairs)}")
    pair_name, pair = next(iter(pairs.items()))

    cidrs = {name: netaddr.IPNetwork(net["cidr"]) for name, net in pair["networks"].items()}
    used = _used_addresses(pair)

    networks: dict[str, Network] = {}
    for name, net in pair["networks"].items():
        cidr = cidrs[name]
        gateway = net.get("gateway") or str(_router_address(cidr, used))
        networks[name] = Network(name, str(cidr), _bridge(name), f"{gateway}/{cidr.prefixlen}")
    client_net = netaddr.IPNetwork(CLIENT_NETWORK)
    networks["client"] = Network("client", CLIENT_NETWORK, _bridge("client"), f"{client_net[ROUTER_HOST_INDEX]}/{client_net.prefixlen}")

    def on(network: str, address) -> str:
        return f"{address}/{netaddr.IPNetwork(networks[network].cidr).prefixlen}"

    def via(network: str) -> str:
        return networks[network].router.split("/")[0]

    def network_of(address: str) -> str:
        ip = netaddr.IPAddress(address)
        for name, cidr in cidrs.items():
            if ip in cidr:
                return name
        raise ValueError(f"{address} is in none of the pair's networks {sorted(cidrs)}")

    hosts: list[Host] = []
    # The load balancers get their links and base addresses only, as cabling
    # and a provisioner would: the pillar's static routes and sysctls are the
    # product's to apply (the host SLS), so the lab tests catch it if it
    # does not.
    for node_id, node in pair["nodes"].items():
        interfaces = [Interface(i["device"], i["network"], on(i["network"], i["address"])) for i in node["interfaces"].values()]
        hosts.append(Host(node_id, "lb", interfaces, minion_id=node_id))

    hosts.append(
        Host(
            ROUTER,
            "router",
            [Interface(f"{ROUTER}-eth{n}", net.name, net.router) for n, net in enumerate(networks.values())],
        )
    )

    mgmt = _mgmt_network(pair)
    master_address = cidrs[mgmt][MASTER_HOST_INDEX]
    if str(master_address) in used:
        raise ValueError(f"the master's address {master_address} is taken in the pillar")
    used.add(str(master_address))
    master = Interface(MASTER_DEVICE, mgmt, on(mgmt, master_address))
    mgmt_free = _free_addresses(cidrs[mgmt], used, DB_MGMT_FIRST_INDEX)
    for n, (server, address) in enumerate(_servers(pair, "galera", first_pool_only=not galera6), start=1):
        name, network = f"db-{n}", network_of(address)
        interfaces = [
            Interface(f"{name}-eth0", network, on(network, address)),
            Interface(f"{name}-eth1", mgmt, on(mgmt, next(mgmt_free))),
        ]
        hosts.append(Host(name, "db", interfaces, default_gateway=via(network), minion_id=name, pillar_name=server))

    if not galera6:
        _stand_ins(pair, [h for h in hosts if h.role == "db"], network_of, on)

    for n, (server, address, port) in enumerate(_servers(pair, "http", with_port=True), start=1):
        name, network = f"web-{n}", network_of(address)
        hosts.append(
            Host(
                name,
                "web",
                [Interface(f"{name}-eth0", network, on(network, address))],
                default_gateway=via(network),
                service=(address, port),
                pillar_name=server,
            )
        )

    hosts.append(
        Host(
            "client",
            "client",
            [Interface("client-eth0", "client", on("client", client_net[CLIENT_HOST_INDEX]))],
            default_gateway=via("client"),
        )
    )

    _upstream(pair, networks, hosts, network_of)

    hosts, master = _name_ports(hosts, master, networks)
    _check_names(hosts, networks)
    return Plan(pair_name, networks, hosts, master)


def _upstream(pair: dict, networks: dict, hosts: list[Host], network_of) -> None:
    """up1 (BGP peer of both nodes, at the pillar's first BGP neighbor
    address) and ext behind it on the lab's own EXT_NETWORK; nothing
    without routing:bgp.  r1 is not on the ext network."""
    bgp = ((pair.get("routing") or {}).get("bgp") or {}).get("neighbors") or {}
    if not bgp:
        return
    address = str(next(iter(bgp.values()))["address"])
    network = network_of(address)
    prefixlen = netaddr.IPNetwork(networks[network].cidr).prefixlen
    ext = netaddr.IPNetwork(EXT_NETWORK)
    up_ext = f"{ext[EXT_ROUTER_INDEX]}/{ext.prefixlen}"
    networks["ext"] = Network("ext", EXT_NETWORK, _bridge("ext"), up_ext)
    peers = [str(i["address"]) for node in pair["nodes"].values() for i in node["interfaces"].values() if i["network"] == network]
    hosts.append(
        Host(
            UPSTREAM,
            "upstream",
            [Interface(f"{UPSTREAM}-eth0", network, f"{address}/{prefixlen}"), Interface(f"{UPSTREAM}-eth1", "ext", up_ext)],
            peers=(f"{UPSTREAM}-eth0", peers),
        )
    )
    hosts.append(
        Host(
            "ext",
            "ext",
            [Interface("ext-eth0", "ext", f"{ext[EXT_HOST_INDEX]}/{ext.prefixlen}")],
            routes=[(str(networks[network].cidr), str(ext[EXT_ROUTER_INDEX]))],
        )
    )


def _stand_ins(pair: dict, dbs: list[Host], network_of, on) -> None:
    """Without --galera6 only the first galera pool's servers are hosts.  The
    other pools' servers become extra addresses of those hosts (n-th server
    of a pool on the n-th host, in pillar order), where they are on the same
    network, so that every galera listener has real servers: with the
    pillar's galera_b, db-1..3 also answer as percona_mysql-4..6 (198.18.5.2,
    .3, .4) and the VIP .44 reaches the same cluster through its own active
    server (db-3).  A pool on another network gets no stand-ins."""
    pools = [p for p in pair.get("haproxy", {}).get("pools", {}).values() if p.get("kind") == "galera"][1:]
    taken = {i.address.split("/")[0] for h in dbs for i in h.interfaces}
    for pool in pools:
        servers = [(name, str(srv["address"])) for name, srv in pool.get("servers", {}).items()]
        for host, (name, address) in zip(dbs, servers, strict=False):
            eth0 = host.interfaces[0]
            if address in taken or network_of(address) != eth0.network:
                continue
            taken.add(address)
            host.aliases.append((eth0.device, on(eth0.network, address), name))


def _bridge(network: str) -> str:
    # Mininet's LinuxBridge only enslaves ports whose name contains the
    # bridge's name, so ports are "<bridge>-p<n>": keep room for "-p99".
    return f"lab-{network[:7]}"


def _used_addresses(pair: dict) -> set[str]:
    used = {str(net.get("gateway")) for net in pair["networks"].values() if net.get("gateway")}
    used |= {str(i["address"]) for node in pair["nodes"].values() for i in node["interfaces"].values()}
    used |= {str(s["address"]) for pool in pair.get("haproxy", {}).get("pools", {}).values() for s in pool.get("servers", {}).values()}
    return used


def _router_address(cidr: netaddr.IPNetwork, used: set[str]) -> netaddr.IPAddress:
    """r1's address on a segment with no pillar gateway: .254 if free, else the last free one."""
    preferred = cidr.network + ROUTER_HOST_INDEX
    candidates = chain([preferred] if preferred in cidr else [], reversed(list(cidr.iter_hosts())))
    for address in candidates:
        if str(address) not in used:
            used.add(str(address))
            return address
    raise ValueError(f"no free address for the router in {cidr}")


def _free_addresses(cidr: netaddr.IPNetwork, used: set[str], first_index: int):
    for address in cidr.iter_hosts():
        if address >= cidr.network + first_index and str(address) not in used:
            used.add(str(address))
            yield address


def _mgmt_network(pair: dict) -> str:
    names = {node["interfaces"]["mgmt"]["network"] for node in pair["nodes"].values()}
    if len(names) != 1:
        raise ValueError(f"the nodes' mgmt interfaces must share one network, found {sorted(names)}")
    return names.pop()


def _servers(pair: dict, kind: str, first_pool_only: bool = False, with_port: bool = False) -> list[tuple]:
    """(name, address[, port]) of the servers of every pool of `kind`, in pillar order, once each."""
    pools = [p for p in pair.get("haproxy", {}).get("pools", {}).values() if p.get("kind") == kind]
    if first_pool_only:
        pools = pools[:1]
    seen, servers = set(), []
    for pool in pools:
        for name, server in pool.get("servers", {}).items():
            if server["address"] in seen:
                continue
            seen.add(server["address"])
            servers.append((name, server["address"], server["port"]) if with_port else (name, server["address"]))
    return servers


def _name_ports(hosts: list[Host], master: Interface, networks: dict[str, Network]):
    """Give every interface its bridge-side port name, "<bridge>-p<n>"."""
    counts = {name: 0 for name in networks}

    def port(network: str) -> str:
        counts[network] += 1
        return f"{networks[network].bridge}-p{counts[network]}"

    for host in hosts:
        host.interfaces = [Interface(i.device, i.network, i.address, port(i.network)) for i in host.interfaces]
    return hosts, Interface(master.device, master.network, master.address, port(master.network))


def _check_names(hosts: list[Host], networks: dict[str, Network]) -> None:
    names = [n.bridge for n in networks.values()]
    names += [i.port for h in hosts for i in h.interfaces]
    too_long = [n for n in names if len(n) > IFNAMSIZ]
    too_long += [i.device for h in hosts for i in h.interfaces if len(i.device) > IFNAMSIZ]
    if too_long:
        raise ValueError(f"interface names longer than {IFNAMSIZ} characters: {too_long}")
    if len(set(names)) != len(names):
        raise ValueError(f"two networks map to the same bridge name: {sorted(names)}")
    devices = [i.device for h in hosts for i in h.interfaces]
    if len(set(devices)) != len(devices):
        raise ValueError("two interfaces share a device name")
