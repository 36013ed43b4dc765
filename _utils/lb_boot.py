"""What brings a load balancer back at boot, without a salt-master (Debian,
systemd).  Pure rendering, plus the two facts the modules need at run time:
whether the host booted with systemd, and the unit that runs a daemon.

On Debian the packages ship the units (haproxy.service, keepalived.service)
and enable them.  The product adds a drop-in to each, written by the `host`
SLS before any daemon starts, and the `multi-user.target.wants` link
`systemctl enable` would make (a link, so it is the same in an image or a
chroot where no systemd runs):

- haproxy.service: restarted whatever ends it (`Restart=always`, 200 ms
  later, with no start limit), and the variable that makes a new worker
  load the runtime server states the module dumps before a reload
  (lb_render_haproxy.SERVER_STATE_ENV); a tmpfiles.d line gives that file its
  version line at boot, so HAProxy finds it from the first start.
- keepalived.service: runs as the product starts it by hand (VRRP only,
  its pid files and notify FIFO in the product's run directory, which the
  unit creates: `RuntimeDirectory=`), restarted whatever ends it, and
  ordered after haproxy.service.  HAProxy's unit is `Type=notify`, so
  keepalived starts once HAProxy's workers run: a node serves before it can
  take a VIP.  If HAProxy dies later, keepalived's `lb_serving` check gives
  the VIPs to the peer within about a second (docs/carp.md) while systemd
  restarts HAProxy.
- lb-ucarp@VHID.service (ucarp has no unit of its own in Debian): the
  product's template unit, one instance per CARP group, each enabled by its
  link.  It runs the command line the carp module recorded for the group
  (maintenance included) through the module's launcher, after HAProxy
  serves and only if HAProxy started (`Requires=`), restarted whatever ends
  it, 100 ms later (a killed ucarp leaves its VIP configured; back before
  the peer's 3-advert timeout, it advertises again).
- bird.service (with routing): Debian's unit, run as the routing module
  runs BIRD (its config, control socket and pid file), restarted whatever
  ends it.

FreeBSD has no supervisor in its rc; the product's rc.d script
`lb_haproxy` runs HAProxy under daemon(8) (`-r`: started again a second
after it ends, whatever ends it), in place of the port's rc.d/haproxy,
which starts it once.  Kernel CARP comes up in rc.d/netif, before
HAProxy: rc.d/lb_carp_boothold demotes the node before netif and
rc.d/lb_haproxy takes that back once HAProxy has a worker.  Verified only by
rendering, by running the scripts' functions under dash with recording
stubs, and by reading FreeBSD's daemon(8) and rc.subr: FreeBSD cannot run
here.
"""

from __future__ import annotations

import os

import lb_grammar
import lb_parameters

_DEBIAN = lb_parameters.of("Debian", "node")
_FREEBSD_CARP = lb_parameters.of("FreeBSD", "carp")

SYSTEMD_DIR = _DEBIAN["systemd_dir"]
SYSTEM_UNITS = "/lib/systemd/system"
TMPFILES_DIR = _DEBIAN["tmpfiles_dir"]
DROPIN = "lb-pair.conf"
WANTS = "multi-user.target.wants"
HAPROXY_UNIT = "haproxy.service"
KEEPALIVED_UNIT = "keepalived.service"
BIRD_UNIT = "bird.service"
UCARP_TEMPLATE = "lb-ucarp@.service"
UCARP_LAUNCHER = "lb-ucarp-exec"  # in the carp module's script_dir (carp_common)
# ucarp killed (its VIP stays on the interface): back well before the
# peer's timeout of 3 adverts (advbase >= 1 s), so no one else takes the VIP
UCARP_RESTART_SEC = "100ms"
RESTART_SEC = 1
# HAProxy starts in a few ms and its start is checked (haproxy -c is cheap):
# back quickly, often before keepalived's once-a-second check notices
HAPROXY_RESTART_SEC = "200ms"


