#!/bin/sh
# lb-routing-vip: salt/routing installs this file on FreeBSD
# (salt://routing/files/lb-routing-vip.sh), with its settings beside it in
# lb-routing-vip.conf (lb_routing.hook_config, written by routing.present).
# Do not edit the copies.
#
# lb-routing-vip VHID STATE: announce VHID's VIP (a /32, BGP and OSPF) while
# this node is its CARP MASTER, withdraw it otherwise; in maintenance,
# withdraw.  Called by lb-carp-event on every CARP transition (devd) and by
# the routing state.  Serialized by lockf.  BGP: `bgpctl network add|delete
# <vip>/32`; OSPF: the VIP's marker in the announce directory, ospfd's
# included `redistribute` file rewritten from the markers, then `ospfctl
# reload`.  Only the protocols the pair has are driven (bgp, ospf: an
# OSPF-only node has no bgpd to ask, a BGP-only node no ospfd to reload).
# The redistribute file is written 0600 (umask 077): ospfd refuses an
# included file that others can read (parse.y check_file_secrecy).
#
# The settings (every value checked by lb_routing.hook_config and quoted):
# vips ("VHID=DEVICE,ADDRESS ..."), bgp and ospf (yes or no), lock, bgpctl,
# ospfctl, ospfd_vips, maintenance (the maintenance intent's file).
conf="$0.conf"
if [ ! -r "$conf" ]; then
	echo "lb-routing-vip: no settings in $conf" >&2
	exit 1
fi
. "$conf"
vhid=$1
state=${2:-}
if [ -z "${LB_ROUTING_LOCKED:-}" ]; then
	LB_ROUTING_LOCKED=1 exec /usr/bin/lockf -k -t 10 "$lock" "$0" "$@"
fi
vip=
set -f  # $vips is split into words, never globbed
for v in $vips; do
	case $v in
	"$vhid="*) vip=${v#*,} ;;
	esac
done
set +f  # the announce directory's markers below are globbed
case $vhid in ''|*[!0-9]*) exit 0 ;; esac
[ -n "$vip" ] || exit 0
dir=${ospfd_vips%/*}/announce
mkdir -p "$dir"
want=no
[ "$state" = MASTER ] && [ ! -e "$maintenance" ] && want=yes
if [ "$want" = yes ]; then
	if [ "$bgp" = yes ]; then
		"$bgpctl" network add "$vip/32" >/dev/null || exit 1
	fi
	: > "$dir/$vip"
else
	if [ "$bgp" = yes ]; then
		"$bgpctl" network delete "$vip/32" >/dev/null 2>&1
	fi
	rm -f "$dir/$vip"
fi
if [ "$ospf" = yes ]; then
	umask 077
	tmp=$ospfd_vips.$$
	: > "$tmp"
	for f in "$dir"/*; do
		[ -e "$f" ] && printf 'redistribute %s/32\n' "${f##*/}" >> "$tmp"
	done
	if cmp -s "$tmp" "$ospfd_vips"; then
		rm -f "$tmp"
	else
		mv -f "$tmp" "$ospfd_vips" && "$ospfctl" reload >/dev/null
	fi
fi
