"""The programs the Linux carp providers install, as text: the ucarp up and
down scripts (lb-carp-vip-up/-down), the ARP probe (lb-carp-arp-probe), the
ucarp launcher (lb-ucarp-exec) and keepalived's FIFO script
(lb-carp-keepalived-vips), with the constants they are built from (the
acquire and handover timings, the nft handover table) and the ucarp argv
file's format.  `_modules/carp_ucarp.py` and `carp_keepalived.py` write
them; `lb_render`/`lb_boot` list them for `lb.preview`.

Still Python strings (docs/design.md, "Not yet"): the step after this is
real files under salt/carp/files/.
"""

from __future__ import annotations

import os
import shlex

import lb_boot
from carp_common import UCARP_MAINTENANCE_ADVSKEW, read_text

# After recording, the state is announced at once by lb-carp-event beside
# this script when it is installed (salt/carp/events.sls): it sends the CARP
# beacon's event through `salt-call event.send`, in the background so the
# daemon never waits for the master.
_WRITE_STATE = r"""tmp="$dir/state/.$vhid.$$"
mkdir -p "$dir/state"
printf '%s %s %s\n' "$state" "$prio" "$(date +%s)" > "$tmp" && mv -f "$tmp" "$dir/state/$vhid"
"""
_EVENT_HOOK = r"""hook="${0%/*}/lb-carp-event"
if [ -x "$hook" ]; then
	"$hook" "$vhid" "$state" "${iface:-}" "${vip:+$vip/$plen}" </dev/null >/dev/null 2>&1 &
fi
"""
_RECORD_STATE = _WRITE_STATE + _EVENT_HOOK

# Break before make: a Linux node adds a VIP only once no other host holds
# it.  ucarp runs lb-carp-vip-up and lb-carp-vip-down; keepalived hands its
# transitions to lb-carp-keepalived-vips (below), which takes the same steps
# in its own threads.  A new master hears about the old one only
# through the protocol: ucarp through libpcap with a 1 s read timeout, so the
# old master may hear the new master's advertisement up to a second late;
# keepalived within milliseconds, but on a loaded host tens of them.  The old
# master drops the VIP only then; adding it at once would leave it on both
# nodes meanwhile.  The up script therefore returns at once (ucarp waits for
# it before advertising) and, in the background, adds the VIP as soon as no
# host answers an ARP probe for it (lb-carp-arp-probe: three unanswered 30 ms
# probes in a row, at most VIP_ACQUIRE_SECONDS, after which it takes the
# address anyway: a peer that answers ARP but no longer advertises is gone
# for the protocol); the down script cancels a pending add first.
# Meanwhile a blackhole route for the VIP makes the node drop, silently, what
# reaches it for the VIP instead of forwarding it or answering with an ICMP
# error: a client's SYN lost so is sent again after 1 s and then reaches the
# new master.  Once the address is here the script announces it (RFC 5227
# ARP announcements, lb-carp-arp-probe --announce), so that the neighbours
# (the router in front) send to this node's MAC from then on rather than keep
# the old master's until their entry ages out.
# Both scripts are called as <script> <interface> <vip> "<prefixlen> <vhid>
# <state_dir>" (ucarp's --xparam); LB_CARP_STATE and LB_CARP_PRIO, when set,
# give the state and priority to record, else MASTER or BACKUP and "-".
VIP_ACQUIRE_SECONDS = 3
# A planned handover (lb-carp-keepalived-vips): the old master keeps taking
# what reaches it for the VIP for SOFT_RELEASE_SECONDS; the new one sends
# the old one's connections in flight on to it for HANDOVER_SECONDS (less),
# through the nft table HANDOVER_TABLE.
SOFT_RELEASE_SECONDS = 3.0
HANDOVER_SECONDS = 2.5
HANDOVER_TABLE = "lb_carp_handover"
ARP_ANNOUNCE_GAPS = (0.2, 1.0)  # seconds between the three announcements
# The second chance's nft objects, in the table HANDOVER_TABLE: a map from a
# VIP just taken to the peer it was taken from (elements time out after
# HANDOVER_SECONDS), and the rule that sends on what belongs to none of this
# node's connections.  keepalived's script makes the table when it starts
# and deletes it when keepalived stops; ucarp's ARP probe adds these
# objects (idempotently) at a takeover.
# With ucarp, a second map: ucarp announces itself as the VIP's holder (a
# gratuitous ARP) the moment it becomes MASTER, while the old master still
# holds the VIP until it hears of it (up to a second later), so the new
# master's probe is still waiting; meanwhile everything that reaches the new
# master for the VIP goes on to the old one (`pending`, until the address
# is added here) instead of being dropped, which cost a new connection a
# 1 s SYN retransmission.
HANDOVER_MAPS = (
    "takeover { type ipv4_addr : ipv4_addr; flags timeout; }",
    "pending { type ipv4_addr : ipv4_addr; flags timeout; }",
)
HANDOVER_CHAIN = "second_chance { type filter hook prerouting priority filter; policy accept; }"
HANDOVER_RULES = (
    "dup to ip daddr map @pending drop",
    "tcp flags ! syn ct state new,invalid dup to ip daddr map @takeover drop",
)
# nft's input: the table's objects (each made if missing), and its rules
_HANDOVER_OBJECT_LINES = (
    [f"add table ip {HANDOVER_TABLE}"]
    + [f"add map ip {HANDOVER_TABLE} {m}" for m in HANDOVER_MAPS]
    + [f"add chain ip {HANDOVER_TABLE} {HANDOVER_CHAIN}"]
)
_HANDOVER_RULE_LINES = [f"add rule ip {HANDOVER_TABLE} second_chance {r}" for r in HANDOVER_RULES]
# the objects made if missing and the chain's rules made anew (a script of
# another group may run at once: each transaction leaves the chain with its
# rules once), in one transaction with what follows
_HANDOVER_READY_LINES = _HANDOVER_OBJECT_LINES + [f"flush chain ip {HANDOVER_TABLE} second_chance"] + _HANDOVER_RULE_LINES

