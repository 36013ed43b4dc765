"""What the three `carp` providers share: the node's groups from the topology,
the command lines they run, the maintenance records, the `lb_settings:carp`
settings, and how a change is reported.  The programs the Linux providers
install are in `carp_programs`.

Pure functions plus small read helpers.  No Salt dunders: the provider
modules (`_modules/carp_*.py`) pass in what they read from the system, and
the unit tests call these directly.
"""

from __future__ import annotations

import json
import os
import re
import time

import lb_boot
import lb_parameters
import lb_render
import lb_render_linux
import lb_settings
import lb_topology
import lb_view

PROVIDERS = ("freebsd", "keepalived", "ucarp")
STATES = ("MASTER", "BACKUP", "INIT")


MAINTENANCE_FILE = lb_boot.CARP_MAINTENANCE_FILE  # the intent: JSON, present while in maintenance
# FreeBSD: net.inet.carp.demotion is a counter the kernel adds to every
# advskew it advertises (capped at 240); writing N to it ADDS N.  240 is what
# the kernel itself adds for a down interface (ifdown_demotion_factor).
FREEBSD_DEMOTION = lb_boot.FREEBSD_MAINTENANCE_DEMOTION
DEMOTION_RECORD = lb_boot.CARP_DEMOTION_RECORD  # what this module added, for which boot
# ucarp: a group in maintenance runs with this advskew (ucarp takes 0-255).
UCARP_MAINTENANCE_ADVSKEW = 254
# the names of ucarp's programs (lb_render: salt/carp/files installs them)
VIP_UP = lb_render_linux.VIP_UP
VIP_DOWN = lb_render_linux.VIP_DOWN
ARP_PROBE = lb_render_linux.ARP_PROBE


# ---------------------------------------------------------------------------
# the node's groups


def node_groups(model: dict, node_id: str, os_family: str) -> tuple[dict, list[dict]]:
    """(pair, [group]) for `node_id`: each group with its device for this OS
    family, its VIP split into address and prefix, and its password."""
    pair, _ = lb_topology.find_node(model, node_id)
    fam = "FreeBSD" if os_family == "FreeBSD" else "Debian"
    out = []
    for g in lb_view.node_view(pair, node_id)["groups"]:
        # Linux configures the VIP as a host address (lb_view.linux_vip)
        vip = str(g["vip"]) if fam == "FreeBSD" else lb_view.linux_vip(g["vip"])
        out.append(
            {
                "vhid": g["vhid"],
                "interface": g["interface"],
                "device": lb_view.device(g["device"], fam),
                "vip": vip,
                "address": str(g["vip"].ip),
                "prefixlen": int(vip.rsplit("/", 1)[1]),
                "password": g["password"],
                "advbase": g["advbase"],
                "advskew": g["advskew"],
                "priority": g["priority"],
                "role": g["role"],
                "source": str(g["source"]),
                "peer_source": str(g["peer_source"]),
                # lb_render works on netaddr objects; keep one for it
                "_vip": g["vip"],
            }
        )
    return pair, out


def public(group: dict) -> dict:
    """A group as it may be shown or logged: no password, no internals."""
    return {k: v for k, v in group.items() if k != "password" and not k.startswith("_")}


def diff(current: dict[int, dict], desired: dict[int, dict]) -> dict:
    """Changes per vhid, as a state reports them: {vhid: {"old": ..., "new": ...}}
    with only the fields that differ (None for a group added or removed)."""
    changes = {}
    for vhid in sorted(set(current) | set(desired)):
        old, new = current.get(vhid), desired.get(vhid)
        if old is None or new is None:
            changes[vhid] = {"old": old, "new": new}
            continue
        keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if keys:
            changes[vhid] = {"old": {k: old.get(k) for k in keys}, "new": {k: new.get(k) for k in keys}}
    return changes


# ---------------------------------------------------------------------------
# FreeBSD: the ifconfig command lines


