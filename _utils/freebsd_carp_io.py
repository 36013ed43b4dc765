"""
What the FreeBSD ``carp`` provider (``_modules/carp_freebsd.py``) reads from
and runs on the kernel: ``ifconfig`` (the groups, their keys with
``ifconfig -k``, a command that may carry a password), the ``sysctl``
values it needs as numbers, and its own records in ``state_dir`` (the
groups it configured, the demotion it added for which boot).  Plain Python
with no Salt dunders: the module passes Salt's ``cmd.run_all`` and
``sysctl.get`` (saltext-freebsd) and its paths.
"""

from __future__ import annotations

import os

from salt.exceptions import CommandExecutionError

import carp_common
import carp_parse
import lb_files


def run(run_all, argv, secret=False):
    """Run a command; with ``secret`` its output is not logged and a failure
    names the command by its first two words only (never the password)."""
    res = run_all(argv, python_shell=False, ignore_retcode=True, output_loglevel="quiet" if secret else "debug")
    if res["retcode"] != 0:
        what = " ".join(argv[:2]) if secret else " ".join(argv)
        raise CommandExecutionError(f"`{what} ...` failed (exit {res['retcode']}): {res.get('stderr', '').strip()}")
    return res.get("stdout", "")


def current(run_all):
    """{vhid: group} as ``ifconfig`` shows them (carp_parse.carp_groups)."""
    return carp_parse.carp_groups(run(run_all, ["ifconfig"]))


def keys(run_all, devices):
    """{vhid: key} read with `ifconfig -k` (root sees the keys); kept in memory
    only, to tell whether a password differs."""
    out = {}
    for dev in sorted(devices):
        try:
            text = run(run_all, ["ifconfig", "-k", dev], secret=True)
        except CommandExecutionError:
            continue
        for vhid, c in carp_parse.parse_ifconfig(text).get(dev, {}).get("carp", {}).items():
            if "key" in c:
                out[vhid] = c["key"]
    return out


def boot(sysctl_get):
    """This boot's id (kern.boottime)."""
    return carp_parse.boot_id(str(sysctl_get("kern.boottime")))


def int_sysctl(sysctl_get, name):
    value = str(sysctl_get(name)).strip()
    try:
        return int(value)
    except ValueError as exc:
        raise CommandExecutionError(f"sysctl {name} is {value!r}, not a number (is the carp module loaded?)") from exc


def managed_path(state_dir):
    return os.path.join(state_dir, "managed")


def managed(state_dir):
    """{vhid: (device, address)} of the groups the module configured."""
    out = {}
    for line in (carp_common.read_text(managed_path(state_dir)) or "").splitlines():
        words = line.split()
        if len(words) == 3 and words[0].isdigit():
            out[int(words[0])] = (words[1], words[2])
    return out


def write_managed(state_dir, groups):
    """Record {vhid: (device, address)}, in its order, as the groups the
    module configured."""
    lb_files.write_atomic(managed_path(state_dir), "".join(f"{v} {d} {a}\n" for v, (d, a) in groups.items()), 0o644)


def demotion_record(state_dir):
    """What carp.maintenance added to net.inet.carp.demotion, for which boot
    (carp_common.parse_record), or None."""
    return carp_common.parse_record(carp_common.read_text(os.path.join(state_dir, carp_common.DEMOTION_RECORD)))


def write_demotion_record(state_dir, boot_id, amount, before, phase):
    path = os.path.join(state_dir, carp_common.DEMOTION_RECORD)
    lb_files.write_atomic(path, carp_common.demotion_record(boot_id, amount, before, phase), 0o644)