# RFC 5227 probes and announcements, in Python: the text of lb-carp-arp-probe
# (ucarp's up script runs it) and part of lb-carp-keepalived-vips (which runs
# them in its own threads: no process to start when a VIP moves).
_ARP_FUNCS = (
    """
def arp_socket(iface):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0806))
    s.bind((iface, 0))
    mac = s.getsockname()[4]
    return s, b"\\xff" * 6 + mac + b"\\x08\\x06" + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac


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
        if len(frame) >= 42 and frame[12:14] == b"\\x08\\x06" and frame[20:22] in (b"\\x00\\x01", b"\\x00\\x02"):
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
        for gap in (0,) + """
    + repr(tuple(ARP_ANNOUNCE_GAPS))
    + """:
            time.sleep(gap)
            if cancelled():
                return
            s.send(head + target + bytes(6) + target)
    finally:
        s.close()
"""
)

# The second chance's steps, in Python: part of lb-carp-arp-probe (ucarp)
# and of lb-carp-keepalived-vips.  Addresses reach nft only as canonical
# dotted quads (socket.inet_ntoa of socket.inet_aton).
_HANDOVER_CONSTANTS = {
    "NFT": "/usr/sbin/nft",
    "HANDOVER_TABLE": HANDOVER_TABLE,
    "HANDOVER_SECONDS": HANDOVER_SECONDS,
    "HANDOVER_OBJECTS": _HANDOVER_OBJECT_LINES,
    "HANDOVER_RULES": _HANDOVER_RULE_LINES,
    "HANDOVER_READY": _HANDOVER_READY_LINES,
}
_HANDOVER_FUNCS = (
    "\n"
    + "".join(f"{name} = {value!r}\n" for name, value in _HANDOVER_CONSTANTS.items())
    + """


def nft(lines, quiet=False):
    # nft -f - with these lines, in one transaction; whether it took them
    me = os.path.basename(sys.argv[0])
    try:
        done = subprocess.run([NFT, "-f", "-"], input="\\n".join(lines) + "\\n", capture_output=True, text=True, timeout=10, check=False)
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
"""
)

