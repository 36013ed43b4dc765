{#- HAProxy is not running on a node that is MASTER of a CARP group: the
    steps (heal, else demote, and say so) are in salt/orch/lb/haproxy_down.sls. #}
lb_haproxy_down:
  runner.state.orchestrate:
    - args:
      - mods: orch.lb.haproxy_down
      - pillar:
          node: {{ data['id'] }}
