{#- What the top file gives a minion whose `lb` topology is invalid: one
    failed state naming the first error and its pillar path, and nothing
    else (no daemon is touched).  `salt-call lb.validate` lists every
    error.  The message is pillar text: `json` quotes it for YAML. #}
{%- set invalid = salt['lb.roles']().get('invalid') or 'the topology is no longer invalid; apply again' %}
lb_topology_invalid:
  test.fail_without_changes:
    - name: lb topology
    - comment: {{ ('the lb topology is invalid: ' ~ invalid ~ '; salt-call lb.validate lists every error') | json }}
