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
    - Debian: the daemons' boot (lb_boot): drop-ins on haproxy.service and
      keepalived.service (restart, order, run directory), their enablement
      links, HAProxy's tmpfiles.d line; a daemon-reload under systemd;
    - FreeBSD: the node's block in /etc/rc.conf (hostname, gateway_enable).

    Every file here is one `lb.preview` lists with the same mode and owner
    (lb.host gives exactly those whose writer is this SLS). #}
{%- set host = salt['lb.host']() %}

{%- for path, f in host.files | dictsort %}
{%- if f.link %}

{#- a unit's enablement: the link `systemctl enable` makes (lb_boot) #}
lb_host_file_{{ path }}:
  file.symlink:
    - name: {{ path | json }}
    - target: {{ f.link | json }}
    - makedirs: True
{%- elif f.block %}

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
{%- elif f.source %}

{#- a program of this state tree (FreeBSD's rc.d scripts; their settings
    are files of their own, in /etc/rc.conf.d) #}
lb_host_file_{{ path }}:
  file.managed:
    - name: {{ path | json }}
    - source: {{ f.source | json }}
    - user: {{ f.user | json }}
    - group: {{ f.group | json }}
    - mode: {{ f.mode | json }}
    - makedirs: True
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

{#- Under a running systemd, it reads the changed drop-ins now (what runs
    takes them at its next start); in an image or the Mininet lab, at boot. #}
{%- set units = host.files | select("match", "/etc/systemd/") | list %}
{%- if units and salt["file.directory_exists"]("/run/systemd/system") %}

lb_host_systemd_reload:
  cmd.run:
    - name: systemctl daemon-reload
    - onchanges:
{%- for path in units %}
      - {{ "file" }}: lb_host_file_{{ path }}
{%- endfor %}
{%- endif %}

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
