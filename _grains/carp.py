"""
Grains: ``carp_provider`` (the CARP provider this host uses or would use)
and ``carp_capable`` (whether this host can run CARP at all).

- FreeBSD: ``freebsd`` (kernel CARP); capable when the carp module exists
  (/boot/kernel/carp.ko) or CARP is compiled in (``net.inet.carp`` sysctls).
- Linux: the provider recorded by the last ``carp.present``
  (``<state_dir>/provider``), else ``keepalived`` or ``ucarp``, whichever is
  installed (keepalived first); capable when either is installed.

Grains load before the pillar, so the pillar's choice is not read here; the
``carp`` execution module follows the pillar.
"""

import os
import shutil
import subprocess

STATE_DIR = "/var/lib/lb-carp"


def _freebsd():
    capable = os.path.exists("/boot/kernel/carp.ko")
    if not capable:
        try:
            res = subprocess.run(["sysctl", "-n", "net.inet.carp.allow"], capture_output=True, text=True, timeout=5)
            capable = res.returncode == 0
        except (OSError, subprocess.SubprocessError):
            capable = False
    return {"carp_provider": "freebsd", "carp_capable": capable}


def _linux():
    # lb_settings:carp in the minion config (grains load before the pillar)
    settings = __opts__.get("lb_settings") if isinstance(__opts__.get("lb_settings"), dict) else {}
    conf = settings.get("carp") if isinstance(settings.get("carp"), dict) else {}
    state_dir = conf.get("state_dir", STATE_DIR)
    recorded = None
    try:
        with open(os.path.join(state_dir, "provider"), encoding="utf-8") as fh:
            recorded = fh.read().strip() or None
    except OSError:
        pass
    installed = [p for p in ("keepalived", "ucarp") if shutil.which(p) or os.path.exists(f"/usr/sbin/{p}")]
    provider = recorded if recorded in ("keepalived", "ucarp") else (installed[0] if installed else None)
    return {"carp_provider": provider, "carp_capable": bool(installed)}


def carp():
    """
    CLI Example:

    .. code-block:: bash

        salt '*' grains.item carp_provider carp_capable
    """
    system = os.uname().sysname
    if system == "FreeBSD":
        return _freebsd()
    if system == "Linux":
        return _linux()
    return {"carp_provider": None, "carp_capable": False}
