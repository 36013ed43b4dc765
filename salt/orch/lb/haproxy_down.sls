{#- HAProxy is not running on pillar['node'], MASTER of a CARP group.

    1. Heal in place: apply the haproxy SLS there (installs, writes the
       config, starts HAProxy; haproxy_section.running fails when HAProxy
       does not come up, e.g. another process holds one of its ports).
    2. Healed: say so (lb/haproxy/healed/<node>); no failover.
    3. Not healed: demote the node with carp.maintenance, so the peer takes
       every VIP (and its own MASTER event applies the haproxy SLS there).
       Maintenance, not a lighter demotion: it is persistent, so the node
       does not take the VIPs back at its next restart while HAProxy is
       still broken; an operator leaves it with carp.unmaintenance
       (docs/operations.md).
    4. Say so: lb/demoted/<node> (or lb/demote-failed/<node>). #}
{%- set node = pillar['node'] %}

lb_haproxy_heal:
  salt.state:
    - tgt: {{ node }}
    - sls: haproxy
    {#- once more after 5 s: a state run already in progress on the node
        (e.g. the reactor's own for a MASTER event) is a conflict, not a
        failure to heal.  (Salt 3008's queue=True would return at once,
        without the result.) #}
    - retry:
        attempts: 2
        interval: 5

lb_haproxy_healed:
  salt.runner:
    - name: event.send
    - tag: lb/haproxy/healed/{{ node }}
    - data:
        node: {{ node }}
        message: HAProxy was down on {{ node }} (MASTER); the haproxy SLS started it again, no failover
    - require:
      - salt: lb_haproxy_heal

lb_demote:
  salt.function:
    - name: carp.maintenance
    - tgt: {{ node }}
    - onfail:
      - salt: lb_haproxy_heal

lb_demoted:
  salt.runner:
    - name: event.send
    - tag: lb/demoted/{{ node }}
    - data:
        node: {{ node }}
        message: HAProxy could not be started on {{ node }}; the node is in CARP maintenance and its peer takes the VIPs. Fix HAProxy, then salt {{ node }} carp.unmaintenance
    {#- onchanges, not require: a demotion skipped by its onfail counts as
        a success for require #}
    - onchanges:
      - salt: lb_demote

lb_demote_failed:
  salt.runner:
    - name: event.send
    - tag: lb/demote-failed/{{ node }}
    - data:
        node: {{ node }}
        message: HAProxy could not be started on {{ node }} and carp.maintenance failed there too
    - onfail:
      - salt: lb_demote
