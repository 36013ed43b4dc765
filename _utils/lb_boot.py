"""What brings a load balancer back at boot, without a salt-master (Debian,
systemd).  Pure rendering, plus the two facts the modules need at run time:
whether the host booted with systemd, and the unit that runs a daemon.

On Debian the packages ship the units (haproxy.service, keepalived.service)
and enable them.  The product adds a drop-in to each, written by the `host`
SLS before any daemon starts, and the `multi-user.target.wants` link
`systemctl enable` would make (a link, so it is the same in an image or a
chroot where no systemd runs):

- haproxy.service: restarted whatever ends it (`Restart=always`, every
  second, with no start limit), and the variable that makes a new worker
  load the runtime server states the module dumps before a reload
  (lb_render.SERVER_STATE_ENV); a tmpfiles.d line gives that file its
  version line at boot, so HAProxy finds it from the first start.
- keepalived.service: runs as the product starts it by hand (VRRP only,
  its pid files and notify FIFO in the product's run directory, which the
  unit creates: `RuntimeDirectory=`), restarted whatever ends it, and
  ordered after haproxy.service.  HAProxy's unit is `Type=notify`, so
  keepalived starts once HAProxy's workers run: a node serves before it can
  take a VIP.  If HAProxy dies later, keepalived's `lb_serving` check gives
  the VIPs to the peer within about a second (docs/carp.md) while systemd
  restarts HAProxy.

ucarp has no unit here yet: it is started by the carp module (docs/carp.md).
"""

from __future__ import annotations

import os

SYSTEMD_DIR = "/etc/systemd/system"
SYSTEM_UNITS = "/lib/systemd/system"
TMPFILES_DIR = "/etc/tmpfiles.d"
DROPIN = "lb-pair.conf"
WANTS = "multi-user.target.wants"
HAPROXY_UNIT = "haproxy.service"
KEEPALIVED_UNIT = "keepalived.service"
RESTART_SEC = 1
# HAProxy starts in a few ms and its start is checked (haproxy -c is cheap):
# back quickly, often before keepalived's once-a-second check notices
HAPROXY_RESTART_SEC = "200ms"


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
    return "\n".join(
        [
            head,
            "# HAProxy comes back by itself: restarted whatever ends it, 200 ms later,",
            "# with no start limit.  A new worker loads the runtime server states the",
            "# haproxy_cfg module saves before each reload (drain, maintenance, weights).",
            "[Unit]",
            "StartLimitIntervalSec=0",
            "",
            "[Service]",
            f'Environment="{server_state_env}={state}"',
            f'Environment="EXTRAOPTS=-S {socket},mode,600"',
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


def keepalived_dropin(head: str, argv: list[str], run_dir: str) -> str:
    for word in argv:
        if not word or any(c in word for c in "\"'\\ %$\n\t;"):
            raise ValueError(f"{word!r} cannot go into a unit file")
    if not run_dir.startswith("/run/") or "/" in run_dir[len("/run/") :]:
        raise ValueError(f"run directory {run_dir!r} is not a directory directly under /run")
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


def debian_files(head: str, osp: dict, provider: str, keepalived_argv: list[str], run_dir: str, server_state_env: str, file_cls):
    """{path: File} of the Debian boot files for a node whose CARP provider
    is `provider`; links are File(content="", link=target)."""
    files = {
        dropin_path(HAPROXY_UNIT): file_cls(haproxy_dropin(head, osp, server_state_env)),
        f"{TMPFILES_DIR}/lb-haproxy.conf": file_cls(haproxy_tmpfiles(head, osp)),
        wants_path(HAPROXY_UNIT): file_cls("", mode="0777", link=f"{SYSTEM_UNITS}/{HAPROXY_UNIT}"),
    }
    if provider == "keepalived":
        files[dropin_path(KEEPALIVED_UNIT)] = file_cls(keepalived_dropin(head, keepalived_argv, run_dir))
        files[wants_path(KEEPALIVED_UNIT)] = file_cls("", mode="0777", link=f"{SYSTEM_UNITS}/{KEEPALIVED_UNIT}")
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


def systemctl(cmd_run_all, verb: str, unit: str) -> None:
    """`systemctl VERB UNIT` through Salt's `cmd.run_all`, after a
    daemon-reload when systemd says the unit's files changed since it read
    them.  RuntimeError with systemd's words when it fails."""

    def run(argv):
        res = cmd_run_all(argv, python_shell=False, ignore_retcode=True, output_loglevel="quiet")
        return res["retcode"], (res.get("stdout") or "") + (res.get("stderr") or "")

    code, out = run(["systemctl", "show", "--property=NeedDaemonReload", "--value", unit])
    if code == 0 and out.strip() == "yes":
        run(["systemctl", "daemon-reload"])
    code, out = run(["systemctl", verb, unit])
    if code != 0:
        raise RuntimeError(f"systemctl {verb} {unit} failed (exit {code}): {out.strip()}")