ARP_PROBE_SCRIPT = (
    """#!/usr/bin/python3
# Installed by the carp execution module. Do not edit.
# lb-carp-arp-probe IFACE IPV4 [MAX_SECONDS]: send ARP probes (RFC 5227,
# sender address 0.0.0.0, so no neighbour learns anything from them) for
# IPV4 on IFACE until three in a row go unanswered (30 ms each); exit 0 then
# (nobody holds the address), 1 if it was still answered after MAX_SECONDS
# (default 3).
# lb-carp-arp-probe --announce IFACE IPV4: three ARP announcements (RFC
# 5227: sender and target address IPV4, this interface's MAC), """
    + " s, then ".join(f"{g:g}" for g in ARP_ANNOUNCE_GAPS)
    + """ s apart:
# every neighbour with an entry for IPV4 takes this MAC.
# --peer PEER before IFACE (ucarp's up script, with the second chance): an
# ARP probe for PEER's own address goes out as the probing starts.  If PEER
# answered it (a planned handover: the peer is up), IPV4 goes into the nft
# map `takeover` for """
    + f"{HANDOVER_SECONDS:g}"
    + """ s before this exits; if not, IPV4's element in the
# map `pending` (the up script's) is deleted (docs/carp.md).
import os
import socket
import struct
import subprocess
import sys
import time
"""
    + _ARP_FUNCS
    + _HANDOVER_FUNCS
    + """

args = sys.argv[1:]
peer = None
if args[:1] == ["--peer"]:
    peer = socket.inet_ntoa(socket.inet_aton(args[1]))
    args = args[2:]
if args[0] == "--announce":
    arp_announce(args[1], args[2])
    sys.exit(0)
iface, ip = args[0], socket.inet_ntoa(socket.inet_aton(args[1]))
seconds = float(args[2]) if len(args) > 2 else 3.0
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
sys.exit(0 if free else 1)
"""
)


def _vip_script(action: str, state: str) -> str:
    head = f"""#!/bin/sh
# Installed by the carp execution module. Do not edit.
# ucarp's {"up" if action == "add" else "down"} script: {action} the VIP and record the state.
# Called as: <script> <interface> <vip> "<prefixlen> <vhid> <state_dir> [<peer>]"
# (<peer>: the peer's address on the VIP's network, with the second chance)
iface=$1
vip=$2
set -- $3
plen=$1
vhid=$2
dir=$3
peer=${{4:-}}
state=${{LB_CARP_STATE:-{state}}}
prio=${{LB_CARP_PRIO:--}}
wait="$dir/state/.$vhid.acquire"
# a pending add (an earlier up) is cancelled first: at most one at a time
if [ -f "$wait" ]; then
	kill "$(cat "$wait")" 2>/dev/null
	rm -f "$wait"
fi
# ARP answered only for the addresses on the asking interface: a soft
# release's local route (below) is never announced
ign=/proc/sys/net/ipv4/conf/$iface/arp_ignore
if [ -w "$ign" ] && [ "$(cat "$ign")" = 0 ]; then
	echo 1 > "$ign"
fi
"""
    pending_ready = " ".join(shlex.quote(line) for line in _HANDOVER_READY_LINES)
    pending_ms = int((VIP_ACQUIRE_SECONDS + 1) * 1000)
    if action == "add":
        # the event hook (a salt-call, seconds of CPU) only once the VIP is
        # here: on a busy node it would slow the probe down
        hook = "".join("\t" + line + "\n" for line in _EVENT_HOOK.splitlines())
        body = f"""mkdir -p "$dir/state"
# the second chance is for a takeover: not when this node has the VIP
# already (a ucarp replaced without a gap, which claims the group again)
if /sbin/ip -4 -o addr show dev "$iface" 2>/dev/null | grep -qF " inet $vip/"; then
	peer=
fi
case "$vip$peer" in
*[!0-9.]*) peer= ;;
esac
# ucarp announces this node as the VIP's holder (a gratuitous ARP) as soon
# as this script returns, while the old master may hold the VIP for up to a
# second more: until the address is here, what reaches this node for it
# goes on to the peer (nft map `pending`; the probe ends it at once if the
# peer does not answer) instead of being dropped
if [ -n "$peer" ] && [ -x /usr/sbin/nft ]; then
	{{
		printf '%s\\n' {pending_ready}
		echo "add element ip {HANDOVER_TABLE} pending {{ $vip timeout {pending_ms}ms : $peer }}"
	}} | /usr/sbin/nft -f - 2>/dev/null
fi
/sbin/ip -4 route del local "$vip/32" dev "$iface" table local proto static 2>/dev/null
/sbin/ip -4 route replace blackhole "$vip/32" 2>/dev/null
(
	if [ -n "$peer" ]; then
		"${{0%/*}}/lb-carp-arp-probe" --peer "$peer" "$iface" "$vip" {VIP_ACQUIRE_SECONDS}
	else
		"${{0%/*}}/lb-carp-arp-probe" "$iface" "$vip" {VIP_ACQUIRE_SECONDS}
	fi
	/sbin/ip -4 addr replace "$vip/$plen" dev "$iface"
	/sbin/ip -4 route del blackhole "$vip/32" 2>/dev/null
	if [ -n "$peer" ] && [ -x /usr/sbin/nft ]; then
		/usr/sbin/nft delete element ip {HANDOVER_TABLE} pending "{{ $vip }}" 2>/dev/null
	fi
	rm -f "$wait"
{hook}	exec "${{0%/*}}/lb-carp-arp-probe" --announce "$iface" "$vip"
) </dev/null >/dev/null 2>&1 &
echo $! > "$wait"
"""
        return head + body + _WRITE_STATE
    else:
        # a planned handover (maintenance, a preemption back) is hitless: while
        # HAProxy listens on the VIP, a local route (no address, so no ARP)
        # keeps taking what still reaches this node for 3 s, while the new
        # master's ARP announcements move the neighbours over
        body = f"""# the second chance this node gave the peer's connections (if it took the
# VIP from it moments ago) ends: it does not hold the VIP any more
if [ -n "$peer" ] && [ -x /usr/sbin/nft ]; then
	/usr/sbin/nft delete element ip {HANDOVER_TABLE} takeover "{{ $vip }}" 2>/dev/null
	/usr/sbin/nft delete element ip {HANDOVER_TABLE} pending "{{ $vip }}" 2>/dev/null
fi
soft=
if /sbin/ip -4 -o addr show dev "$iface" 2>/dev/null | grep -qF " inet $vip/" &&
	[ -n "$(ss -Hltn src "$vip" 2>/dev/null)" ] &&
	/sbin/ip -4 route append local "$vip/32" dev "$iface" table local proto static 2>/dev/null; then
	soft=yes
fi
/sbin/ip -4 route replace blackhole "$vip/32" 2>/dev/null
/sbin/ip -4 addr del "$vip/$plen" dev "$iface" 2>/dev/null || true
(
	sleep 3
	now=
	read -r now _ < "$dir/state/$vhid" 2>/dev/null
	[ -z "$soft" ] || [ "$now" = MASTER ] || /sbin/ip -4 route del local "$vip/32" dev "$iface" table local proto static 2>/dev/null
	[ "$now" = MASTER ] || /sbin/ip -4 route del blackhole "$vip/32" 2>/dev/null
) </dev/null >/dev/null 2>&1 &
"""
    return head + body + _RECORD_STATE


