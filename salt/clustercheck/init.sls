{#- The Galera health probe on a database server (docs/clustercheck.md).

    Apply it to the database minions (`salt 'db-*' state.apply clustercheck`).
    Everything comes from `clustercheck.plan`: the pair whose galera pools
    list this minion's address (or the pillar's `clustercheck:pair`), and the
    files `_utils/lb_probe.py` renders for it; the probe program is
    files/clustercheck.py, a template for the OS's interpreter and paths.  The option file holds the
    probe's MySQL password: this SLS never does (so neither does
    state.show_sls): clustercheck.option_file and clustercheck.account_present
    read it from the pillar when they run, and never show it. #}
{%- set cc = salt['clustercheck.plan']() %}
{%- set root_group = 'wheel' if cc.os_family == 'FreeBSD' else 'root' %}

clustercheck_packages:
  pkg.installed:
    - pkgs: {{ cc.packages | json }}

{#- retry: hosts that share /etc/passwd (containers, the lab's Mininet hosts)
    may run useradd at the same moment; the loser finds the user made. #}
clustercheck_group:
  group.present:
    - name: {{ cc.group }}
    - system: True
    - retry:
        attempts: 3
        interval: 2

clustercheck_user:
  user.present:
    - name: {{ cc.user }}
    - gid: {{ cc.group }}
    - home: {{ cc.home }}
    - createhome: False
    - shell: {{ cc.shell }}
    - system: True
    - retry:
        attempts: 3
        interval: 2
    - require:
      - group: clustercheck_group

{#- The maintenance file's directory: root writes (drain), the probe reads. #}
clustercheck_home:
  file.directory:
    - name: {{ cc.home }}
    - user: root
    - group: {{ root_group }}
    - mode: "0755"
    - makedirs: True

{%- for path, f in cc.files | dictsort %}
{%- if f.block %}

clustercheck_block_{{ path }}:
  file.blockreplace:
    - name: {{ path }}
    - marker_start: "# BEGIN clustercheck (managed by Salt, pillar lb:pairs:{{ cc.pair }})"
    - marker_end: "# END clustercheck"
    - content: {{ f.content | json }}
    - {{ f.block }}_if_not_found: True
    - show_changes: True
    - watch_in:
      - service: clustercheck_daemon
{%- elif f.source %}

{#- the probe program, a file of this state tree: a Jinja template whose
    context is the OS's interpreter (its #! line) and paths #}
clustercheck_file_{{ path }}:
  file.managed:
    - name: {{ path }}
    - source: {{ f.source | json }}
    - template: jinja
    - context: {{ f.context | json }}
    - user: {{ f.user }}
    - group: {{ f.group }}
    - mode: "{{ f.mode }}"
    - makedirs: True
    - dir_mode: "0755"
    - require:
      - user: clustercheck_user
    - watch_in:
      - service: clustercheck_daemon
{%- elif f.secret %}

clustercheck_file_{{ path }}:
  clustercheck.option_file:
    - name: {{ path }}
    - user: {{ f.user }}
    - group: {{ f.group }}
    - mode: "{{ f.mode }}"
    - require:
      - user: clustercheck_user
    - watch_in:
      - service: clustercheck_daemon
{%- else %}

clustercheck_file_{{ path }}:
  file.managed:
    - name: {{ path }}
    - contents: {{ f.content | json }}
    - user: {{ f.user }}
    - group: {{ f.group }}
    - mode: "{{ f.mode }}"
    - makedirs: True
    - dir_mode: "0755"
    - require:
      - user: clustercheck_user
    - watch_in:
      - service: clustercheck_daemon
{%- endif %}
{%- endfor %}

{#- xinetd / inetd re-read their configuration on reload (SIGHUP).  Not
    `enable`: Debian's xinetd package enables itself, FreeBSD's inetd is
    enabled by /etc/rc.conf.d/inetd above. #}
clustercheck_daemon:
  service.running:
    - name: {{ cc.daemon }}
    - reload: True
    - require:
      - pkg: clustercheck_packages

{#- USAGE only: SHOW STATUS and @@read_only need no privilege.  Through the
    local client as root (unix socket); the SQL goes on its stdin.  Only
    while the server runs (its socket exists): before that the probe answers
    503 anyway, and the next apply creates the account. #}
clustercheck_account:
  clustercheck.account_present:
    - name: {{ cc.account.name }}
    - host: {{ cc.account.host }}
    - max_connections: {{ cc.account.max_connections }}
{%- if cc.socket %}
    - socket: {{ cc.socket }}
    - onlyif: test -S {{ cc.socket }}
{%- endif %}
    - require:
      - pkg: clustercheck_packages