FREEBSD_HAPROXY_SERVICE = "lb_haproxy"
FREEBSD_HAPROXY_RC = f"/usr/local/etc/rc.d/{FREEBSD_HAPROXY_SERVICE}"
FREEBSD_HAPROXY_SUPERVISOR_PID = f"/var/run/{FREEBSD_HAPROXY_SERVICE}.pid"
# Kernel CARP comes up in rc.d/netif, long before HAProxy: rc.d/lb_carp_boothold
# (before netif) demotes the node by this much, recorded in this file (not
# under /var/run, which rc.d/cleanvar empties after it), and rc.d/lb_haproxy's
# serving watch takes it back once HAProxy's workers run (and holds the node
# the same way again while HAProxy cannot serve).  net.inet.carp.demotion adds what
# is written to it, so this and carp.maintenance's demotion add up.
FREEBSD_BOOTHOLD_SERVICE = "lb_carp_boothold"
FREEBSD_BOOTHOLD_RC = f"/usr/local/etc/rc.d/{FREEBSD_BOOTHOLD_SERVICE}"
FREEBSD_BOOTHOLD_FILE = f"{_FREEBSD_CARP['state_dir']}/boothold"
FREEBSD_BOOTHOLD_DEMOTION = 240
FREEBSD_HAPROXY_WATCH_PID = f"/var/run/{FREEBSD_HAPROXY_SERVICE}_watch.pid"  # the serving watch's daemon(8)
# the two rc.d scripts are files of the state tree (salt/host installs them);
# what they read is in /etc/rc.conf.d/<service> (freebsd_*_settings)
FREEBSD_RC_SOURCES = {
    FREEBSD_HAPROXY_RC: f"salt://host/files/{FREEBSD_HAPROXY_SERVICE}.rc",
    FREEBSD_BOOTHOLD_RC: f"salt://host/files/{FREEBSD_BOOTHOLD_SERVICE}.rc",
}
FREEBSD_HAPROXY_SETTINGS = f"/etc/rc.conf.d/{FREEBSD_HAPROXY_SERVICE}"
FREEBSD_BOOTHOLD_SETTINGS = f"/etc/rc.conf.d/{FREEBSD_BOOTHOLD_SERVICE}"
# carp.maintenance on FreeBSD (carp_common): its intent and its demotion
# record in the carp state directory, and rc.d/lb_carp_maintenance (a file
# of the state tree salt/carp installs), which demotes again at boot, before
# netif, while the intent is on disk.  net.inet.carp.demotion ADDS what is
# written to it; 240 is what the kernel itself adds for a down interface.
FREEBSD_CARP_STATE_DIR = _FREEBSD_CARP["state_dir"]
CARP_MAINTENANCE_FILE = "maintenance"  # the intent: JSON, present while in maintenance
CARP_DEMOTION_RECORD = "demotion"  # what carp.maintenance added, for which boot
FREEBSD_MAINTENANCE_DEMOTION = 240
FREEBSD_MAINTENANCE_SERVICE = "lb_carp_maintenance"
FREEBSD_MAINTENANCE_RC = _FREEBSD_CARP["rc_script"]
FREEBSD_MAINTENANCE_SETTINGS = _FREEBSD_CARP["rc_settings"]
FREEBSD_MAINTENANCE_SOURCE = f"salt://carp/files/{FREEBSD_MAINTENANCE_SERVICE}.rc"
# The serving watches (ucarp's launcher, FreeBSD's rc.d/lb_haproxy) demote a
# node after this many failed checks a second apart: HAProxy restarted by its
# init is back within that.
SERVING_FALL = 2


def systemd_booted() -> bool:
    """Whether this host runs systemd as its init (sd_booted(3): the
    directory systemd makes at boot)."""
    return os.path.isdir("/run/systemd/system")


def dropin_path(unit: str) -> str:
    return f"{SYSTEMD_DIR}/{unit}.d/{DROPIN}"


def wants_path(unit: str) -> str:
    return f"{SYSTEMD_DIR}/{WANTS}/{unit}"


