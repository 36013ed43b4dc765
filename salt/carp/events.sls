{#- The CARP event path on a load balancer (docs/operations.md):

    - the `carp` beacon (_beacons/carp.py), polling carp.status every second
      and watching HAProxy while this node is MASTER, enabled here with
      beacon.present (saved to the minion's minion.d/beacons.conf) rather
      than by a pillar `beacons:` key: which nodes are load balancers follows
      from the topology (salt/top.sls, lb.roles), not from a pillar target;
    - lb-carp-event (salt/carp/files/lb-carp-event.sh, its settings in
      lb-carp-event.conf beside it), the hook the Linux up/down scripts (ucarp's, and
      keepalived's through lb-carp-keepalived-vips) and (FreeBSD) devd run on
      every transition, so the event
      reaches the master at once, not only at the next poll;
    - FreeBSD: the devd rule for `system "CARP"` events. #}
{%- set interval = 1 %}
{%- set files = salt['lb_node.event_hook'](beacon_interval=interval) %}
{%- set paths = salt['lb_node.paths']() %}

{#- the settings first: an older, self-contained hook ignores them until
    it is replaced #}
lb_carp_event_hook_conf:
  file.managed:
    - name: {{ paths.hook_conf | json }}
    - contents: {{ files[paths.hook_conf].content | json }}
    - mode: "{{ files[paths.hook_conf].mode }}"
    - makedirs: True

lb_carp_event_hook:
  file.managed:
    - name: {{ paths.hook | json }}
    - source: {{ files[paths.hook].source | json }}
    - mode: "{{ files[paths.hook].mode }}"
    - makedirs: True
    - require:
      - file: lb_carp_event_hook_conf

{%- if paths.devd_rule is defined %}

lb_carp_devd_rule:
  file.managed:
    - name: {{ paths.devd_rule }}
    - contents: {{ files[paths.devd_rule].content | json }}
    - mode: "{{ files[paths.devd_rule].mode }}"
    - makedirs: True

lb_carp_devd_restart:
  cmd.run:
    - name: service devd restart
    - onchanges:
      - file: lb_carp_devd_rule
{%- endif %}

lb_carp_beacon:
  beacon.present:
    - name: carp
    - save: True
    - interval: {{ interval }}
    - haproxy: True
    - haproxy_refire: 30
