{#- The host itself on a load-balancer node (docs/pillar.md, `sysctl` and
    `routes`): what no daemon's state owns, live and across a reboot.

    - the node's sysctl file (Debian /etc/sysctl.d/60-lb-pair.conf, read by
      systemd-sysctl at boot; FreeBSD its block in /etc/sysctl.conf):
      forwarding, net.ipv4.ip_nonlocal_bind (HAProxy on the BACKUP binds the
      VIPs it does not hold), the pillar's extra keys; each value also set
      live with sysctl.present, against the same file;
    - the static routes: a file that sets them at boot (Debian: an ifupdown
      if-up.d script; FreeBSD: static_routes in /etc/rc.conf.d/routing) and
      host_routes.present, which sets the missing ones live;
    - FreeBSD: the node's block in /etc/rc.conf (hostname, gateway_enable).

    Every file here is one `lb.preview` lists with the same mode and owner
    (lb.host gives exactly those whose writer is this SLS). #}
{%- set host = salt['lb.host']() %}

{%- for path, f in host.files | dictsort %}
{%- if f.block %}

{#- a file the system owns: its mode and owner, and the node's block in it #}
lb_host_file_{{ path }}:
  file.managed:
    - name: {{ path | json }}
    - replace: False
    - user: {{ f.user | json }}
    - group: {{ f.group | json }}
    - mode: {{ f.mode | json }}

lb_host_block_{{ path }}:
  file.blockreplace:
    - name: {{ path | json }}
    - marker_start: "# BEGIN lb-pair (managed by Salt)"
    - marker_end: "# END lb-pair"
    - content: {{ f.content | json }}
    - {{ f.block }}_if_not_found: True
    - show_changes: True
    - require:
      - file: lb_host_file_{{ path }}
{%- else %}

lb_host_file_{{ path }}:
  file.managed:
    - name: {{ path | json }}
    - contents: {{ f.content | json }}
    - user: {{ f.user | json }}
    - group: {{ f.group | json }}
    - mode: {{ f.mode | json }}
    - makedirs: True
{%- endif %}
{%- endfor %}

{%- for key, value in host.sysctl.items() %}

lb_host_sysctl_{{ key }}:
  sysctl.present:
    - name: {{ key | json }}
    - value: {{ value | json }}
    - config: {{ host.sysctl_file | json }}
    - require:
      - file: lb_host_file_{{ host.sysctl_file }}
{%- if host.files[host.sysctl_file].block %}
      - file: lb_host_block_{{ host.sysctl_file }}
{%- endif %}
{%- endfor %}

{%- if host.routes %}

lb_host_routes:
  host_routes.present:
    - name: {{ grains['id'] | json }}
    - routes: {{ host.routes | json }}
{%- endif %}
