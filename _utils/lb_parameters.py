"""Every per-OS fact of the product, in one map: where each daemon's files
are, which packages and tools a node uses, the root group.

The layout is template-formula's (`parameters/defaults.yaml`, then
`parameters/os_family/<family>.yaml` with only what differs), kept as
Python data: the renderers of `_utils/` need these facts wherever they run
(`lb.preview` renders FreeBSD's files on any minion, the master's pillar
gate and the salt-ssh wrapper render without a minion's fileserver, the
unit tests without Salt), and Salt syncs only Python files of `_utils/` to
a minion.  The SLS files read the same map through the modules
(`haproxy_cfg.sls_params` in salt/haproxy/map.jinja); `lb.parameters`
shows a section.

Sections, each one component's:

- ``node``: HAProxy's files and user, the root group, syslog's socket, the
  sysctl file, the Debian host's boot files (lb_render and its parts,
  haproxy_cfg's defaults);
- ``carp``: where the carp providers keep their state, programs, runtime
  files and configs (carp_common.settings; ``lb_settings:carp`` overrides);
- ``routing``: the routing daemons' configs and tools (lb_routing,
  routing.paths; ``lb_settings:routing`` overrides);
- ``probe``: the Galera probe's interpreter, client, files, packages and
  super-server on a database server (lb_probe.params;
  ``lb_settings:clustercheck`` overrides);
- ``haproxy_sls``: the haproxy SLS's own parameters
  (haproxy_cfg.sls_params; ``lb_settings:haproxy_sls`` overrides).

Pure data and two functions; imports nothing of the product (every other
module may import it).
"""

import copy

FAMILIES = ("Debian", "FreeBSD")
SECTIONS = ("node", "carp", "routing", "probe", "haproxy_sls")

# What both families share.
DEFAULTS = {
    "node": {},
    "carp": {},
    "routing": {},
    "probe": {
        "probe": "/usr/local/bin/clustercheck",
        "shell": "/usr/sbin/nologin",
    },
    "haproxy_sls": {
        "pkg": "haproxy",
        # sections of the live haproxy.cfg the pillar does not render:
        # `remove` (the pillar owns the whole file) or `keep` (an operator's
        # extra sections, e.g. added with haproxy_section.present, stay)
        "unmanaged": "remove",
        # Debian's init script (a boot without Salt): the file it reads,
        # written so that it starts HAProxy with the master CLI like
        # haproxy_cfg.start.  Off by default: a path outside /etc/haproxy that
        # a shared /etc (the lab) must not get; set it to
        # /etc/default/haproxy on sysvinit Debian hosts.
        "init_defaults": False,
    },
}