def _env_value(value: str) -> str:
    """A systemd `Environment=` assignment's value, quoted: the product's
    paths only (absolute, no quote, no space, no `%` or `$` specifier)."""
    if not value.startswith("/") or any(c in value for c in "\"'\\ %$\n\t"):
        raise ValueError(f"{value!r} cannot go into a unit file")
    return value


def haproxy_dropin(head: str, osp: dict, server_state_env: str) -> str:
    state = _env_value(osp["haproxy_server_state"])
    socket = _env_value(osp["haproxy_master_socket"])
    pidfile = _env_value(osp["haproxy_pidfile"])
    return "\n".join(
        [
            head,
            "# HAProxy comes back by itself: restarted whatever ends it, 200 ms later,",
            "# with no start limit.  A new worker loads the runtime server states the",
            "# haproxy_cfg module saves before each reload (drain, maintenance, weights).",
            "# The pid file is the unit's -p (the config has no `pidfile`).",
            "[Unit]",
            "StartLimitIntervalSec=0",
            "",
            "[Service]",
            f'Environment="{server_state_env}={state}"',
            f'Environment="EXTRAOPTS=-S {socket},mode,600"',
            f'Environment="PIDFILE={pidfile}"',
            "Restart=always",
            f"RestartSec={HAPROXY_RESTART_SEC}",
            "",
        ]
    )


def haproxy_tmpfiles(head: str, osp: dict) -> str:
    state = _env_value(osp["haproxy_server_state"])
    return "\n".join(
        [
            head,
            "# HAProxy's runtime server states, empty (only the version line) at boot.",
            f"f {state} 0644 root root - 1",
            "",
        ]
    )


def _words(argv: list[str]) -> str:
    """An ExecStart= command line: words that stay one word each and carry
    no systemd specifier, variable or quote."""
    for word in argv:
        if not word or any(c in word for c in "\"'\\ %$\n\t;"):
            raise ValueError(f"{word!r} cannot go into a unit file")
    return " ".join(argv)


def _runtime_dir(run_dir: str) -> str:
    """`RuntimeDirectory=`'s value: run_dir must be directly under /run."""
    if not run_dir.startswith("/run/") or "/" in run_dir[len("/run/") :] or not _env_value(run_dir):
        raise ValueError(f"run directory {run_dir!r} is not a directory directly under /run")
    return run_dir[len("/run/") :]


def keepalived_dropin(head: str, argv: list[str], run_dir: str) -> str:
    _words(argv)
    _runtime_dir(run_dir)
    return "\n".join(
        [
            head,
            "# keepalived as the carp module runs it (VRRP only, pid files and the",
            "# notify FIFO in its run directory, made here before it starts), after",
            "# HAProxy serves (haproxy.service is Type=notify), restarted whatever ends",
            "# it.  While HAProxy does not serve, its lb_serving check hands the VIPs",
            "# to the peer.",
            "[Unit]",
            f"After={HAPROXY_UNIT}",
            f"Wants={HAPROXY_UNIT}",
            "StartLimitIntervalSec=0",
            "",
            "[Service]",
            f"RuntimeDirectory={run_dir[len('/run/') :]}",
            "RuntimeDirectoryPreserve=yes",
            f"Environment=TMPDIR={_env_value(run_dir)}",
            "ExecStart=",
            "ExecStart=" + " ".join([argv[0], "--dont-fork", *argv[1:]]),
            "Restart=always",
            f"RestartSec={RESTART_SEC}",
            "",
        ]
    )


def keepalived_argv(binary: str, config: str, run_dir: str) -> list[str]:
    """keepalived, VRRP only, with its pid files in run_dir: as the carp
    module starts it by hand, and as the unit's ExecStart (with --dont-fork)."""
    return [
        binary,
        "--vrrp",
        "--use-file",
        config,
        "--pid",
        f"{run_dir}/keepalived.pid",
        "--vrrp_pid",
        f"{run_dir}/keepalived-vrrp.pid",
        "--checkers_pid",
        f"{run_dir}/keepalived-checkers.pid",
        "--log-detail",
    ]