def ifconfig_add(group: dict, secret=str) -> list[str]:
    """`ifconfig <dev> inet vhid N [advbase B] advskew S pass P VIP/32 alias`:
    the argv rc.d/netif runs at boot for the alias line lb_render writes
    (network.subr appends the `alias`); `secret` maps the password
    (lb_render.redact for what a person sees)."""
    g = dict(group, vip=group["_vip"])
    return ["ifconfig", group["device"], *lb_render.freebsd_alias_words(g, secret=secret), "alias"]


def ifconfig_set(group: dict, fields: list[str]) -> list[str]:
    """Change an existing vhid in place (`ifconfig hn1 vhid 4 advskew 100`);
    the password only when it is among the fields."""
    words = ["ifconfig", group["device"], "vhid", str(group["vhid"])]
    for f in ("advbase", "advskew"):
        if f in fields:
            words += [f, str(group[f])]
    if "password" in fields:
        words += ["pass", group["password"]]
    return words


def ifconfig_remove(device: str, address: str) -> list[str]:
    """Remove a VIP; the kernel drops the vhid with its last address."""
    return ["ifconfig", device, "inet", address, "-alias"]


def demotion_record(boot: str, amount: int, before: int, phase: str) -> str:
    """The demotion record, in a form /bin/sh can write at boot too."""
    return f"boot={boot}\namount={amount}\nbefore={before}\nphase={phase}\n"


def parse_record(text: str | None) -> dict | None:
    if not text:
        return None
    rec = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    try:
        return {
            "boot": rec["boot"],
            "amount": int(rec["amount"]),
            "before": int(rec.get("before", 0)),
            "phase": rec.get("phase", "applied"),
        }
    except (KeyError, ValueError):
        return None


# ---------------------------------------------------------------------------
# Linux: keepalived and ucarp


def keepalived_argv(binary: str, config: str, run_dir: str) -> list[str]:
    """keepalived, VRRP only, with its pid files in run_dir (lb_boot's: the
    keepalived unit's ExecStart is the same)."""
    return lb_boot.keepalived_argv(binary, config, run_dir)


def ucarp_passfile(paths: dict, vhid: int) -> str:
    return f"{paths['ucarp_dir']}/vhid-{vhid}.pass"


def ucarp_argv(
    binary: str,
    group: dict,
    paths: dict,
    preempt: bool = True,
    maintenance: bool = False,
    neutral: bool = False,
    deadratio: int | None = None,
    second_chance: bool = True,
) -> list[str]:
    """One ucarp process for one group.  The password is read from the 0600
    passfile (`--passfile`): it never appears on a command line.  The up/down
    scripts get `<prefixlen> <vhid> <state_dir>` as ucarp's extra parameter,
    and the peer's address on the VIP's network after them with the second
    chance (carp:second_chance)."""
    advskew = UCARP_MAINTENANCE_ADVSKEW if maintenance else group["advskew"]
    argv = [
        binary,
        f"--interface={group['device']}",
        f"--srcip={group['source']}",
        f"--vhid={group['vhid']}",
        f"--passfile={ucarp_passfile(paths, group['vhid'])}",
        f"--addr={group['address']}",
        f"--advbase={group['advbase']}",
        f"--advskew={advskew}",
    ]
    if preempt:
        argv.append("--preempt")
    # a MASTER that ends cleanly (SIGTERM: a stop, a reboot, carp.absent)
    # runs its down script and releases the VIP; without it ucarp leaves the
    # VIP on a node that no longer advertises, and the peer takes it
    # anyway ACQUIRE_SECONDS later: both nodes hold it until this one's
    # network goes (seen in the booted lab's reboots).  A killed ucarp
    # (SIGKILL: a handover) still leaves its VIP to the next one.
    argv.append("--shutdown")
    if neutral:
        argv.append("--neutral")
    if deadratio is not None:
        argv.append(f"--deadratio={deadratio}")
    argv += [
        f"--upscript={paths['script_dir']}/{VIP_UP}",
        f"--downscript={paths['script_dir']}/{VIP_DOWN}",
        f"--xparam={group['prefixlen']} {group['vhid']} {paths['state_dir']}" + (f" {group['peer_source']}" if second_chance else ""),
    ]
    return argv


