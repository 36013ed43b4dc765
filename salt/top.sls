{#- Which states a minion gets follows from the `lb` topology alone
    (lb.roles): the pair's nodes are load balancers, the servers of its
    galera pools are database servers.  Nothing here names a host. #}
{#- Before a fresh minion's first saltutil.sync_all the product's modules
    are not there yet, and the sync itself reads this file (for its
    environments): no role then, instead of a render error. #}
{%- set roles = salt['lb.roles']() if 'lb.roles' in salt else {'lb': [], 'galera': [], 'routing': [], 'invalid': None} %}
{#- Over salt-ssh, lb.roles is _wrapper/lb.py's and says `agentless`: a
    host then gets only the states that work without a minion, HAProxy's.
    CARP's event path needs a minion (its beacon) and a master (the
    reactor); the other SLS call modules on the target while they render,
    where salt-ssh's pillar is not (docs/agentless.md). #}
{%- set agentless = roles.get('agentless', False) %}
{#- The host SLS (sysctls: forwarding, ip_nonlocal_bind; static routes)
    comes first: HAProxy on the BACKUP binds VIPs it does not hold.
    HAProxy comes before CARP: a node serves before it can take a VIP.  In
    the other order the first highstate made the node MASTER while HAProxy
    was not yet running; the beacon (carp.events) reported HAProxy DOWN on a
    MASTER, the reactor's in-place restart could not run beside the
    highstate, and the reactor put the node in maintenance. #}
{#- An invalid topology (lb.roles says its first error) fails the highstate
    with that error's pillar path, on every minion whose pillar has the
    `lb` key: no role, no state, would be a silent, successful empty run. #}
base:
{%- if roles.get('invalid') %}
  '{{ grains.id }}':
    - lb.invalid
{%- elif roles.lb or roles.galera %}
  '{{ grains.id }}':
{%- if roles.lb %}
    - host
    - haproxy
{%- endif %}
{%- if roles.lb and not agentless %}
    - carp
    - carp.events
{%- endif %}
{%- if roles.get('routing') and not agentless %}
    - routing
{%- endif %}
{%- if roles.galera and not agentless %}
    - clustercheck
{%- endif %}
{%- else %}
  '*': []
{%- endif %}
