#!/bin/sh
# lb-carp-event: salt/carp/events.sls installs this file
# (salt://carp/files/lb-carp-event.sh), with its settings beside it in
# lb-carp-event.conf (lb_node.event_hook).  Do not edit the copies.
#
# Announces a CARP transition on the master's event bus at once, as the carp
# beacon would at its next poll: salt/beacon/<minion id>/carp/<vhid>/<STATE>.
# Called by the Linux up/down scripts (lb-carp-vip-up, lb-carp-vip-down:
# ucarp, and keepalived through lb-carp-keepalived-vips) and by devd:
#   lb-carp-event VHID STATE [IFACE VIP]     lb-carp-event VHID@IFACE STATE
# It claims the transition in the claims directory it shares with the
# beacon (carp_events.decide), leaves the beacon `grace` seconds to take
# it, then sends it itself through `salt-call event.send`, bounded by
# `timeout -k kill_after send_timeout` (a salt-call SIGTERMed while it
# opens its channel to the master can hang in its exit), and records
# `sent` or `failed`.
#
# The settings (every value checked by carp_events.hook_config and quoted):
# minion_id, salt_call, config_dir, events_dir, provider, pidfile (the
# minion's: on Linux the hook does nothing when that minion runs in another
# network namespace, i.e. this copy belongs to another host sharing the
# directory), routing_hook (FreeBSD's lb-routing-vip: run first, in the
# background, so the VIP announcements follow the transition at once),
# grace, send_timeout, kill_after, claim_window, and groups ("VHID=IFACE,VIP
# ...": what keepalived's notify does not pass).
set -f
conf="$0.conf"
if [ ! -r "$conf" ]; then
	echo "lb-carp-event: no settings in $conf" >&2
	exit 1
fi
. "$conf"
vhid=$1
state=$2
iface=${3:-}
vip=${4:-}
if [ -n "$pidfile" ] && [ -r "$pidfile" ] && [ -e /proc/self/ns/net ]; then
	mine=$(readlink "/proc/$(cat "$pidfile")/ns/net" 2>/dev/null)
	if [ -n "$mine" ] && [ "$mine" != "$(readlink /proc/self/ns/net)" ]; then
		exit 0  # the minion this copy was installed for runs on another host
	fi
fi
case $vhid in *@*) iface=${vhid#*@}; vhid=${vhid%@*} ;; esac
case $vhid in ''|*[!0-9]*) exit 0 ;; esac
case $state in MASTER|BACKUP) ;; INIT|FAULT|STOP) state=INIT ;; *) exit 0 ;; esac
if [ -n "$routing_hook" ] && [ -x "$routing_hook" ]; then
	"$routing_hook" "$vhid" "$state" </dev/null >/dev/null 2>&1 &
fi
if [ -z "$vip" ]; then
	for group in $groups; do
		case $group in
		"$vhid="*)
			group=${group#*=}
			iface=${iface:-${group%%,*}}
			vip=${group#*,}
			;;
		esac
	done
fi
claim="$events_dir/$vhid"
mkdir -p "$events_dir" || exit 1
now=$(date +%s)
old=INIT
if [ -f "$claim" ]; then
	read -r cstate cepoch chow < "$claim"
	case $cstate in MASTER|BACKUP|INIT) old=$cstate ;; esac
	cepoch=${cepoch%.*}
	case $cepoch in ''|*[!0-9]*) cepoch=0 ;; esac
	if [ "$cstate" = "$state" ] && [ "$chow" != failed ] && [ $((now - cepoch)) -le "$claim_window" ]; then
		exit 0  # announced already (by the beacon or an earlier call)
	fi
fi
[ "$old" = "$state" ] && old=INIT
printf '%s %s pending\n' "$state" "$now" > "$claim.$$" && mv -f "$claim.$$" "$claim"
# the beacon (polling every second) is quicker than salt-call: leave it the
# transition for a moment, and send it only if the beacon did not take it
sleep "$grace"
read -r cstate cepoch chow < "$claim"
[ "$cstate $cepoch $chow" = "$state $now pending" ] || exit 0
printf '%s %s sending\n' "$state" "$now" > "$claim.$$" && mv -f "$claim.$$" "$claim"
data=$(printf '{"vhid": %s, "vip": "%s", "interface": "%s", "old": "%s", "new": "%s", "provider": "%s", "timestamp": %s, "source": "hook", "id": "%s"}' \
	"$vhid" "$vip" "$iface" "$old" "$state" "$provider" "$now" "$minion_id")
if timeout -k "$kill_after" "$send_timeout" "$salt_call" -c "$config_dir" -l quiet --retcode-passthrough \
	event.send "salt/beacon/$minion_id/carp/$vhid/$state" "$data" >/dev/null 2>&1; then
	how=sent
else
	how=failed
fi
# record the outcome unless a newer transition has claimed the vhid since
read -r cstate cepoch chow < "$claim"
if [ "$cstate $cepoch" = "$state $now" ]; then
	printf '%s %s %s\n' "$state" "$now" "$how" > "$claim.$$" && mv -f "$claim.$$" "$claim"
fi
[ "$how" = sent ]