def _rc_settings(head: str, service: str, values: dict[str, str], source: str = "host") -> str:
    """/etc/rc.conf.d/<service>: the settings a static rc.d script of the
    state tree reads (rc.subr's load_rc_config), one `<service>_<key>="..."`
    a line.  Values are the product's paths and numbers: nothing sh would
    expand or end inside double quotes."""
    lines = [head, f"# rc.d/{service}'s settings (salt://{source}/files/{service}.rc reads them)."]
    for key, value in values.items():
        if not value or any(c in value for c in "\"'\\$`\n\r\t "):
            raise ValueError(f"{value!r} cannot go into /etc/rc.conf.d/{service}")
        lines.append(f'{service}_{key}="{value}"')
    return "\n".join(lines) + "\n"


def freebsd_haproxy_settings(head: str, osp: dict, server_state_env: str) -> str:
    """/etc/rc.conf.d/lb_haproxy, for rc.d/lb_haproxy (salt/host/files/
    lb_haproxy.rc): HAProxy (master-worker, in the foreground) under
    daemon(8), which starts it again 1 s after it ends (`-r`) and sends its
    output to syslog; rc's stop sends SIGTERM to daemon, which passes it on
    and exits.  HAProxy writes its own pid file (`pidfile` in the config):
    the haproxy_cfg module reloads it with SIGUSR2 there, which daemon does
    not see.  The config is checked before each start, and a new worker
    loads the runtime server states the module saved (server_state_env).
    The serving watch demotes CARP by FREEBSD_BOOTHOLD_DEMOTION after
    SERVING_FALL failed checks, in the boot hold's record."""
    if not server_state_env.replace("_", "").isalnum() or not server_state_env.isupper():
        raise ValueError(f"{server_state_env!r} is no environment variable name")
    return _rc_settings(
        head,
        FREEBSD_HAPROXY_SERVICE,
        {
            "binary": osp["haproxy_binary"],
            "config": osp["haproxy_config"],
            "master_socket": osp["haproxy_master_socket"],
            "master_pidfile": osp["haproxy_pidfile"],
            "server_state": osp["haproxy_server_state"],
            "server_state_env": server_state_env,
            "supervisor_pidfile": FREEBSD_HAPROXY_SUPERVISOR_PID,
            "watch_pidfile": FREEBSD_HAPROXY_WATCH_PID,
            "script": FREEBSD_HAPROXY_RC,
            "boothold": FREEBSD_BOOTHOLD_FILE,
            "demotion": str(FREEBSD_BOOTHOLD_DEMOTION),
            "fall": str(SERVING_FALL),
        },
    )


def freebsd_boothold_settings(head: str) -> str:
    """/etc/rc.conf.d/lb_carp_boothold, for rc.d/lb_carp_boothold
    (salt/host/files/lb_carp_boothold.rc): before netif brings CARP up, it
    demotes the node (net.inet.carp.demotion += FREEBSD_BOOTHOLD_DEMOTION)
    and records it, so it does not take a VIP from a peer that serves
    before its own HAProxy serves; rc.d/lb_haproxy takes it back."""
    return _rc_settings(head, FREEBSD_BOOTHOLD_SERVICE, {"file": FREEBSD_BOOTHOLD_FILE, "demotion": str(FREEBSD_BOOTHOLD_DEMOTION)})


def freebsd_maintenance_settings(head: str, state_dir: str) -> str:
    """/etc/rc.conf.d/lb_carp_maintenance, for rc.d/lb_carp_maintenance
    (salt/carp/files/lb_carp_maintenance.rc): where carp.maintenance's
    intent and demotion record are (`state_dir`, the `lb_settings:carp` setting), and
    the demotion it adds again at boot while the intent is on disk."""
    lb_grammar.require(lb_grammar.SH_PATH, state_dir, "lb_settings:carp:state_dir")
    return _rc_settings(
        head,
        FREEBSD_MAINTENANCE_SERVICE,
        {
            "intent": f"{state_dir}/{CARP_MAINTENANCE_FILE}",
            "record": f"{state_dir}/{CARP_DEMOTION_RECORD}",
            "demotion": str(FREEBSD_MAINTENANCE_DEMOTION),
        },
        source="carp",
    )


