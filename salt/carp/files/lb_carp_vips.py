#!/usr/bin/python3
"""The Linux CARP providers' VIP program, installed by salt/carp from
salt://carp/files/lb_carp_vips.py under two names.  Do not edit the copies.

lb-carp-keepalived-vips STATE_DIR VHID=DEVICE,ADDRESS/PREFIXLEN[,PEER] ... FIFO
    keepalived's vrrp_notify_fifo_script.  keepalived writes each instance's
    transitions to FIFO, in order ('INSTANCE "VI_<vhid>" <STATE> <priority>').
    MASTER: a blackhole route for the VIP, the state recorded, then (in a
    thread) the VIP added once no other host answers ARP for it (three
    unanswered 30 ms probes in a row, at most ACQUIRE_SECONDS), announced,
    and the event hook run.  BACKUP, FAULT, STOP: a pending add cancelled,
    the VIP removed (blackholed for 3 s), the state recorded, the event hook
    run.  States go to STATE_DIR/state/<vhid> as "<STATE> <priority>
    <epoch>".  keepalived does not repeat the states after a reload, so a
    copy started after its VRRP process applies the recorded ones.  When
    that process goes away (stopped, killed), the VIPs go with it: every
    group goes down as STOP.

lb-carp-arp-probe [--peer PEER] IFACE IPV4 [MAX_SECONDS]
    ucarp's up script runs it.  ARP probes (RFC 5227, sender address
    0.0.0.0, so no neighbour learns anything from them) for IPV4 on IFACE
    until three in a row go unanswered (30 ms each); exit 0 then (nobody
    holds the address), 1 if it was still answered after MAX_SECONDS
    (default 3).  With --peer (the second chance): an ARP probe for PEER's
    own address goes out as the probing starts.  If PEER answered it (a
    planned handover: the peer is up), IPV4 goes into the nft map
    `takeover` for HANDOVER_SECONDS before this exits; if not, IPV4's
    element in the map `pending` (the up script's) is deleted
    (docs/carp.md).
lb-carp-arp-probe --announce IFACE IPV4
    Three ARP announcements (RFC 5227: sender and target address IPV4,
    this interface's MAC), ARP_ANNOUNCE_GAPS apart: every neighbour with an
    entry for IPV4 takes this MAC.

keepalived runs notify scripts concurrently, so a fast MASTER -> BACKUP can
run backwards; its FIFO gives the transitions in order.  This program does
what ucarp's up and down scripts (lb-carp-vip-up/-down) do, in its own
threads: on a busy node, starting a process per step (a shell, a Python
for the probe) delayed the VIPs by up to a second.  keepalived's own
virtual_ipaddress is only a marker address on lo (lb_render_linux.keepalived_marker).
"""

import os
import queue
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

