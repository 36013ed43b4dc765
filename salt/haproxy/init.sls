{#- HAProxy on a load-balancer node: installed, configured from the `lb`
    pillar, running in master-worker mode (docs/haproxy.md).

    The configuration is written by haproxy_section.managed: candidate beside
    the live file, checked with the real `haproxy -c`, then moved into place;
    HAProxy is reloaded (no connection dropped) only when something changed.
    Its diff has the password hashes redacted, and the TLS PEM files (keys)
    are only named, never shown. #}
{%- from "haproxy/map.jinja" import haproxy with context %}
{%- set paths = salt["haproxy_cfg.settings"]() %}

lb_haproxy_package:
  pkg.installed:
    - name: {{ haproxy.pkg | json }}

{#- Linux: net.ipv4.ip_nonlocal_bind (the BACKUP's HAProxy binds the VIPs
    it does not hold) is the host SLS's, in the pair's sysctl file with the
    other sysctls; the top file applies it before this one. #}

{%- if haproxy.init_defaults %}

{#- Debian's init script starts HAProxy at boot with these options: the
    master CLI socket, like haproxy_cfg.start.  (Its `reload` is a plain
    -sf restart: reload through haproxy_cfg.reload instead.) #}
lb_haproxy_init_defaults:
  file.managed:
    - name: {{ haproxy.init_defaults | json }}
    - contents: |
        # Managed by Salt (salt/haproxy). Read by /etc/init.d/haproxy.
        CONFIG="{{ paths.config }}"
        EXTRAOPTS="-S {{ paths.master_socket }},mode,600"
    - user: root
    - group: root
    - mode: "0644"
    - require:
      - pkg: lb_haproxy_package
{%- endif %}

lb_haproxy_config:
  haproxy_section.managed:
    - name: {{ paths.config | json }}
    - unmanaged: {{ haproxy.unmanaged }}
    - require:
      - pkg: lb_haproxy_package

lb_haproxy_running:
  haproxy_section.running:
    - name: haproxy
    - require:
      - haproxy_section: lb_haproxy_config
