{#- Which states a minion gets follows from the `lb` topology alone
    (lb.roles): the pair's nodes are load balancers, the servers of its
    galera pools are database servers.  Nothing here names a host. #}
{%- set roles = salt['lb.roles']() %}
base:
{%- if roles.lb or roles.galera %}
  '{{ grains.id }}':
{%- if roles.lb %}
    - carp
    - carp.events
    - haproxy
{%- endif %}
{%- if roles.galera %}
    - clustercheck
{%- endif %}
{%- else %}
  '*': []
{%- endif %}