# Only what differs per OS family.
OS_FAMILY = {
    "Debian": {
        "node": {
            "haproxy_config": "/etc/haproxy/haproxy.cfg",
            "haproxy_socket": "/run/haproxy/admin.sock",
            "haproxy_pidfile": "/run/haproxy.pid",
            "haproxy_chroot": "/var/lib/haproxy",
            "haproxy_user": ("user", "haproxy"),
            "haproxy_group": ("group", "haproxy"),
            # Debian's own haproxy.service uses this master CLI socket
            "haproxy_master_socket": "/run/haproxy-master.sock",
            "haproxy_certs_dir": "/etc/haproxy/certs",
            "haproxy_server_state": "/run/haproxy/server-state",
            "haproxy_binary": "/usr/sbin/haproxy",
            "root_group": "root",
            "syslog": "/dev/log",
            "sysctl_file": "/etc/sysctl.d/60-lb-pair.conf",
            # the static routes at boot: ifupdown's if-up.d program
            # (lb_render_linux.ROUTES_PROGRAM), and the routes it reads
            "routes_file": "/etc/network/if-up.d/lb-pair-routes",
            "routes_data": "/etc/default/lb-pair-routes",
            # the units' drop-ins and enablement links, HAProxy's tmpfiles
            # line (lb_boot)
            "systemd_dir": "/etc/systemd/system",
            "tmpfiles_dir": "/etc/tmpfiles.d",
        },
        "carp": {
            "state_dir": "/var/lib/lb-carp",
            "script_dir": "/usr/local/sbin",
            "run_dir": "/run/lb-carp",
            "keepalived_config": "/etc/keepalived/keepalived.conf",
            "ucarp_dir": "/etc/ucarp",
        },
        "routing": {
            "bird": "/etc/bird/bird.conf",
            "run_dir": "/run/bird",  # BIRD's runtime directory: its socket and pid file
            "socket": "/run/bird/bird.ctl",
            "birdc": "/usr/sbin/birdc",
            "state_dir": "/var/lib/lb-carp",
            "maintenance": "/var/lib/lb-carp/maintenance",
        },
        "probe": {
            "python": "/usr/bin/python3",
            "client": "/usr/bin/mariadb",
            "client_path": "/usr/bin:/bin",
            "config": "/etc/clustercheck/clustercheck.cnf",
            "socket": "/run/mysqld/mysqld.sock",
            "xinetd_service": "/etc/xinetd.d/clustercheck",
            "packages": ["xinetd", "mariadb-client", "python3"],
            "daemon": "xinetd",
            "root_group": "root",
        },
        # Debian: nothing differs from the defaults.  On a Debian host that
        # boots with sysvinit, set `lb_settings: {haproxy_sls: {init_defaults:
        # /etc/default/haproxy}}` so that the init script starts HAProxy with
        # the master CLI (systemd's unit already does).
        "haproxy_sls": {},
    },
    "FreeBSD": {
        "node": {
            "haproxy_config": "/usr/local/etc/haproxy.conf",
            "haproxy_socket": "/var/run/haproxy/admin.sock",
            "haproxy_pidfile": "/var/run/haproxy.pid",
            # No chroot on FreeBSD: the workers log through syslogd's socket
            # /var/run/log, which a chroot would hide from them (HAProxy
            # opens a UNIX log socket by its path, inside the chroot), and
            # /var/empty is immutable (schg), so no socket can be put there
            # (docs/haproxy.md).  The workers still run as www (uid 80).
            "haproxy_chroot": None,
            # numeric: the `www` user and group (80) exist on every FreeBSD,
            # and a number lets `haproxy -c` check this file on a Linux host
            "haproxy_user": ("uid", 80),
            "haproxy_group": ("gid", 80),
            "haproxy_master_socket": "/var/run/haproxy-master.sock",
            "haproxy_certs_dir": "/usr/local/etc/haproxy/certs",
            "haproxy_server_state": "/var/run/haproxy-server-state",
            "haproxy_binary": "/usr/local/sbin/haproxy",
            "root_group": "wheel",
            "syslog": "/var/run/log",
            "sysctl_file": "/etc/sysctl.conf",
        },
        "carp": {
            "state_dir": "/var/db/lb-carp",
            # the event hook (lb_node.paths)
            "script_dir": "/usr/local/sbin",
            "netif_file": "/etc/rc.conf.d/netif",
            "loader_conf": "/boot/loader.conf",
            # rc.d/lb_carp_maintenance and its settings, which rc's
            # load_rc_config reads from /etc/rc.conf.d/<name> (moved only by
            # tests)
            "rc_script": "/usr/local/etc/rc.d/lb_carp_maintenance",
            "rc_settings": "/etc/rc.conf.d/lb_carp_maintenance",
        },
        "routing": {
            "bgpd": "/usr/local/etc/bgpd.conf",
            "ospfd": "/usr/local/etc/ospfd.conf",
            "ospfd_vips": "/var/db/lb-routing/ospfd-vips.conf",
            "hook": "/usr/local/sbin/lb-routing-vip",
            "hook_conf": "/usr/local/sbin/lb-routing-vip.conf",  # beside the hook, always (routing.paths)
            "lock": "/var/run/lb-routing.lock",
            "bgpctl": "/usr/local/sbin/bgpctl",
            "ospfctl": "/usr/local/sbin/ospfctl",
            "maintenance": "/var/db/lb-carp/maintenance",
        },
        "probe": {
            "python": "/usr/local/bin/python3",
            "client": "/usr/local/bin/mysql",
            "client_path": "/usr/local/bin:/usr/bin:/bin",
            "config": "/usr/local/etc/clustercheck/clustercheck.cnf",
            "socket": "/var/run/mysql/mysql.sock",
            "inetd_conf": "/etc/inetd.conf",
            "services": "/etc/services",
            "hosts_allow": "/etc/hosts.allow",
            "inetd_rc": "/etc/rc.conf.d/inetd",
            "packages": ["python3", "mariadb1011-client"],
            "daemon": "inetd",
            "root_group": "wheel",
        },
        # net/haproxy; rc.conf's haproxy_enable comes with the node's
        # rc.conf (lb_render).  No sysctl: FreeBSD keeps a CARP address
        # configured on the BACKUP, so HAProxy can always bind it (Linux's
        # ip_nonlocal_bind is the host SLS's).
        "haproxy_sls": {},
    },
}


def family(os_family: str | None) -> str:
    """The map's family for a grain value: FreeBSD's, else Debian's (the
    Linux providers and paths)."""
    return "FreeBSD" if os_family == "FreeBSD" else "Debian"


def of(os_family: str | None, section: str) -> dict:
    """`section`'s parameters for `os_family` (its family, `family()`):
    the defaults with the family's values on top, a fresh copy."""
    if section not in SECTIONS:
        raise KeyError(f"no parameters section {section!r} (sections: {', '.join(SECTIONS)})")
    out = copy.deepcopy(DEFAULTS[section])
    out.update(copy.deepcopy(OS_FAMILY[family(os_family)][section]))
    return out


def keys(section: str) -> set:
    """Every key `section` has in either family (what an override may set)."""
    return set(DEFAULTS[section]).union(*(OS_FAMILY[f][section] for f in FAMILIES))
