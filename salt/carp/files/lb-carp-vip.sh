#!/bin/sh
# ucarp's up and down scripts: salt/carp installs this file (salt://carp/files/lb-carp-vip.sh)
# as lb-carp-vip-up and lb-carp-vip-down.  Do not edit the copies.
# Called as: <script> <interface> <vip> "<prefixlen> <vhid> <state_dir> [<peer>]"
# (<peer>: the peer's address on the VIP's network, with the second chance).
# LB_CARP_STATE and LB_CARP_PRIO, when set, give the state and priority to
# record, else MASTER (up) or BACKUP (down) and "-".
#
# Break before make: the up script returns at once (ucarp waits for it
# before advertising) and, in the background, adds the VIP as soon as no
# host answers an ARP probe for it (lb-carp-arp-probe, at most
# ACQUIRE_SECONDS below), then announces it.  Meanwhile a blackhole route
# for the VIP makes the node drop what reaches it for the VIP instead of
# forwarding it or answering with an ICMP error: a client's SYN lost so is
# sent again after 1 s and then reaches the new master.  The down script
# cancels a pending add first (docs/carp.md).

# lb_carp_vips.py's ACQUIRE_SECONDS and HANDOVER_TABLE, and the nft lines of
# its HANDOVER_READY (tests/unit/test_carp_programs.py holds them together)
ACQUIRE_SECONDS=3
HANDOVER_TABLE=lb_carp_handover
handover_ready() {
	printf '%s\n' \
		'add table ip lb_carp_handover' \
		'add map ip lb_carp_handover takeover { type ipv4_addr : ipv4_addr; flags timeout; }' \
		'add map ip lb_carp_handover pending { type ipv4_addr : ipv4_addr; flags timeout; }' \
		'add chain ip lb_carp_handover second_chance { type filter hook prerouting priority filter; policy accept; }' \
		'flush chain ip lb_carp_handover second_chance' \
		'add rule ip lb_carp_handover second_chance dup to ip daddr map @pending drop' \
		'add rule ip lb_carp_handover second_chance tcp flags ! syn ct state new,invalid dup to ip daddr map @takeover drop'
}

case ${0##*/} in
*-up) action=add state=${LB_CARP_STATE:-MASTER} ;;
*-down) action=remove state=${LB_CARP_STATE:-BACKUP} ;;
*)
	echo "${0##*/}: run me as lb-carp-vip-up or lb-carp-vip-down" >&2
	exit 2
	;;
esac
iface=$1
vip=$2
set -- $3
plen=$1
vhid=$2
dir=$3
peer=${4:-}
prio=${LB_CARP_PRIO:--}
wait="$dir/state/.$vhid.acquire"

record_state() {
	tmp="$dir/state/.$vhid.$$"
	mkdir -p "$dir/state"
	printf '%s %s %s\n' "$state" "$prio" "$(date +%s)" > "$tmp" && mv -f "$tmp" "$dir/state/$vhid"
}

# the CARP beacon's event, sent at once by lb-carp-event beside this script
# when it is installed (salt/carp/events.sls), in the background so ucarp
# never waits for the master
event_hook() {
	hook="${0%/*}/lb-carp-event"
	if [ -x "$hook" ]; then
		"$hook" "$vhid" "$state" "${iface:-}" "${vip:+$vip/$plen}" </dev/null >/dev/null 2>&1 &
	fi
}

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

if [ "$action" = add ]; then
	mkdir -p "$dir/state"
	# the second chance is for a takeover: not when this node has the VIP
	# already (a ucarp replaced without a gap, which claims the group again)
	if /sbin/ip -4 -o addr show dev "$iface" 2>/dev/null | grep -qF " inet $vip/"; then
		peer=
	fi
	case "$vip$peer" in
	*[!0-9.]*) peer= ;;
	esac
	# ucarp announces this node as the VIP's holder (a gratuitous ARP) as
	# soon as this script returns, while the old master may hold the VIP for
	# up to a second more: until the address is here, what reaches this node
	# for it goes on to the peer (nft map `pending`; the probe ends it at
	# once if the peer does not answer) instead of being dropped
	if [ -n "$peer" ] && [ -x /usr/sbin/nft ]; then
		{
			handover_ready
			echo "add element ip $HANDOVER_TABLE pending { $vip timeout $(((ACQUIRE_SECONDS + 1) * 1000))ms : $peer }"
		} | /usr/sbin/nft -f - 2>/dev/null
	fi
	/sbin/ip -4 route del local "$vip/32" dev "$iface" table local proto static 2>/dev/null
	/sbin/ip -4 route replace blackhole "$vip/32" 2>/dev/null
	(
		if [ -n "$peer" ]; then
			"${0%/*}/lb-carp-arp-probe" --peer "$peer" "$iface" "$vip" "$ACQUIRE_SECONDS"
		else
			"${0%/*}/lb-carp-arp-probe" "$iface" "$vip" "$ACQUIRE_SECONDS"
		fi || logger -t lb-carp-vip -p daemon.warning \
			"vhid $vhid: another host still answered ARP for $vip after ${ACQUIRE_SECONDS}s: taking it anyway" 2>/dev/null
		/sbin/ip -4 addr replace "$vip/$plen" dev "$iface"
		/sbin/ip -4 route del blackhole "$vip/32" 2>/dev/null
		if [ -n "$peer" ] && [ -x /usr/sbin/nft ]; then
			/usr/sbin/nft delete element ip "$HANDOVER_TABLE" pending "{ $vip }" 2>/dev/null
		fi
		rm -f "$wait"
		# the event hook (a salt-call, seconds of CPU) only once the VIP is
		# here: on a busy node it would slow the probe down
		event_hook
		exec "${0%/*}/lb-carp-arp-probe" --announce "$iface" "$vip"
	) </dev/null >/dev/null 2>&1 &
	echo $! > "$wait"
	record_state
	exit 0
fi

# A planned handover (maintenance, a preemption back) is hitless: while
# HAProxy listens on the VIP, a local route (no address, so no ARP) keeps
# taking what still reaches this node for 3 s, while the new master's ARP
# announcements move the neighbours over.
# The second chance this node gave the peer's connections (if it took the
# VIP from it moments ago) ends: it does not hold the VIP any more.
if [ -n "$peer" ] && [ -x /usr/sbin/nft ]; then
	/usr/sbin/nft delete element ip "$HANDOVER_TABLE" takeover "{ $vip }" 2>/dev/null
	/usr/sbin/nft delete element ip "$HANDOVER_TABLE" pending "{ $vip }" 2>/dev/null
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
record_state
event_hook