def ucarp_instance(vhid: int) -> str:
    return f"lb-ucarp@{int(vhid)}.service"


def ucarp_argv_file(state_dir: str, vhid: int | str = "%i") -> str:
    """Where the carp module records the command line of a group's ucarp
    (one argument a line), which the unit runs (`%i`: the instance's)."""
    return f"{state_dir}/ucarp/{vhid}.argv"


def ucarp_pidfile(run_dir: str, vhid: int | str = "%i") -> str:
    return f"{run_dir}/ucarp-{vhid}.pid"


def ucarp_demoted_file(run_dir: str, vhid: int) -> str:
    """Where lb-ucarp-exec names the pid of a ucarp it started demoted (its
    pid file's name with .demoted for .pid)."""
    return f"{run_dir}/ucarp-{int(vhid)}.demoted"


def ucarp_unit(head: str, launcher: str, state_dir: str, run_dir: str, check: list[str]) -> str:
    """lb-ucarp@.service: the template of one group's ucarp (the instance
    name is the vhid).  `check`: the serving check the launcher runs (the
    HAProxy check, its pid file, and the BGP check when the pair has BGP)."""
    for path in (launcher, state_dir, run_dir, *check):
        _env_value(path)
    argv_file, pidfile = ucarp_argv_file(state_dir), ucarp_pidfile(run_dir)
    return "\n".join(
        [
            head,
            "# One ucarp for the CARP group %i, as the carp module runs it: the command",
            "# line it recorded for the group (maintenance included).  It starts after",
            "# HAProxy (haproxy.service is Type=notify).  While HAProxy cannot serve, the",
            "# launcher runs it demoted (advskew 254: the peer takes the VIP), and its",
            "# watch restarts it when that changes.  HAProxy's own restarts do not touch",
            "# it (Wants=, not Requires=).  It is restarted whatever ends it, soon enough",
            "# that the peer does not take over from a killed one (its VIP stays configured).",
            "[Unit]",
            "Description=ucarp for CARP group %i (lb-pair)",
            f"After=network-online.target {HAPROXY_UNIT}",
            f"Wants=network-online.target {HAPROXY_UNIT}",
            f"ConditionPathExists={argv_file}",
            "StartLimitIntervalSec=0",
            "",
            "[Service]",
            f"RuntimeDirectory={_runtime_dir(run_dir)}",
            "RuntimeDirectoryPreserve=yes",
            f"ExecStart={launcher} {argv_file} {pidfile} " + _words(check),
            # a clean stop released the VIP (ucarp --shutdown): what the
            # release left goes once its soft seconds are over
            f"ExecStopPost={launcher} --stopped {argv_file}",
            "Restart=always",
            f"RestartSec={UCARP_RESTART_SEC}",
            "",
        ]
    )


def bird_argv(binary: str, config: str, socket: str, pidfile: str, user: str | None) -> list[str]:
    """BIRD as the routing module starts it (and the unit, with -f)."""
    argv = [binary, "-c", config, "-s", socket, "-P", pidfile]
    if user:
        argv += ["-u", user, "-g", user]
    return argv


def bird_dropin(head: str, argv: list[str], birdc: str) -> str:
    """Debian's bird.service run as the routing module runs BIRD: its own
    config, control socket and pid file (the package's unit uses BIRD's
    built-in ones and no pid file), checked before each start, restarted
    whatever ends it."""
    config, socket = argv[argv.index("-c") + 1], argv[argv.index("-s") + 1]
    return "\n".join(
        [
            head,
            "# BIRD as the routing module runs it (its config, control socket and pid",
            "# file), the config checked before each start, restarted whatever ends it.",
            "[Unit]",
            "StartLimitIntervalSec=0",
            "",
            "[Service]",
            "ExecStartPre=",
            "ExecStartPre=/usr/lib/bird/prepare-environment",
            "ExecStartPre=" + _words([argv[0], "-p", "-c", config]),
            "ExecStart=",
            "ExecStart=" + _words([argv[0], "-f", *argv[1:]]),
            "ExecReload=",
            "ExecReload=" + _words([birdc, "-s", socket, "configure"]),
            "Restart=always",
            f"RestartSec={RESTART_SEC}",
            "",
        ]
    )


