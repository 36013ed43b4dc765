# The lab's load balancers are Mininet hosts: their /etc is this machine's
# (only /etc/haproxy is private), so the haproxy SLS sets
# net.ipv4.ip_nonlocal_bind in the host's network namespace and writes no
# file under /etc/sysctl.d (docs/haproxy.md).
lb_haproxy:
  sysctl_config: false
