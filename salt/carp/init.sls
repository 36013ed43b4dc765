{#- This node's CARP groups, from the pillar's `lb` topology.

    The `carp` execution module answers for the provider this node uses:
    FreeBSD's kernel CARP, or on Linux keepalived (the default) or ucarp, as
    the pair's `carp:linux_provider` says.  No secret is in this file or in
    what it renders: the module reads the passwords from the pillar itself
    and never returns them. #}
{%- set provider = salt['carp.provider']() %}

{%- if provider in ('keepalived', 'ucarp') %}
{#- nftables: the second chance, which sends a planned handover's
    connections in flight on to the old master (docs/carp.md). #}
lb_carp_package:
  pkg.installed:
    - pkgs:
      - {{ provider }}
      - nftables
{%- endif %}

{#- FreeBSD: carp.present loads carp.ko (kmod.load) and sets carp_load="YES"
    in /boot/loader.conf (sysrc -f); nothing to install. #}
lb_carp_groups:
  carp.present:
    - name: {{ grains['id'] }}
{%- if provider in ('keepalived', 'ucarp') %}
    - require:
      - pkg: lb_carp_package
{%- endif %}