def parse_ucarp_argv(argv: list[str]) -> dict:
    """The group a running ucarp serves, from its command line
    (/proc/<pid>/cmdline); the inverse of ucarp_argv."""
    opts = {}
    for a in argv[1:]:
        if a.startswith("--") and "=" in a:
            k, v = a[2:].split("=", 1)
            opts[k] = v
        elif a.startswith("--"):
            opts[a[2:]] = True
    try:
        prefixlen, vhid, state_dir, *peer = opts["xparam"].split(" ")
        if len(peer) > 1:
            raise ValueError(f"xparam has {3 + len(peer)} words")
        return {
            "vhid": int(opts["vhid"]),
            "device": opts["interface"],
            "source": opts["srcip"],
            "address": opts["addr"],
            "prefixlen": int(prefixlen),
            "advbase": int(opts["advbase"]),
            "advskew": int(opts["advskew"]),
            "preempt": bool(opts.get("preempt")),
            "passfile": opts.get("passfile"),
            "state_dir": state_dir,
            "peer": peer[0] if peer else None,
        }
    except (KeyError, ValueError) as exc:
        raise ValueError(f"not a ucarp command line written by this module: {argv!r}") from exc


def ucarp_shown(argv: list[str]) -> dict:
    """The fields of a ucarp command line that a change report shows."""
    g = parse_ucarp_argv(argv)
    return {k: g[k] for k in ("device", "address", "prefixlen", "source", "advbase", "advskew", "preempt", "peer")}


def ucarp_comparable(argv: list[str]) -> list[str]:
    """A ucarp command line without what only a handover adds (--neutral,
    --deadratio)."""
    return [a for a in argv if a != "--neutral" and not a.startswith("--deadratio=")]


def state_line(state: str, priority="-") -> str:
    """<state_dir>/state/<vhid>'s content (the scripts write the same)."""
    return f"{state} {priority} {int(time.time())}\n"


def parse_state_file(text: str | None) -> dict | None:
    """<state_dir>/state/<vhid>: "<STATE> <priority|-> <epoch>"."""
    if not text:
        return None
    words = text.split()
    if not words:
        return None
    out = {"state": words[0], "priority": None, "since": None}
    if len(words) > 1 and words[1].lstrip("-").isdigit():
        out["priority"] = int(words[1])
    if len(words) > 2:
        try:
            out["since"] = float(words[2])
        except ValueError:
            pass
    return out


def carp_state(recorded: str | None, running: bool) -> str:
    """MASTER / BACKUP / INIT, CARP's words, from what a Linux daemon recorded:
    keepalived's FAULT and STOP, no record, or no daemon are INIT."""
    if not running or recorded not in ("MASTER", "BACKUP"):
        return "INIT"
    return recorded


# ---------------------------------------------------------------------------
# maintenance intent and files


def intent(provider: str, node_id: str) -> str:
    return json.dumps({"since": round(time.time(), 3), "provider": provider, "node": node_id}, sort_keys=True) + "\n"


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def children_running(parent: int, needle: str) -> list[int]:
    """The pids of `parent`'s children whose command line contains `needle`."""
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                if needle.encode() in fh.read():
                    out.append(int(name))
        except (OSError, ValueError, IndexError):
            continue
    return out


def pid_of(pidfile: str, program: str) -> int | None:
    """The pid in `pidfile` when that process runs `program` (its /proc
    cmdline's first word agrees), else None: a stale file or a recycled pid
    is never taken for the daemon."""
    text = read_text(pidfile)
    if not text or not text.strip().isdigit():
        return None
    pid = int(text.strip())
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().split(b"\0")
    except OSError:
        return None
    return pid if argv and os.path.basename(argv[0].decode(errors="replace")) == program else None


