#!/bin/sh
# Installed by salt/carp from salt://carp/files/lb-ucarp-exec.sh. Do not edit the copy.
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
# runs demoted, at advskew DEMOTED_ADVSKEW (the peer takes the VIP; PID_FILE's
# .demoted beside it names the demoted pid), and a watch beside ucarp ends
# it when that changes: at once when the node serves again, after FALL
# failed checks a second apart when it stops serving (HAProxy restarted by
# systemd is back within that).  systemd then starts the group again.
# lb-ucarp-exec --stopped ARGV_FILE: the unit's ExecStopPost, once its ucarp
# has ended.  Its VIP still configured: a killed ucarp, whose next one keeps
# it; nothing to do.  Otherwise the down script released it (ucarp's
# --shutdown) and left a blackhole route, and a local route while HAProxy
# listened, for SOFT_SECONDS, with a background cleanup that the unit's stop
# ends: they stay that long (HAProxy serves what still reaches this node,
# HAProxy stopping after this unit), then go.
set -eu
# carp_common.UCARP_MAINTENANCE_ADVSKEW and lb_boot.SERVING_FALL
# (tests/unit/test_carp_programs.py holds them together); the down script's
# 3 s
DEMOTED_ADVSKEW=254
FALL=2
SOFT_SECONDS=3
if [ "${1:-}" = --stopped ]; then
	[ -r "${2:-}" ] || exit 0 # a group the module forgot: nothing recorded to clean
	iface=
	addr=
	while IFS= read -r word || [ -n "$word" ]; do
		case "$word" in
		--interface=*) iface=${word#--interface=} ;;
		--addr=*) addr=${word#--addr=} ;;
		esac
	done < "$2"
	case "$addr" in
	'' | *[!0-9.]*) exit 0 ;;
	esac
	if ip -4 -o addr show dev "$iface" 2>/dev/null | grep -qF " inet $addr/"; then
		exit 0
	fi
	if [ -n "$(ip -4 route show table local "$addr/32" dev "$iface" proto static 2>/dev/null)" ]; then
		sleep "$SOFT_SECONDS"
		ip -4 route del local "$addr/32" dev "$iface" table local proto static 2>/dev/null || true
	fi
	ip -4 route del blackhole "$addr/32" 2>/dev/null || true
	exit 0
fi
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
	--advskew=*) if [ -n "$demoted" ]; then word=--advskew=$DEMOTED_ADVSKEW; fi ;;
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
	echo "lb-ucarp-exec: this node cannot serve ($check fails): the group runs at advskew $DEMOTED_ADVSKEW" >&2
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
			if [ -z "$now" ] || [ "$misses" -ge "$FALL" ]; then
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
