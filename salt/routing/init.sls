{#- Dynamic routing on a load balancer (docs/routing.md), applied by the top
    file only to nodes whose pair has `routing` in the pillar (lb.roles):

    - Linux: BIRD 2, one daemon for BGP and OSPF; /etc/bird/bird.conf is
      rendered by the `routing` module, checked with `bird -p` before it
      replaces the live one, applied with `birdc configure` (sessions stay
      up); FreeBSD: OpenBGPD and OpenOSPFD (`bgpd -n`, `ospfd -n`, then
      `bgpctl reload` / `ospfctl reload`);
    - a VIP announced only by the node that holds it: on Linux BIRD's
      direct protocol follows the VIP addresses (host addresses, added by
      keepalived or ucarp on the MASTER); on FreeBSD lb-routing-vip, the
      hook lb-carp-event runs from devd on every CARP transition;
    - the announcements re-checked against what the node holds.

    No secret is in this file or in what it renders: the module reads the
    md5sig keys from the pillar itself and never returns them. #}
{%- if grains['kernel'] == 'Linux' %}
lb_routing_package:
  pkg.installed:
    - name: bird2
{%- endif %}

lb_routing_daemon:
  routing.present:
    - name: {{ grains['id'] }}
{%- if grains['kernel'] == 'Linux' %}
    - require:
      - pkg: lb_routing_package
{%- else %}

{#- FreeBSD's announcement hook, a file of this state tree, after its
    settings (lb-routing-vip.conf), which routing.present writes beside it:
    an older, self-contained hook ignores them until it is replaced. #}
lb_routing_hook:
  file.managed:
    - name: {{ salt['routing.paths']().hook | json }}
    - source: salt://routing/files/lb-routing-vip.sh
    - mode: "0755"
    - user: root
    - group: wheel
    - makedirs: True
    - require:
      - routing: lb_routing_daemon
    - require_in:
      - routing: lb_routing_announced
{%- endif %}

lb_routing_announced:
  routing.announced:
    - name: {{ grains['id'] }}
    - require:
      - routing: lb_routing_daemon
