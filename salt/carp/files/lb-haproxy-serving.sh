#!/bin/sh
# Installed by salt/carp from salt://carp/files/lb-haproxy-serving.sh. Do not edit the copy.
# keepalived's check (vrrp_script lb_serving): exit 0 while the HAProxy
# master named by the pid file ($1) runs with at least one worker, and the
# next check ($2, lb-routing-ready with BGP) passes too.
read -r pid _ < "$1" 2>/dev/null || exit 1
case $pid in ''|*[!0-9]*) exit 1 ;; esac
read -r comm < "/proc/$pid/comm" 2>/dev/null || exit 1
[ "$comm" = haproxy ] || exit 1
ok=1
if [ -r "/proc/$pid/task/$pid/children" ]; then
	for child in $(cat "/proc/$pid/task/$pid/children"); do
		read -r comm < "/proc/$child/comm" 2>/dev/null && [ "$comm" = haproxy ] && ok=0 && break
	done
else
	ok=0  # a kernel without /proc/<pid>/task/<pid>/children: the master alone
fi
[ "$ok" = 0 ] || exit 1
[ -n "$2" ] && exec "$2"
exit 0