# Break before make: a node adds a VIP only once no other host answers ARP
# for it, at most ACQUIRE_SECONDS after it became MASTER (then it takes the
# address anyway: a peer that answers ARP but no longer advertises is gone
# for the protocol).  lb-carp-vip-up passes the same value to the probe.
ACQUIRE_SECONDS = 3
# A planned handover: the old master keeps taking what reaches it for the
# VIP for SOFT_SECONDS; the new one sends the old one's connections in
# flight on to it for HANDOVER_SECONDS (less), through the nft table
# HANDOVER_TABLE.
SOFT_SECONDS = 3.0
HANDOVER_SECONDS = 2.5
HANDOVER_TABLE = "lb_carp_handover"
ARP_ANNOUNCE_GAPS = (0.2, 1.0)  # seconds between the three announcements
NFT = "/usr/sbin/nft"
# The second chance's nft objects, in the table HANDOVER_TABLE: a map from a
# VIP just taken to the peer it was taken from (elements time out after
# HANDOVER_SECONDS), and the rule that sends on what belongs to none of this
# node's connections.  keepalived's copy makes the table when it starts and
# deletes it when keepalived stops; ucarp's probe adds these objects
# (idempotently) at a takeover.
# With ucarp, a second map: ucarp announces itself as the VIP's holder (a
# gratuitous ARP) the moment it becomes MASTER, while the old master still
# holds the VIP until it hears of it (up to a second later), so the new
# master's probe is still waiting; meanwhile everything that reaches the new
# master for the VIP goes on to the old one (`pending`, until the address
# is added here) instead of being dropped, which cost a new connection a
# 1 s SYN retransmission.  lb-carp-vip-up writes HANDOVER_READY itself (a
# shell cannot import this): tests/unit/test_carp_programs.py holds the two
# together.
_MAPS = (
    "takeover { type ipv4_addr : ipv4_addr; flags timeout; }",
    "pending { type ipv4_addr : ipv4_addr; flags timeout; }",
)
_CHAIN = "second_chance { type filter hook prerouting priority filter; policy accept; }"
_RULES = (
    "dup to ip daddr map @pending drop",
    "tcp flags ! syn ct state new,invalid dup to ip daddr map @takeover drop",
)
# nft's input: the table's objects (each made if missing), and its rules
HANDOVER_OBJECTS = (
    [f"add table ip {HANDOVER_TABLE}"] + [f"add map ip {HANDOVER_TABLE} {m}" for m in _MAPS] + [f"add chain ip {HANDOVER_TABLE} {_CHAIN}"]
)
HANDOVER_RULES = [f"add rule ip {HANDOVER_TABLE} second_chance {r}" for r in _RULES]
# the objects made if missing and the chain's rules made anew (a script of
# another group may run at once: each transaction leaves the chain with its
# rules once), in one transaction with what follows
HANDOVER_READY = HANDOVER_OBJECTS + [f"flush chain ip {HANDOVER_TABLE} second_chance"] + HANDOVER_RULES


# ---------------------------------------------------------------------------
# RFC 5227 probes and announcements: the probe runs them as a process, the
# keepalived copy in its own threads (no process to start when a VIP moves).


def arp_socket(iface):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    s.bind((iface, 0))
    mac = s.getsockname()[4]
    return s, b"\xff" * 6 + mac + b"\x08\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac


