{#- This node's CARP groups, from the pillar's `lb` topology.

    The `carp` execution module answers for the provider this node uses:
    FreeBSD's kernel CARP, or on Linux keepalived (the default) or ucarp, as
    the pair's `carp:linux_provider` says.  No secret is in this file or in
    what it renders: the module reads the passwords from the pillar itself
    and never returns them. #}
{%- set provider = salt['carp.provider']() %}

{#- A node serves before it can take a VIP: the groups require the haproxy
    SLS, so `state.apply carp` alone applies HAProxy first, whatever the
    top file's order.  (The host SLS stays the top file's: the reactor's
    heal path applies `haproxy` alone and quickly, and the host's sysctls
    are set at boot by systemd-sysctl / FreeBSD's rc.) #}
include:
  - haproxy

{%- if provider in ('keepalived', 'ucarp') %}
{#- nftables: the second chance, which sends a planned handover's
    connections in flight on to the old master (docs/carp.md). #}
lb_carp_package:
  pkg.installed:
    - pkgs:
      - {{ provider }}
      - nftables
{%- endif %}

{#- The programs the provider runs (keepalived's FIFO program, ucarp's up and
    down scripts, ARP probe and launcher, the serving checks; FreeBSD's
    maintenance rc.d script, whose settings carp.present writes): files of this
    state tree, salt/carp/files/, installed before carp.present, which fails
    without them and reloads keepalived when its FIFO program was replaced.
    Names and paths come from the module (carp.programs), not from the
    pillar; ids are the program names. #}
{%- set programs = salt['carp.programs']() %}
{%- for program in programs %}

lb_carp_program_{{ program.name }}:
  file.managed:
    - name: {{ program.path | json }}
    - source: {{ program.source | json }}
    - mode: "{{ program.mode }}"
    - user: root
    - group: {{ 'wheel' if grains['os_family'] == 'FreeBSD' else 'root' }}
    - makedirs: True
    - require_in:
      - carp: lb_carp_groups
{%- endfor %}

{#- FreeBSD: carp.present loads carp.ko (kmod.load) and sets carp_load="YES"
    in /boot/loader.conf (sysrc -f); no package to install. #}
lb_carp_groups:
  carp.present:
    - name: {{ grains['id'] }}
    - require:
      - sls: haproxy
{%- if provider in ('keepalived', 'ucarp') %}
      - pkg: lb_carp_package
{%- endif %}