VIP_UP_SCRIPT = _vip_script("add", "MASTER")
VIP_DOWN_SCRIPT = _vip_script("remove", "BACKUP")
UCARP_EXEC = lb_boot.UCARP_LAUNCHER
# ExecStart of lb-ucarp@.service (lb_boot): the group's ucarp as the carp
# module recorded it, run as the unit's main process (exec), its pid where
# the module looks for it.
UCARP_EXEC_SCRIPT = """#!/bin/sh
# Installed by the carp execution module. Do not edit.
# lb-ucarp-exec ARGV_FILE PID_FILE [CHECK HAPROXY_PIDFILE [NEXT_CHECK]]: run
# the ucarp the carp module recorded for a CARP group (one argument a line in
# ARGV_FILE) as this very process, its pid in PID_FILE.  The ExecStart of
# lb-ucarp@.service.
# If the group's VIP is configured here, a ucarp that held it has just
# ended (killed, crashed, or killed by the carp module for a handover): the
# new one keeps the address (--neutral: no down script at start) and claims
# the group after one advertisement interval (--deadratio=1), long before
# the peer's timeout, so the VIP neither leaves nor lands on both nodes.
# Otherwise (a boot, a BACKUP's restart) it starts as the recorded line says.
# With CHECK (lb-haproxy-serving): while the node cannot serve, the group
# runs demoted, at advskew 254 (the peer takes the VIP; PID_FILE's
# .demoted beside it names the demoted pid), and a watch beside ucarp ends
# it when that changes: at once when the node serves again, after @FALL@
# failed checks a second apart when it stops serving (HAProxy restarted by
# systemd is back within that).  systemd then starts the group again.
set -eu
argv_file=$1
pid_file=$2
check=${3:-}
haproxy_pid=${4:-}
next=${5:-}
demoted_file=${pid_file%.pid}.demoted
serving() {
	"$check" "$haproxy_pid" ${next:+"$next"} >/dev/null 2>&1
}
demoted=
if [ -n "$check" ] && ! serving; then
	demoted=yes
fi
iface=
addr=
neutral=
set --
while IFS= read -r word || [ -n "$word" ]; do
	case "$word" in
	--interface=*) iface=${word#--interface=} ;;
	--addr=*) addr=${word#--addr=} ;;
	--neutral) neutral=yes ;;
	--advskew=*) if [ -n "$demoted" ]; then word=--advskew=@DEMOTED@; fi ;;
	esac
	set -- "$@" "$word"
done < "$argv_file"
case "${1:-}" in
*/ucarp) ;;
*)
	echo "lb-ucarp-exec: $argv_file does not run ucarp" >&2
	exit 1
	;;
esac
if [ -z "$neutral" ] && [ -n "$iface" ] && [ -n "$addr" ] &&
	ip -4 -o addr show dev "$iface" 2>/dev/null | grep -qF " inet $addr/"; then
	set -- "$@" --neutral --deadratio=1
fi
if [ -n "$demoted" ]; then
	echo "lb-ucarp-exec: this node cannot serve ($check fails): the group runs at advskew @DEMOTED@" >&2
	echo $$ > "$demoted_file.new"
	mv -f "$demoted_file.new" "$demoted_file"
else
	rm -f "$demoted_file"
fi
if [ -n "$check" ]; then
	main=$$
	(
		misses=0
		while sleep 1; do
			# gone (a handover killed it, systemd restarts the group): so is this watch
			comm=
			read -r comm < "/proc/$main/comm" 2>/dev/null || true
			[ "$comm" = ucarp ] || exit 0
			if serving; then now=; else now=yes; fi
			if [ "$now" = "$demoted" ]; then
				misses=0
				continue
			fi
			misses=$((misses + 1))
			if [ -z "$now" ] || [ "$misses" -ge @FALL@ ]; then
				echo "lb-ucarp-exec: serving changed (${now:+not }serving): restarting the group" >&2
				kill -KILL "$main" 2>/dev/null
				exit 0
			fi
		done
	) < /dev/null &
fi
echo $$ > "$pid_file.new"
mv -f "$pid_file.new" "$pid_file"
exec "$@"
""".replace("@DEMOTED@", str(UCARP_MAINTENANCE_ADVSKEW)).replace("@FALL@", str(lb_boot.SERVING_FALL))