def _link(unit: str, file_cls, target_dir: str = SYSTEM_UNITS, name: str | None = None):
    return wants_path(name or unit), file_cls("", mode="0777", link=f"{target_dir}/{unit}")


def debian_files(head: str, osp: dict, node: dict, file_cls) -> dict:
    """{path: File} of the Debian boot files of one node; links are
    File(content="", link=target).  `node`: provider ("keepalived" or
    "ucarp"), keepalived_argv, run_dir, state_dir, ucarp_launcher,
    serving_check (the launcher's check: script, HAProxy pid file, BGP
    check), vhids (its CARP groups), bird_argv and birdc (None without routing),
    server_state_env."""
    files = {
        dropin_path(HAPROXY_UNIT): file_cls(haproxy_dropin(head, osp, node["server_state_env"])),
        f"{TMPFILES_DIR}/lb-haproxy.conf": file_cls(haproxy_tmpfiles(head, osp)),
    }
    links = [_link(HAPROXY_UNIT, file_cls)]
    if node["provider"] == "keepalived":
        files[dropin_path(KEEPALIVED_UNIT)] = file_cls(keepalived_dropin(head, node["keepalived_argv"], node["run_dir"]))
        links.append(_link(KEEPALIVED_UNIT, file_cls))
    else:
        files[f"{SYSTEMD_DIR}/{UCARP_TEMPLATE}"] = file_cls(
            ucarp_unit(head, node["ucarp_launcher"], node["state_dir"], node["run_dir"], node["serving_check"])
        )
        links += [_link(UCARP_TEMPLATE, file_cls, SYSTEMD_DIR, ucarp_instance(v)) for v in node["vhids"]]
    if node.get("bird_argv"):
        files[dropin_path(BIRD_UNIT)] = file_cls(bird_dropin(head, node["bird_argv"], node["birdc"]))
        links.append(_link(BIRD_UNIT, file_cls))
    files.update(links)
    return files


def managed_unit(unit: str) -> str | None:
    """`unit` when this host runs systemd and the unit carries the
    product's drop-in (the `host` SLS wrote it): the daemon is then started
    and stopped through systemd, so its `Restart=` covers it.  None
    otherwise (no systemd, as in the Mininet lab: the modules start the
    daemon themselves)."""
    if systemd_booted() and os.path.exists(dropin_path(unit)):
        return unit
    return None


def systemctl(cmd_run_all, verb: str, unit: str, *options: str) -> None:
    """`systemctl VERB [OPTIONS] UNIT` through Salt's `cmd.run_all`, after a
    daemon-reload when systemd says the unit's files changed since it read
    them.  RuntimeError with systemd's words when it fails."""

    def run(argv):
        res = cmd_run_all(argv, python_shell=False, ignore_retcode=True, output_loglevel="quiet")
        return res["retcode"], (res.get("stdout") or "") + (res.get("stderr") or "")

    code, out = run(["systemctl", "show", "--property=NeedDaemonReload", "--value", unit])
    if code == 0 and out.strip() == "yes":
        run(["systemctl", "daemon-reload"])
    code, out = run(["systemctl", verb, *options, unit])
    if code != 0:
        raise RuntimeError(f"systemctl {' '.join([verb, *options])} {unit} failed (exit {code}): {out.strip()}")


def main_pid(cmd_run_all, unit: str) -> int | None:
    """The unit's main process as systemd knows it (None when none runs)."""
    res = cmd_run_all(
        ["systemctl", "show", "--property=MainPID", "--value", unit], python_shell=False, ignore_retcode=True, output_loglevel="quiet"
    )
    text = (res.get("stdout") or "").strip()
    return int(text) if res["retcode"] == 0 and text.isdigit() and int(text) > 0 else None