def arp_held(s, target, mac):
    # whether a frame queued on s says another host holds target: an ARP
    # reply from it, or its own gratuitous ARP (sender address target, not
    # this interface's MAC); every frame queued is read, none waited for
    held = False
    while True:
        try:
            frame = s.recv(256, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return held
        if len(frame) >= 42 and frame[12:14] == b"\x08\x06" and frame[20:22] in (b"\x00\x01", b"\x00\x02"):
            held = held or (frame[28:32] == target and frame[22:28] != mac)


def arp_free(iface, ip, seconds, cancelled=lambda: False):
    # True once three ARP probes in a row, 30 ms apart, went unanswered: no
    # host holds ip; False if it was still answered after `seconds`.  One
    # probe per 30 ms, never more; an answer counts whenever it is read (a
    # late one on a loaded host too): one slow answer must not hand the
    # address to two nodes.
    s, head = arp_socket(iface)
    mac = s.getsockname()[4]
    target = socket.inet_aton(ip)
    probe = head + bytes(4) + bytes(6) + target
    limit = time.monotonic() + seconds
    misses = 0
    try:
        while time.monotonic() < limit and not cancelled():
            s.send(probe)
            time.sleep(0.03)
            misses = 0 if arp_held(s, target, mac) else misses + 1
            if misses == 3:
                return True
        return False
    finally:
        s.close()


def arp_announce(iface, ip, cancelled=lambda: False):
    # three ARP announcements (sender and target address ip, this
    # interface's MAC): every neighbour with an entry for ip takes this MAC
    s, head = arp_socket(iface)
    target = socket.inet_aton(ip)
    try:
        for gap in (0,) + ARP_ANNOUNCE_GAPS:
            time.sleep(gap)
            if cancelled():
                return
            s.send(head + target + bytes(6) + target)
    finally:
        s.close()


# ---------------------------------------------------------------------------
# The second chance's steps (docs/carp.md).  Addresses reach nft only as
# canonical dotted quads (socket.inet_ntoa of socket.inet_aton).


def nft(lines, quiet=False):
    # nft -f - with these lines, in one transaction; whether it took them
    me = os.path.basename(sys.argv[0])
    try:
        done = subprocess.run([NFT, "-f", "-"], input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"{me}: nft: {exc}", file=sys.stderr)
        return False
    if done.returncode and not quiet:
        print(f"{me}: nft: {done.stderr.strip()}", file=sys.stderr)
    return done.returncode == 0


def timed_elements(name, addr, peer, seconds):
    # addr's element in map `name`, with a fresh timeout: added, removed and
    # added again, whether or not an earlier element is there
    one = f"{{ {addr} timeout {int(seconds * 1000)}ms : {peer} }}"
    t = HANDOVER_TABLE
    return [f"add element ip {t} {name} {one}", f"delete element ip {t} {name} {{ {addr} }}", f"add element ip {t} {name} {one}"]


def takeover_elements(addr, peer):
    return timed_elements("takeover", addr, peer, HANDOVER_SECONDS)


def ask_peer_on(iface, peer):
    # one ARP probe for the peer's own address; its answer is read later
    # (peer_up_on), once the VIP's probing is over
    s, head = arp_socket(iface)
    try:
        s.send(head + bytes(4) + bytes(6) + socket.inet_aton(peer))
    except OSError:
        s.close()
        raise
    return s


def peer_up_on(s, peer):
    # whether the peer answered (it is up on the VIP's network: a peer that
    # died or lost its link gets no second chance)
    try:
        return arp_held(s, socket.inet_aton(peer), s.getsockname()[4])
    except OSError:
        return False
    finally:
        s.close()


# ---------------------------------------------------------------------------
# lb-carp-arp-probe


def probe_main(args):
    peer = None
    if args[:1] == ["--peer"]:
        peer = socket.inet_ntoa(socket.inet_aton(args[1]))
        args = args[2:]
    if args[0] == "--announce":
        arp_announce(args[1], args[2])
        return 0
    iface, ip = args[0], socket.inet_ntoa(socket.inet_aton(args[1]))
    seconds = float(args[2]) if len(args) > 2 else float(ACQUIRE_SECONDS)
    asked = None
    if peer and os.access(NFT, os.X_OK):
        try:
            asked = ask_peer_on(iface, peer)
        except OSError as exc:
            print(f"lb-carp-arp-probe: ARP probe of the peer: {exc}", file=sys.stderr)
    try:
        free = arp_free(iface, ip, seconds)
    finally:
        up = asked is not None and peer_up_on(asked, peer)
    if up:
        # before the address is added: before any neighbour moves
        nft(HANDOVER_READY + takeover_elements(ip, peer))
    elif peer:
        # the up script sent what reaches this node for ip on to the peer,
        # which did not answer (dead, or cut off): no more
        nft([f"delete element ip {HANDOVER_TABLE} pending {{ {ip} }}"], quiet=True)
    return 0 if free else 1


# ---------------------------------------------------------------------------
# lb-carp-keepalived-vips: its state, set by keepalived_main

state_dir = None
groups = {}  # vhid -> (device, address, prefix length)
peers = {}  # vhid -> the peer's address on the VIP's interface (when given)
hook = None  # lb-carp-event beside this program
parent = None  # keepalived's VRRP process
handover_ready = None  # the handle of this copy's nft table, when it made one
lock = threading.RLock()  # one change at a time, in the FIFO's order
pending = {}  # vhid -> the Event that cancels its pending add
held = set()  # the vhids whose VIP this copy added and still holds
current = {}  # vhid -> the last state keepalived gave (or the recorded one applied)
# keepalived's states; the FIFO carries events too (MASTER_RX_LOWER_PRI,
# MASTER_PRIORITY, BACKUP_PRIORITY), which are not states
STATES = ("MASTER", "BACKUP", "FAULT", "STOP")
children = []
REFRESH = 10.0  # seconds between ARP announcements of the VIPs held
STOP_WAIT = 10

# The addresses and blackhole routes through rtnetlink, from this process:
# no `ip` to start (on a busy node each start took hundreds of ms).
RTM_NEWADDR, RTM_DELADDR, RTM_NEWROUTE, RTM_DELROUTE = 20, 21, 24, 25
NLM_F_REQUEST, NLM_F_ACK, NLM_F_REPLACE, NLM_F_CREATE = 0x1, 0x4, 0x100, 0x400


def netlink(kind, flags, body):
    # one request, its acknowledgement; returns the errno (0: done)
    s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
    try:
        s.bind((0, 0))
        s.settimeout(5)
        s.send(struct.pack("=LHHLL", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_ACK | flags, 1, 0) + body)
        reply = s.recv(65536)
        if len(reply) >= 20 and struct.unpack("=H", reply[4:6])[0] == 2:  # NLMSG_ERROR
            return -struct.unpack("=i", reply[16:20])[0]
        return 0
    finally:
        s.close()


def rta(kind, data):
    return struct.pack("=HH", 4 + len(data), kind) + data + bytes(-len(data) % 4)


def address(kind, dev, addr, plen):
    # RTM_NEWADDR / RTM_DELADDR: addr/plen on dev (IFA_ADDRESS, IFA_LOCAL)
    a = socket.inet_aton(addr)
    body = struct.pack("=BBBBI", socket.AF_INET, int(plen), 0, 0, socket.if_nametoindex(dev)) + rta(1, a) + rta(2, a)
    return netlink(kind, NLM_F_CREATE | NLM_F_REPLACE if kind == RTM_NEWADDR else 0, body)


def blackhole(kind, addr):
    # RTM_NEWROUTE / RTM_DELROUTE: blackhole addr/32 in the main table
    body = struct.pack("=BBBBBBBBI", socket.AF_INET, 32, 0, 0, 254, 3, 0, 6, 0) + rta(1, socket.inet_aton(addr))
    return netlink(kind, NLM_F_CREATE | NLM_F_REPLACE if kind == RTM_NEWROUTE else 0, body)


def local_route(kind, dev, addr):
    # RTM_NEWROUTE / RTM_DELROUTE: `local addr/32 dev DEV proto static` in
    # the local table.  The kernel's own local route for an address is
    # `proto kernel`: a delete naming proto static never removes that one.
    body = struct.pack("=BBBBBBBBI", socket.AF_INET, 32, 0, 0, 255, 4, 254, 2, 0)
    body += rta(1, socket.inet_aton(addr)) + rta(4, struct.pack("=I", socket.if_nametoindex(dev)))
    return netlink(kind, NLM_F_CREATE if kind == RTM_NEWROUTE else 0, body)


def listening(addr):
    # whether a TCP socket listens on addr (HAProxy's listeners for the VIP)
    want = f"{struct.unpack('=I', socket.inet_aton(addr))[0]:08X}"
    try:
        with open("/proc/net/tcp") as fh:
            next(fh)
            for line in fh:
                words = line.split()
                if len(words) > 3 and words[3] == "0A" and words[1].split(":")[0] in (want, "00000000"):
                    return True
    except (OSError, StopIteration):
        pass
    return False


# A planned handover (maintenance, a preemption back, keepalived stopping on
# a node whose HAProxy still serves) is hitless: the node that gives the VIP
# up keeps accepting what still reaches it for SOFT_SECONDS (a local route,
# not an address, so it does not answer ARP for it: arp_ignore 1 on the VIP
# devices), while the new master's ARP announcements move the neighbours'
# entries over.  A node whose HAProxy does not listen on the VIP drops it
# at once (blackholed: a client's SYN is retransmitted, and reaches the
# peer, instead of being refused here).
soft = {}  # vhid -> the token of its pending soft release


def soft_end(vhid, token=None):
    # the soft release's local route goes (all of them, or only token's)
    cur = soft.get(vhid)
    if cur is not None and (token is None or cur is token):
        del soft[vhid]
        dev, addr, _ = groups[vhid]
        local_route(RTM_DELROUTE, dev, addr)


# A second chance for the connections a planned handover catches in flight.
# A neighbour's ARP entry moves to the new master at one instant; a
# connection whose SYN reached the old master just before it sends its next
# segments (the request, an ACK, a FIN) to the new master, which knows no
# such connection and would answer with a reset.  So for HANDOVER_SECONDS
# after this node took a VIP while its peer was up on the VIP's network (it
# answered an ARP probe for its own address during the VIP's probing: a
# planned handover, not a peer that died or lost its link), such segments
# (TCP without SYN, of no connection this node tracks) are sent on to the
# peer's address, unchanged but for the TTL (nft `dup`, then dropped here):
# the peer's soft release (SOFT_SECONDS, longer) still takes them.
# The table's `ct` expression turns connection tracking on for the node's
# traffic (a host with a stateful firewall has it on anyway).  Nothing is
# exempted with notrack: a host firewall that accepts replies by `ct state
# established` would drop the replies to the node's own connections
# (HAProxy's to its servers).  nft's table is this script's runtime state,
# like arp_ignore; it goes when keepalived stops.  carp:second_chance:
# false in the pillar leaves the peers out of this script's arguments, and
# then there is no table.


def handover_table():
    # the table, made anew (atomically replaced if a copy before made one);
    # its handle, which names this copy's table and no later copy's
    t = HANDOVER_TABLE
    if not nft([f"add table ip {t}", f"delete table ip {t}"] + HANDOVER_OBJECTS + HANDOVER_RULES):
        return None
    try:
        listed = subprocess.run([NFT, "-a", "list", "table", "ip", t], capture_output=True, text=True, timeout=10, check=False).stdout
        return int(listed.split("# handle ", 1)[1].split()[0])
    except (OSError, subprocess.SubprocessError, IndexError, ValueError) as exc:
        print(f"lb-carp-keepalived-vips: nft: no handle for table {t}: {exc}", file=sys.stderr)
        return None


def ask_peer(vhid):
    # one ARP probe for the peer's own address, sent as the VIP's probing
    # begins; its answer is read once that is over (peer_answered)
    if vhid not in peers or not handover_ready:
        return None
    try:
        return ask_peer_on(groups[vhid][0], peers[vhid])
    except OSError as exc:
        print(f"lb-carp-keepalived-vips: vhid {vhid}: ARP probe of the peer: {exc}", file=sys.stderr)
        return None


def peer_answered(vhid, s):
    return s is not None and peer_up_on(s, peers[vhid])


def handover_begin(vhid):
    if vhid in peers and handover_ready:
        nft(takeover_elements(groups[vhid][1], peers[vhid]))


def handover_end(vhid):
    if vhid in peers and handover_ready:
        nft([f"delete element ip {HANDOVER_TABLE} takeover {{ {groups[vhid][1]} }}"], quiet=True)


def arp_ignore_on_vip_devices():
    # answer ARP only for addresses configured on the asking interface, so
    # a soft release's local route is never announced
    for dev in sorted({g[0] for g in groups.values()}):
        path = f"/proc/sys/net/ipv4/conf/{dev}/arp_ignore"
        try:
            with open(path) as fh:
                if int(fh.read().strip() or 0) >= 1:
                    continue
            with open(path, "w") as fh:
                fh.write("1\n")
        except (OSError, ValueError) as exc:
            print(f"lb-carp-keepalived-vips: {path}: {exc}", file=sys.stderr)


# Writing the state files and starting the event hook wait on the disk and
# on fork: a thread of their own does them, in order, so that the next
# transition is never held up by them.
later = queue.Queue()


def background():
    while True:
        job = later.get()
        try:
            job()
        except Exception as exc:  # noqa: BLE001 - report, go on
            print(f"lb-carp-keepalived-vips: {exc}", file=sys.stderr)
        finally:
            later.task_done()


def record(vhid, state, prio):
    later.put(lambda: record_now(vhid, state, prio))


def record_now(vhid, state, prio):
    path = os.path.join(state_dir, "state", str(vhid))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = os.path.join(state_dir, "state", f".{vhid}.{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(f"{state} {prio} {int(time.time())}\n")
    os.replace(tmp, path)


def recorded(vhid):
    try:
        with open(os.path.join(state_dir, "state", str(vhid))) as fh:
            words = fh.read().split()
        return words[0], words[1]
    except (OSError, IndexError):
        return None, "-"


def event(vhid, state):
    later.put(lambda: event_now(vhid, state))


def event_now(vhid, state):
    # the CARP beacon's event, sent at once (lb-carp-event, when installed)
    if os.access(hook, os.X_OK):
        dev, addr, plen = groups[vhid]
        devnull = subprocess.DEVNULL
        children.append(subprocess.Popen([hook, str(vhid), state, dev, f"{addr}/{plen}"], stdin=devnull, stdout=devnull, stderr=devnull))


def cancel(vhid):
    stop = pending.pop(vhid, None)
    if stop is not None:
        stop.set()


def acquire(vhid, stop):
    dev, addr, plen = groups[vhid]
    # the second chance is for a takeover, not for a VIP this copy holds
    asked = None if vhid in held else ask_peer(vhid)
    try:
        if not arp_free(dev, addr, ACQUIRE_SECONDS, stop.is_set) and not stop.is_set():
            # after ACQUIRE_SECONDS: taken anyway, and said where its other errors go
            print(
                f"lb-carp-keepalived-vips: vhid {vhid}: another host still answered ARP for {addr} after {ACQUIRE_SECONDS}s: taking it anyway",
                file=sys.stderr,
            )
    except OSError as exc:
        print(f"lb-carp-keepalived-vips: vhid {vhid}: ARP probe: {exc}", file=sys.stderr)
    if peer_answered(vhid, asked) and not stop.is_set():
        handover_begin(vhid)  # before the address: before any neighbour moves
    with lock:
        if stop.is_set():
            return
        address(RTM_NEWADDR, dev, addr, plen)
        blackhole(RTM_DELROUTE, addr)
        held.add(vhid)
        if pending.get(vhid) is stop:
            del pending[vhid]
    event(vhid, "MASTER")
    try:
        arp_announce(dev, addr, stop.is_set)
    except OSError as exc:
        print(f"lb-carp-keepalived-vips: vhid {vhid}: ARP announcement: {exc}", file=sys.stderr)


def refresh():
    # one ARP announcement per VIP held, every REFRESH seconds (what
    # keepalived's vrrp_garp_master_refresh did for its own VIPs): a
    # neighbour that learnt another MAC for a VIP (the peer's, during a
    # split brain) learns this node's again within REFRESH
    for vhid in sorted(held):
        dev, addr, _ = groups[vhid]
        s, head = arp_socket(dev)
        try:
            target = socket.inet_aton(addr)
            s.send(head + target + bytes(6) + target)
        finally:
            s.close()


def unblackhole(vhid, token=None):
    with lock:
        if token is not None:
            soft_end(vhid, token)
        if recorded(vhid)[0] != "MASTER":
            blackhole(RTM_DELROUTE, groups[vhid][1])


def run(vhid, state, prio="-"):
    if vhid not in groups:
        return
    dev, addr, plen = groups[vhid]
    with lock:
        current[vhid] = state
        cancel(vhid)
        soft_end(vhid)
        blackhole(RTM_NEWROUTE, addr)
        if state == "MASTER":
            stop = pending[vhid] = threading.Event()
            threading.Thread(target=acquire, args=(vhid, stop), daemon=True).start()
            record(vhid, state, prio)
            return
        later.put(lambda: handover_end(vhid))
        token = None
        if state in ("BACKUP", "STOP") and vhid in held and listening(addr):
            # local before the address goes: no moment without either
            if local_route(RTM_NEWROUTE, dev, addr) == 0:
                token = soft[vhid] = object()
        address(RTM_DELADDR, dev, addr, plen)
        held.discard(vhid)
        record(vhid, state, prio)
    event(vhid, state)
    timer = threading.Timer(SOFT_SECONDS if token else 3.0, unblackhole, args=(vhid, token))
    timer.daemon = True
    timer.start()


def reassert(vhid, prio):
    # keepalived, MASTER, heard a lower priority's advertisement: the peer
    # believed itself master (a split brain healing) and may have taken the
    # VIP's ARP entries or the VIP itself while this node could not hear it.
    # The peer goes BACKUP on this node's answer; this node stays MASTER: it
    # announces its VIPs again, or takes one it no longer holds.
    if vhid not in groups:
        return
    dev, addr, _ = groups[vhid]
    with lock:
        if current.get(vhid) != "MASTER" or vhid in pending:
            return
        if vhid not in held or not holds(dev, addr):
            held.discard(vhid)
            run(vhid, "MASTER", prio)
            return

    def announce():
        try:
            arp_announce(dev, addr, lambda: current.get(vhid) != "MASTER")
        except OSError as exc:
            print(f"lb-carp-keepalived-vips: vhid {vhid}: ARP announcement: {exc}", file=sys.stderr)

    threading.Thread(target=announce, daemon=True).start()


def holds(dev, addr):
    out = subprocess.run(["/sbin/ip", "-o", "-4", "addr", "show", "dev", dev], capture_output=True, text=True, check=False).stdout
    return any(word.split("/")[0] == addr for word in out.split())


def release_all():
    for vhid in sorted(groups):
        run(vhid, "STOP")
    later.join()
    time.sleep(3.2)  # the blackholes' removal
    if handover_ready:
        # by handle: a keepalived started since has a table of its own
        nft([f"delete table ip handle {handover_ready}"], quiet=True)


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def age(pid):  # seconds since pid started
    with open(f"/proc/{pid}/stat") as fh:
        start = int(fh.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
    with open("/proc/uptime") as fh:
        return float(fh.read().split()[0]) - start


def parse_groups(words):
    """{vhid: (device, address, prefix length)} and {vhid: peer} from the
    arguments VHID=DEVICE,ADDRESS/PREFIXLEN[,PEER]."""
    out, out_peers = {}, {}
    for word in words:
        vhid, _, rest = word.partition("=")
        dev, _, rest = rest.partition(",")
        cidr, _, peer = rest.partition(",")
        addr, _, plen = cidr.partition("/")
        # canonical dotted quads: they go into nft's input
        out[int(vhid)] = (dev, socket.inet_ntoa(socket.inet_aton(addr)), plen or "32")
        if peer:
            out_peers[int(vhid)] = socket.inet_ntoa(socket.inet_aton(peer))
    return out, out_peers


def keepalived_main(argv):
    global state_dir, hook, parent, handover_ready, lock, later
    # Real-time (round robin, the lowest priority): a VIP moves while the
    # node may be busy with everything a failover sets off (event hooks,
    # state runs); at normal priority each step here waited hundreds of ms
    # for a CPU.  It mostly sleeps in select() and every loop is bounded;
    # what it starts (the event hook) runs at normal priority
    # (SCHED_RESET_ON_FORK).
    try:
        os.sched_setscheduler(0, os.SCHED_RR | os.SCHED_RESET_ON_FORK, os.sched_param(1))
    except (AttributeError, OSError) as exc:
        print(f"lb-carp-keepalived-vips: runs at normal priority: {exc}", file=sys.stderr)
    state_dir, fifo = argv[1], argv[-1]
    parsed, parsed_peers = parse_groups(argv[2:-1])
    groups.update(parsed)
    peers.update(parsed_peers)
    hook = os.path.join(os.path.dirname(os.path.abspath(argv[0])), "lb-carp-event")
    parent = os.getppid()
    threading.Thread(target=background, daemon=True).start()

    # keepalived starts a copy with its VRRP process, then sends every
    # instance's first state.  A copy started later (by a reload, after the
    # last copy died, or by the reload that replaced an earlier version's
    # notify scripts) is sent nothing until the next transition: it applies
    # the recorded states.
    arp_ignore_on_vip_devices()
    handover_ready = handover_table() if peers and os.access(NFT, os.X_OK) else None  # the table's handle
    try:
        restarted = age(parent) > 2.0
    except (OSError, ValueError, IndexError):
        restarted = False
    if restarted:
        for vhid, (dev, addr, _) in sorted(groups.items()):
            state, prio = recorded(vhid)
            # an earlier release recorded keepalived's events as states; each
            # came while keepalived was in the state it names (an upgrade heals
            # a node those releases left without its VIPs)
            state = {"MASTER_RX_LOWER_PRI": "MASTER", "MASTER_PRIORITY": "MASTER", "BACKUP_PRIORITY": "BACKUP"}.get(state, state)
            if state in STATES:
                current[vhid] = state
            if state == "MASTER" and holds(dev, addr):
                held.add(vhid)
            elif state == "MASTER":
                run(vhid, "MASTER", prio)
            elif state in STATES and holds(dev, addr):
                run(vhid, state, prio)

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    # opened read-write: this copy is a writer too, so no end of file between
    # keepalived's writes (or while it reopens the FIFO)
    fd = os.open(fifo, os.O_RDWR)
    buf = b""
    next_refresh = time.monotonic() + REFRESH
    while True:
        if os.getppid() != parent:
            release_all()
            return 0
        if stopping:
            # a reload (the VRRP process goes on and starts a new copy) or a
            # stop (it exits once this copy has).  keepalived waits for this
            # copy, so the wait happens in a detached child: it releases the
            # VIPs only if the VRRP process goes within STOP_WAIT seconds.
            os.close(fd)
            if os.fork() == 0:
                os.setsid()
                lock = threading.RLock()  # another thread may have held it at the fork
                later = queue.Queue()  # and its thread did not survive it
                threading.Thread(target=background, daemon=True).start()
                deadline = time.monotonic() + STOP_WAIT
                while time.monotonic() < deadline:
                    if not alive(parent):
                        release_all()
                        break
                    time.sleep(0.05)
                os._exit(0)
            return 0
        ready, _, _ = select.select([fd], [], [], 0.2)
        children[:] = [c for c in children if c.poll() is None]
        if time.monotonic() >= next_refresh:
            next_refresh = time.monotonic() + REFRESH
            later.put(refresh)
        if not ready:
            continue
        buf += os.read(fd, 4096)
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            words = line.decode(errors="replace").split()
            try:
                if len(words) >= 3 and words[0] == "INSTANCE":
                    name = words[1].strip('"')
                    if name.startswith("VI_") and name[3:].isdigit():
                        vhid, what, prio = int(name[3:]), words[2], words[3] if len(words) > 3 else "-"
                        if what in STATES:
                            run(vhid, what, prio)
                        elif what == "MASTER_RX_LOWER_PRI":
                            reassert(vhid, prio)
                        # MASTER_PRIORITY, BACKUP_PRIORITY: a priority changed,
                        # not the state (keepalived writes these events to the
                        # same FIFO, vrrp_notify.c): the VIPs stay as they are
            except Exception as exc:  # one bad line must not stop the transitions after it
                print(f"lb-carp-keepalived-vips: {line!r}: {exc}", file=sys.stderr)


PROGRAMS = {"lb-carp-keepalived-vips": keepalived_main, "lb-carp-arp-probe": lambda argv: probe_main(argv[1:])}


def main(argv=None):
    argv = list(sys.argv if argv is None else argv)
    name = os.path.basename(argv[0])
    if name not in PROGRAMS:
        print(f"{name}: run me as {' or '.join(sorted(PROGRAMS))}", file=sys.stderr)
        return 2
    return PROGRAMS[name](argv)


if __name__ == "__main__":
    sys.exit(main())