def ucarp_argv_text(argv: list[str]) -> str:
    """A recorded ucarp command line for lb-ucarp-exec: one argument a line
    (ValueError for an argument that would not stay one)."""
    for word in argv:
        if not word or "\n" in word or "\r" in word or "\0" in word:
            raise ValueError(f"{word!r} cannot be recorded as one ucarp argument")
    return "\n".join(argv) + "\n"


def parse_ucarp_argv_text(text: str) -> list[str]:
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


# what earlier versions installed in script_dir; carp.present removes them
OBSOLETE_SCRIPTS = ("lb-carp-notify", "lb-carp-ucarp-up", "lb-carp-ucarp-down")


def obsolete_scripts(script_dir: str) -> list[str]:
    """The OBSOLETE_SCRIPTS this module installed that are still in script_dir."""
    paths = (os.path.join(script_dir, n) for n in OBSOLETE_SCRIPTS)
    return sorted(p for p in paths if "Installed by the carp execution module" in (read_text(p) or ""))


# keepalived runs notify scripts concurrently, so a fast MASTER -> BACKUP
# can run backwards; its FIFO gives the transitions in order.  keepalived
# starts this script (vrrp_notify_fifo_script, rendered by lb_render) and
# starts it again on each reload, with the groups in its arguments and the
# FIFO last.  It does what the up and down scripts do for ucarp (break
# before make, above), in its own threads: on a busy node, starting a
# process per step (a shell, a Python for the probe) delayed the VIPs by up
# to a second.  keepalived's own virtual_ipaddress is only a marker address
# on lo (lb_render.keepalived_marker).
KEEPALIVED_VIPS_SCRIPT = (
    """#!/usr/bin/python3
# Installed by the carp execution module. Do not edit.
# lb-carp-keepalived-vips STATE_DIR VHID=DEVICE,ADDRESS/PREFIXLEN ... FIFO
# keepalived's vrrp_notify_fifo_script.  keepalived writes each instance's
# transitions to FIFO, in order ('INSTANCE "VI_<vhid>" <STATE> <priority>').
# MASTER: a blackhole route for the VIP, the state recorded, then (in a
# thread) the VIP added once no other host answers ARP for it (three
# unanswered 30 ms probes in a row, at most """
    + str(VIP_ACQUIRE_SECONDS)
    + """ s), announced, and the event
# hook run.  BACKUP, FAULT, STOP: a pending add cancelled, the VIP removed
# (blackholed for 3 s), the state recorded, the event hook run.  States go
# to STATE_DIR/state/<vhid> as "<STATE> <priority> <epoch>".  keepalived
# does not repeat the states after a reload, so a copy started after its
# VRRP process applies the recorded ones.  When that process goes away
# (stopped, killed), the VIPs go with it: every group goes down as STOP.
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
"""
    + _ARP_FUNCS
    + """

ACQUIRE_SECONDS = """
    + str(VIP_ACQUIRE_SECONDS)
    + """
# Real-time (round robin, the lowest priority): a VIP moves while the node
# may be busy with everything a failover sets off (event hooks, state runs);
# at normal priority each step here waited hundreds of ms for a CPU.  It
# mostly sleeps in select() and every loop is bounded; what it starts (the
# event hook) runs at normal priority (SCHED_RESET_ON_FORK).
try:
    os.sched_setscheduler(0, os.SCHED_RR | os.SCHED_RESET_ON_FORK, os.sched_param(1))
except (AttributeError, OSError) as exc:
    print(f"lb-carp-keepalived-vips: runs at normal priority: {exc}", file=sys.stderr)
state_dir, fifo = sys.argv[1], sys.argv[-1]
groups = {}
peers = {}  # vhid -> the peer's address on the VIP's interface (when given)
for word in sys.argv[2:-1]:
    vhid, _, rest = word.partition("=")
    dev, _, rest = rest.partition(",")
    cidr, _, peer = rest.partition(",")
    addr, _, plen = cidr.partition("/")
    # canonical dotted quads: they go into nft's input below
    groups[int(vhid)] = (dev, socket.inet_ntoa(socket.inet_aton(addr)), plen or "32")
    if peer:
        peers[int(vhid)] = socket.inet_ntoa(socket.inet_aton(peer))
hook = os.path.join(os.path.dirname(os.path.abspath(sys.argv[0])), "lb-carp-event")
parent = os.getppid()
lock = threading.RLock()  # one change at a time, in the FIFO's order
pending = {}  # vhid -> the Event that cancels its pending add
held = set()  # the vhids whose VIP this copy added and still holds
current = {}  # vhid -> the last state keepalived gave (or the recorded one applied)
# keepalived's states; the FIFO carries events too (MASTER_RX_LOWER_PRI,
# MASTER_PRIORITY, BACKUP_PRIORITY), which are not states
STATES = ("MASTER", "BACKUP", "FAULT", "STOP")
children = []
REFRESH = 10.0  # seconds between ARP announcements of the VIPs held


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
    want = "%08X" % struct.unpack("=I", socket.inet_aton(addr))[0]
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
SOFT_SECONDS = """
    + str(SOFT_RELEASE_SECONDS)
    + """
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
"""
    + _HANDOVER_FUNCS
    + """


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
                fh.write("1\\n")
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


threading.Thread(target=background, daemon=True).start()


def record(vhid, state, prio):
    later.put(lambda: record_now(vhid, state, prio))


def record_now(vhid, state, prio):
    path = os.path.join(state_dir, "state", str(vhid))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = os.path.join(state_dir, "state", f".{vhid}.{os.getpid()}")
    with open(tmp, "w") as fh:
        fh.write(f"{state} {prio} {int(time.time())}\\n")
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
        arp_free(dev, addr, ACQUIRE_SECONDS, stop.is_set)  # after ACQUIRE_SECONDS: taken anyway
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


STOP_WAIT = 10

# keepalived starts a copy with its VRRP process, then sends every
# instance's first state.  A copy started later (by a reload, after the last
# copy died, or by the reload that replaced an earlier version's notify
# scripts) is sent nothing until the next transition: it applies the
# recorded states.
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
        sys.exit(0)
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
        sys.exit(0)
    ready, _, _ = select.select([fd], [], [], 0.2)
    children[:] = [c for c in children if c.poll() is None]
    if time.monotonic() >= next_refresh:
        next_refresh = time.monotonic() + REFRESH
        later.put(refresh)
    if not ready:
        continue
    buf += os.read(fd, 4096)
    while b"\\n" in buf:
        line, buf = buf.split(b"\\n", 1)
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
"""
)