def started_before(pid: int, path: str) -> bool:
    """Whether process `pid` started before `path` was last written (a
    program replaced since that process started it), False when either
    cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as fh:
            uptime = float(fh.read().split()[0])
        # its start on the wall clock, to 10 ms (/proc/stat's btime is whole seconds)
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK")) < os.stat(path).st_mtime
    except (OSError, ValueError, IndexError):
        return False


def vips_by_device(run_all) -> dict[str, set[str]]:
    """{device: {address, ...}} of the IPv4 addresses configured now
    (`ip -o -4 addr show` through Salt's cmd.run_all, passed in)."""
    res = run_all(["ip", "-o", "-4", "addr", "show"], python_shell=False, ignore_retcode=True, output_loglevel="quiet")
    out: dict[str, set[str]] = {}
    for line in res.get("stdout", "").splitlines():
        words = line.split()
        if len(words) >= 4 and words[2] == "inet":
            out.setdefault(words[1], set()).add(words[3].split("/")[0])
    return out


def pending(plan: dict) -> dict:
    """What a provider's ``<op>_pending`` returns: the public part of the
    plan its ``_<op>_plan`` read (the rest is what the apply step needs)."""
    return {"changes": plan["changes"], "comment": plan["comment"]}


def programs(pair: dict, node_id: str, provider: str, script_dir: str) -> list[dict]:
    """The programs a Linux provider runs, as salt/carp installs them:
    ``[{"name", "path", "source", "mode"}]`` (lb_render_linux.carp_programs)."""
    return [
        {"name": name, "path": os.path.join(script_dir, name), "source": source, "mode": "0755"}
        for name, source in lb_render_linux.carp_programs(pair, node_id, provider).items()
    ]


def missing_programs(listed: list[dict]) -> list[str]:
    """The paths of `listed` (programs()) that are not installed as
    executables: salt/carp installs them before carp.present runs."""
    return [p["path"] for p in listed if not os.access(p["path"], os.X_OK)]


def file_mode(path: str) -> int | None:
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        return None


# ---------------------------------------------------------------------------
# settings, topology


def raw_override(*sources) -> dict:
    """The `lb_settings:carp` mapping, unchecked (a provider module's
    __virtual__ reads only its `provider`)."""
    return lb_settings.raw("carp", *sources)


def checked_node_groups(model: dict, node_id: str, os_family: str) -> tuple[dict, list[dict]]:
    """`node_groups` for a Salt module: a node in no pair is a
    CommandExecutionError naming the known nodes."""
    from salt.exceptions import CommandExecutionError  # pylint: disable=import-outside-toplevel

    try:
        return node_groups(model, node_id, os_family)
    except KeyError as exc:
        raise CommandExecutionError(str(exc.args[0])) from exc


def linux_virtual(module: str, provider: str, opts: dict, grains: dict, pillar: dict):
    """The __virtual__ of a Linux provider module: ``"carp"`` when this
    node uses `provider`, else (False, why)."""
    if grains.get("kernel") != "Linux":
        return (False, f"{module}: Linux only (FreeBSD uses carp_freebsd)")
    chosen = linux_provider(pillar, opts.get("id"), raw_override(opts, grains, pillar))
    if chosen != provider:
        return (False, f"{module}: this node's pair uses {chosen}")
    return "carp"


def checked_override(opts: dict, grains: dict, pillar: dict) -> dict:
    """`override` for a Salt module: invalid settings are a
    CommandExecutionError naming their path."""
    from salt.exceptions import CommandExecutionError  # pylint: disable=import-outside-toplevel

    try:
        return override(opts, grains, pillar)
    except ValueError as exc:
        raise CommandExecutionError(f"invalid settings: {exc}") from exc


def override(*sources) -> dict:
    """The `lb_settings:carp` settings (paths, binaries) from the first
    source that has them: pass the minion's opts, grains and pillar, in that
    order.  Checked (lb_settings): lb_settings.SettingsError, a ValueError
    naming `lb_settings:carp:<key>`, when a value is not what sh and the
    configs can hold."""
    return lb_settings.lookup("carp", *sources)


def settings(family: str, override: dict | None) -> dict:
    """The provider's paths: lb_parameters' carp section for `family`
    ("FreeBSD", or "Linux": Debian's) with the `lb_settings:carp` mapping on
    top (any of them, e.g. {"state_dir": "/srv/lb-carp"})."""
    out = lb_parameters.of(family, "carp")
    for k, v in (override or {}).items():
        if k in out and isinstance(v, str) and v.startswith("/"):
            out[k] = v.rstrip("/") or "/"
    return out


def linux_provider(pillar: dict, node_id: str, override: dict | None = None) -> str:
    """keepalived or ucarp: `lb_settings:carp:provider` if set, else the pair's
    `carp:linux_provider` in the pillar, else keepalived (the default).

    Read when Salt loads the `carp` modules (their __virtual__), so it looks
    the one key up in the raw pillar and validates nothing: the topology is
    validated once, by `lb.model`, and an invalid one fails the first call
    of whichever provider loaded."""
    forced = (override or {}).get("provider")
    if forced in lb_topology.LINUX_PROVIDERS:
        return forced
    return lb_topology.declared_linux_provider((pillar or {}).get(lb_topology.ROOT), node_id)


def parse_keepalived(text: str | None) -> dict[int, dict]:
    """The instances of a keepalived.conf this module rendered:
    {vhid: {device, vip, priority, advert_int, preempt}}; each VIP from the
    arguments of lb-carp-keepalived-vips (``<vhid>=<device>,<vip>,<peer>``;
    releases before the handover's second chance had no ``,<peer>``)."""
    import re

    vips = {}
    fifo = re.search(r"^\s*vrrp_notify_fifo_script \"([^\"]*)\"", text or "", re.M)
    for word in fifo.group(1).split() if fifo else []:
        m = re.fullmatch(r"(\d+)=([^,]+),([^,\s]+/\d+)(?:,[0-9.]+)?", word)
        if m:
            vips[int(m.group(1))] = m.group(3)
    out = {}
    for m in re.finditer(r"^vrrp_instance VI_(\d+) \{\n(.*?)^\}", text or "", re.S | re.M):
        body = m.group(2)

        def one(rx, body=body):
            f = re.search(rx, body, re.M)
            return f.group(1) if f else None

        vhid = int(m.group(1))
        out[vhid] = {
            "device": one(r"^\s+interface (\S+)"),
            "vip": vips.get(vhid),
            "priority": int(one(r"^\s+priority (\d+)") or 0),
            "advert_int": float(one(r"^\s+advert_int (\S+)") or 0),
            "preempt": "nopreempt" not in body,
        }
    return out


# ---------------------------------------------------------------------------
# ucarp's recorded command lines, and what earlier versions installed


def keepalived_public(inst: dict) -> dict:
    """An instance of parse_keepalived as the keepalived provider reports
    it (advskew: 254 - priority)."""
    return {
        "device": inst["device"],
        "vip": inst["vip"],
        "priority": inst["priority"],
        "advskew": 254 - inst["priority"],
        "advert_int": inst["advert_int"],
        "preempt": inst["preempt"],
    }


def keepalived_without(text: str, vhids) -> str:
    """keepalived.conf's text without the vrrp_instance of each vhid, nor
    its VIP among lb-carp-keepalived-vips' arguments."""
    for v in vhids:
        text = re.sub(rf"^vrrp_instance VI_{v} \{{\n.*?^\}}\n\n?", "", text, flags=re.S | re.M)
        text = re.sub(rf' {v}=[^\s"]+', "", text, count=1)
    return text


def ucarp_argv_text(argv: list[str]) -> str:
    """A recorded ucarp command line for lb-ucarp-exec: one argument a line
    (ValueError for an argument that would not stay one)."""
    for word in argv:
        if not word or "\n" in word or "\r" in word or "\0" in word:
            raise ValueError(f"{word!r} cannot be recorded as one ucarp argument")
    return "\n".join(argv) + "\n"


def parse_ucarp_argv_text(text: str) -> list[str]:
    return text.split("\n")[:-1] if text.endswith("\n") else text.split("\n")


# what earlier versions installed in script_dir; carp.present removes them
OBSOLETE_SCRIPTS = ("lb-carp-notify", "lb-carp-ucarp-up", "lb-carp-ucarp-down")


def obsolete_scripts(script_dir: str) -> list[str]:
    """The OBSOLETE_SCRIPTS this module installed that are still in script_dir."""
    paths = (os.path.join(script_dir, n) for n in OBSOLETE_SCRIPTS)
    return sorted(p for p in paths if "Installed by the carp execution module" in (read_text(p) or ""))
