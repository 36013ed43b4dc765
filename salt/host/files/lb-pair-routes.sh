#!/bin/sh
# lb-pair-routes: the pair's static routes at boot (salt/host, docs/pillar.md).
#
# ifupdown runs every program in /etc/network/if-up.d (run-parts: this name
# has no dot) each time it brings an interface up.  The routes are in
# /etc/default/lb-pair-routes, one "DESTINATION GATEWAY" per line, written
# by the host SLS from pillar lb:pairs:<pair>:routes (lb_render).  A route
# whose gateway is not reachable yet fails quietly and is added when its
# interface comes up; `replace` makes every run the same.  Nothing in the
# file is run: each word reaches ip(8) as one argument.
routes=/etc/default/lb-pair-routes
[ -r "$routes" ] || exit 0
while read -r destination gateway _; do
	case $destination in
	'' | '#'*) continue ;;
	esac
	ip -4 route replace "$destination" via "$gateway" 2>/dev/null || :
done <"$routes"
exit 0
