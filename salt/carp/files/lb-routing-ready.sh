#!/bin/sh
# Installed by salt/carp from salt://carp/files/lb-routing-ready.sh. Do not edit the copy.
# keepalived's check (vrrp_script lb_serving, after lb-haproxy-serving): exit 0 while at least
# one BGP session of this node's BIRD is Established.  birdc and BIRD's socket
# are the Debian routing parameters' (_utils/lb_parameters.py; held together by
# tests/unit/test_carp_programs.py).
out=$(timeout 2 /usr/sbin/birdc -s /run/bird/bird.ctl show protocols 2>/dev/null) || exit 1
printf '%s\n' "$out" | grep -Eq '^[^ ]+ +BGP .* Established'
