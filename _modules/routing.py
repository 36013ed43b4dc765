"""
Dynamic routing on a load-balancer node: the daemon's configuration from the
pillar's ``lb`` topology, and the VIP announcements that follow CARP.

A thin layer over ``_utils/lb_routing.py`` (rendering, the hook, the rule for
what is announced).  Linux runs BIRD 2 (``/etc/bird/bird.conf``, checked with
``bird -p`` before it replaces the live file, applied with ``birdc
configure``: a soft reconfiguration that keeps sessions whose settings did
not change); FreeBSD runs OpenBGPD and OpenOSPFD (``bgpd -n`` / ``ospfd -n``,
then ``bgpctl reload`` / ``ospfctl reload``).  docs/routing.md says why.

Announcements: on Linux BIRD's direct protocol ``lb_vips`` announces each
VIP address the node holds, as the kernel adds and removes it (the VIP is a
host address, ``lb_view.linux_vip``); on FreeBSD ``lb-routing-vip VHID
STATE`` (installed here, run by lb-carp-event from devd on every CARP
transition) announces a VIP while this node is its MASTER and withdraws it
otherwise.  ``routing.sync`` compares what is announced with what the node
should announce (``routing.desired``) and repairs what differs: FreeBSD
runs the hook; Linux enables or restarts ``lb_vips``.

The md5sig key is never on a command line or in a return: the file is
written by this module (0640 root:bird for BIRD, which re-reads it as user
bird; 0600 on FreeBSD) and changes are reported without content.
"""

import grp
import logging
import os
import shutil
import time

from salt.exceptions import CommandExecutionError

import carp_common
import lb_boot
import lb_files
import lb_fresh
import lb_generation
import lb_routing
import lb_settings
import lb_view

lb_fresh.refresh()  # the pure modules as new as their files (after saltutil.sync_all)

log = logging.getLogger(__name__)

__virtualname__ = "routing"
START_TIMEOUT = 10.0
SYNC_ATTEMPTS = 10  # passes of routing.sync (0.5 s apart) while CARP moves under it
BIRD_GROUP = "bird"


def __virtual__():
    return __virtualname__


# ---------------------------------------------------------------------------
# helpers


def _family():
    return "FreeBSD" if __grains__.get("kernel") == "FreeBSD" else "Debian"


def _carp_settings():
    fam = "FreeBSD" if _family() == "FreeBSD" else "Linux"
    try:
        return carp_common.settings(fam, carp_common.override(__opts__, __grains__, __pillar__))
    except ValueError as exc:
        raise CommandExecutionError(f"invalid lb_carp settings: {exc}") from exc


def paths():
    """
    Where this node's routing files and tools are (``lb_routing.PATHS`` for
    its OS, the CARP state directory from the ``lb_carp`` settings), each
    replaceable by an absolute path in the ``lb_routing`` config mapping.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' routing.paths
    """
    p = dict(lb_routing.PATHS[_family()])
    state_dir = _carp_settings()["state_dir"]
    p["state_dir"] = state_dir
    p["maintenance"] = os.path.join(state_dir, carp_common.MAINTENANCE_FILE)
    if _family() == "Debian":
        p["pidfile"] = None
    for k, v in _override().items():
        if k in p and isinstance(v, str) and v.startswith("/"):
            p[k] = v.rstrip("/") or "/"
    if _family() == "Debian" and not p["pidfile"]:
        p["pidfile"] = lb_routing.bird_pidfile(p["run_dir"])
    if "hook" in p:
        p["hook_conf"] = p["hook"] + ".conf"  # the hook reads its settings from beside itself
    return p


def _override():
    """The ``lb_routing`` config mapping (minion config, grains or pillar):
    absolute paths replacing lb_routing.PATHS entries, e.g. for tests."""
    for source in (__opts__, __grains__, __pillar__):
        value = source.get("lb_routing") if hasattr(source, "get") else None
        if value is not None:
            try:
                return lb_settings.validate("lb_routing", value)
            except ValueError as exc:
                raise CommandExecutionError(f"invalid lb_routing settings: {exc}") from exc
    return {}


def _pair(topology=None):
    return __salt__["lb.node"](topology=topology)["pair"]


def _configured(pair):
    r = pair["routing"]
    return r["bgp"] is not None or r["ospf"] is not None


def render(topology=None):
    """
    The routing files this node gets, as the module writes them:
    ``{path: {"mode", "secret"}}`` (contents are in ``lb.preview``, redacted).

    CLI Example:

    .. code-block:: bash

        salt 'lb*' routing.render
    """
    return {path: {"mode": f["mode"], "secret": f["secret"]} for path, f in _files(_pair(topology)).items()}


def _files(pair):
    """{path: {"content", "mode", "secret"}} with secrets in clear."""
    if not _configured(pair):
        return {}
    fam = _family()
    p = paths()
    node = __opts__["id"]
    header = lb_view.HEADER.format(pair=pair["name"], node=node)
    rendered = lb_routing.render(pair, node, fam, header, str, lb_view.File)
    default = lb_routing.PATHS[fam]
    files = {}
    if fam == "Debian":
        f = rendered[default["bird"]]
        files[p["bird"]] = {
            # the generation marker BIRD reports back (routing.loaded)
            "content": lb_generation.bird_stamp(lb_routing.render_bird(pair, node, header, str)),
            "mode": f.mode,
            "secret": f.secret,
        }
    else:
        for key in ("bgpd", "ospfd"):
            if default[key] in rendered:
                f = rendered[default[key]]
                text = f.content.replace(default["ospfd_vips"], p["ospfd_vips"]) if key == "ospfd" else f.content
                files[p[key]] = {"content": text, "mode": f.mode, "secret": f.secret}
        routing = pair["routing"]
        conf = lb_routing.hook_config(
            fam, lb_routing.node_vips(pair, node, fam), p, bgp=routing["bgp"] is not None, ospf=routing["ospf"] is not None
        )
        # the hook itself is a file of the state tree, salt/routing's to install
        files[p["hook_conf"]] = {"content": conf, "mode": "0644", "secret": False}
    return files


def _run(argv, quiet=False):
    return __salt__["cmd.run_all"](argv, python_shell=False, ignore_retcode=True, output_loglevel="quiet" if quiet else "debug")


def _first_words(argv):
    return " ".join(str(a) for a in argv[:3])


def _write(path, text, mode, group=None):
    """Atomically, mode and group set before the content lands."""
    lb_files.write_atomic(path, text, int(mode, 8), group)


def _bird_gid():
    try:
        return grp.getgrnam(BIRD_GROUP).gr_gid
    except KeyError:
        return None


def _file_state(path):
    """(content, mode, gid) or (None, None, None)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None, None, None
    return carp_common.read_text(path), st.st_mode & 0o7777, st.st_gid


# -- BIRD (Linux) -------------------------------------------------------------


def _bird():
    return shutil.which("bird") or "/usr/sbin/bird"


def _bird_pid():
    return carp_common.pid_of(paths()["pidfile"], "bird")


def _birdc(*args):
    p = paths()
    res = _run([p["birdc"], "-s", p["socket"], *args], quiet=True)
    return res


def _bird_check(path):
    res = _run([_bird(), "-p", "-c", path])
    if res["retcode"] != 0:
        raise CommandExecutionError("bird -p rejects the rendered configuration: " + (res.get("stderr") or res.get("stdout") or "").strip())


def _bird_run_dir():
    p = paths()
    d = p["run_dir"]
    os.makedirs(d, exist_ok=True)
    gid = _bird_gid()
    if gid is not None:
        os.chown(d, _uid("bird"), gid)
    os.chmod(d, 0o775)


def _uid(name):
    import pwd

    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return 0


def _bird_unit():
    """bird.service when systemd runs this host and the unit carries the
    product's drop-in (which runs BIRD as _bird_start does), on the default
    paths: start and stop go through systemd, whose Restart= covers it."""
    p, default = paths(), lb_routing.PATHS["Debian"]
    if any(p[k] != default[k] for k in ("bird", "run_dir", "socket")) or p["pidfile"] != lb_routing.bird_pidfile(default["run_dir"]):
        return None
    return lb_boot.managed_unit(lb_boot.BIRD_UNIT)


def _systemctl(verb, unit):
    try:
        lb_boot.systemctl(__salt__["cmd.run_all"], verb, unit)
    except RuntimeError as exc:
        raise CommandExecutionError(str(exc)) from exc


def _bird_start():
    p = paths()
    unit = _bird_unit()
    if unit:
        # restart: a BIRD the package's unit started (its built-in socket,
        # no pid file) is replaced by one run as the drop-in says
        _systemctl("restart", unit)
    else:
        argv = lb_boot.bird_argv(_bird(), p["bird"], p["socket"], p["pidfile"], BIRD_GROUP if _bird_gid() is not None else None)
        res = _run(argv)
        if res["retcode"] != 0:
            raise CommandExecutionError(f"bird did not start (exit {res['retcode']}): {(res.get('stderr') or '').strip()}")
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        pid = _bird_pid()
        if pid and os.path.exists(p["socket"]):
            return pid
        time.sleep(0.1)
    raise CommandExecutionError(f"bird started but wrote no pid file {p['pidfile']} within {START_TIMEOUT:.0f} s")


def _bird_configure():
    res = _birdc("configure")
    out = res.get("stdout", "")
    if res["retcode"] != 0 or not any(w in out for w in ("Reconfigured", "Reconfiguration in progress", "queued")):
        raise CommandExecutionError(f"birdc configure failed: {(out + res.get('stderr', '')).strip()}")
    return out


def _bird_loaded():
    """The generation the running BIRD reports (``birdc eval
    lb_config_sha256``: a constant of the config it runs), None if it has
    none or does not answer."""
    res = _birdc("eval", lb_generation.BIRD_CONSTANT)
    return lb_generation.bird_loaded(res.get("stdout", "")) if res["retcode"] == 0 else None


def _bird_wait_loaded(gen, timeout=START_TIMEOUT):
    """Wait until BIRD runs generation `gen` ("Reconfiguration in progress"
    finishes later); raise if it does not."""
    deadline = time.monotonic() + timeout
    while True:
        got = _bird_loaded()
        if got == gen:
            return got
        if time.monotonic() >= deadline:
            raise CommandExecutionError(
                f"BIRD still runs an older config after birdc configure (it reports {(got or 'no marker')[:12]}, the file is {gen[:12]})"
            )
        time.sleep(0.2)


def loaded():
    """
    Whether the running BIRD has loaded bird.conf: the marker the file
    carries (``define lb_config_sha256 = "<sha256 of the rest>";``, written
    by ``routing.present``) against the value the running BIRD gives for
    that constant (``birdc eval``).  Returns ``{"path", "running", "file",
    "loaded", "current", "reason"}``; ``current`` is None when BIRD does not
    run or the file carries no valid marker, False when they differ.
    Linux (BIRD) only.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' routing.loaded
    """
    if _family() == "FreeBSD":
        raise CommandExecutionError("routing.loaded reads BIRD (Linux); OpenBGPD/OpenOSPFD report no generation")
    p = paths()
    file_gen = lb_generation.bird_file_generation(carp_common.read_text(p["bird"]))
    running = _bird_pid() is not None
    marker = f"{lb_generation.BIRD_CONSTANT} marker"
    out = lb_generation.compare("BIRD", p["bird"], file_gen, _bird_loaded() if running else None, running=running, marker=marker)
    return {"path": p["bird"], **out}


def _present_linux(pair, test):
    p = paths()
    want = _files(pair)
    changes = {}
    gid = _bird_gid()
    conf = want[p["bird"]]
    text, mode, cur_gid = _file_state(p["bird"])
    conf_changed = text != conf["content"]
    gen = lb_generation.bird_file_generation(conf["content"])
    if conf_changed:
        changes[p["bird"]] = {
            "old": "differs" if text is not None else None,
            "new": "rendered from the pillar" + (" (holds a key: no diff shown)" if conf["secret"] else ""),
        }
    elif mode != 0o640 or (gid is not None and cur_gid != gid):
        changes[p["bird"]] = {"old": f"mode {mode:o}", "new": "mode 640, group bird"}
    if not os.path.isdir(p["run_dir"]):
        changes[p["run_dir"]] = {"old": None, "new": "directory"}
    pid = _bird_pid()
    stale = None
    if pid is None:
        changes["bird"] = {"old": "stopped", "new": "running"}
    elif conf_changed:
        changes["bird"] = {"old": f"running (pid {pid})", "new": "reconfigured (birdc configure)"}
    else:
        # the file is as wanted: BIRD must run it too (a configure that
        # failed after the swap left the old one)
        loaded = _bird_loaded()
        if loaded != gen:
            stale = f"BIRD runs an older config than {p['bird']} (it reports {(loaded or 'no marker')[:12]}, the file is {gen[:12]})"
            changes["bird"] = {"old": stale, "new": "reconfigured (birdc configure)"}
    if not changes or test:
        return {"changes": changes, "comment": "would apply" if changes else "BIRD runs the configuration the topology gives"}

    _bird_run_dir()
    if conf_changed:
        # the candidate beside the live file (same include paths), checked first
        cand = os.path.join(os.path.dirname(p["bird"]), ".bird.conf.candidate")
        _write(cand, conf["content"], "0640", gid)
        try:
            _bird_check(cand)
            os.replace(cand, p["bird"])
        finally:
            if os.path.exists(cand):
                os.unlink(cand)
    elif p["bird"] in changes:
        os.chmod(p["bird"], 0o640)
        if gid is not None:
            os.chown(p["bird"], 0, gid)
    if pid is None:
        pid = _bird_start()
        _bird_wait_loaded(gen)
        comment = f"bird started (pid {pid})"
    elif conf_changed or stale:
        try:
            _bird_configure()
            _bird_wait_loaded(gen)
        except CommandExecutionError as exc:
            if not conf_changed:
                raise
            # the file was replaced: report that change, and fail
            return {
                "changes": changes,
                "result": False,
                "comment": f"{p['bird']} replaced after bird -p, but BIRD still runs the old config (the next run reconfigures it): {exc}",
            }
        comment = f"bird reconfigured (pid {pid}, sessions kept where their settings did not change)"
        if stale:
            comment = f"{stale}; reconfigured"
    else:
        comment = "routing files updated"
    return {"changes": changes, "comment": comment}


# -- OpenBGPD / OpenOSPFD (FreeBSD) -------------------------------------------

FREEBSD_CHECK = {"bgpd": ["/usr/local/sbin/bgpd", "-n", "-f"], "ospfd": ["/usr/local/sbin/ospfd", "-n", "-f"]}
FREEBSD_SERVICE = {"bgpd": "openbgpd", "ospfd": "openospfd"}
FREEBSD_RELOAD = {"bgpd": ["bgpctl", "reload"], "ospfd": ["ospfctl", "reload"]}


def _present_freebsd(pair, test):
    """Unverified on a FreeBSD kernel (none runs here): the exact calls are
    unit-tested against a fake FreeBSD (tests/unit/test_routing_module.py)."""
    p = paths()
    want = _files(pair)
    changes = {}
    daemons = [d for d in ("bgpd", "ospfd") if p[d] in want]
    for d in daemons:
        f = want[p[d]]
        text, mode, _ = _file_state(p[d])
        if text != f["content"] or mode != 0o600:
            changes[p[d]] = {
                "old": "differs" if text is not None else None,
                "new": "rendered from the pillar" + (" (holds a key: no diff shown)" if f["secret"] else ""),
            }
    if "ospfd" in daemons and not os.path.exists(p["ospfd_vips"]):
        changes[p["ospfd_vips"]] = {"old": None, "new": "empty (lb-routing-vip fills it)"}
    elif "ospfd" in daemons and carp_common.file_mode(p["ospfd_vips"]) != 0o600:
        changes[p["ospfd_vips"]] = {"old": f"mode {carp_common.file_mode(p['ospfd_vips']):04o}", "new": "mode 0600"}
    # the hook's settings; the hook itself is salt/routing's to install,
    # after them (an older, self-contained hook ignores them meanwhile)
    hook = want[p["hook_conf"]]
    if carp_common.read_text(p["hook_conf"]) != hook["content"] or carp_common.file_mode(p["hook_conf"]) != 0o644:
        changes[p["hook_conf"]] = {"old": "differs" if os.path.exists(p["hook_conf"]) else None, "new": "rendered"}
    running = {d: _run(["service", FREEBSD_SERVICE[d], "onestatus"], quiet=True)["retcode"] == 0 for d in daemons}
    for d in daemons:
        if not running[d]:
            changes[FREEBSD_SERVICE[d]] = {"old": "stopped", "new": "running"}
    if not changes or test:
        return {"changes": changes, "comment": "would apply" if changes else "the routing daemons run the configuration the topology gives"}
    if p["hook_conf"] in changes:
        _write(p["hook_conf"], hook["content"], "0644")
    if p.get("ospfd_vips") in changes:
        # 0600: ospfd refuses an included file others can read (check_file_secrecy)
        if os.path.exists(p["ospfd_vips"]):
            os.chmod(p["ospfd_vips"], 0o600)
        else:
            _write(p["ospfd_vips"], "", "0600")
    done = []
    for d in daemons:
        if p[d] in changes:
            cand = p[d] + ".candidate"
            _write(cand, want[p[d]]["content"], "0600")
            try:
                res = _run([*FREEBSD_CHECK[d], cand])
                if res["retcode"] != 0:
                    raise CommandExecutionError(f"{d} -n rejects the rendered configuration: {(res.get('stderr') or '').strip()}")
                os.replace(cand, p[d])
            finally:
                if os.path.exists(cand):
                    os.unlink(cand)
        argv = None
        if not running[d]:
            argv = ["service", FREEBSD_SERVICE[d], "onestart"]
        elif p[d] in changes:
            argv = FREEBSD_RELOAD[d]
        if argv:
            res = _run(argv)
            if res["retcode"] != 0:
                raise CommandExecutionError(f"{_first_words(argv)} failed (exit {res['retcode']})")
            done.append(" ".join(argv))
    return {"changes": changes, "comment": "; ".join(done) or "routing files updated"}


# ---------------------------------------------------------------------------
# public


def present(topology=None, test=False):
    """
    The routing daemon runs the configuration the topology gives this node:
    the file rendered (BIRD: /etc/bird/bird.conf; FreeBSD: bgpd.conf and
    ospfd.conf), checked by the daemon's own parser before it replaces the
    live one, the daemon started or reconfigured without a restart, and
    the announcement hook (lb-routing-vip) installed.

    Returns ``{"changes", "comment"}``; ``test=True`` touches nothing and
    returns the same changes.  Nothing to do without ``routing`` in the pair.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' routing.present
        salt 'lb*' routing.present test=True
    """
    pair = _pair(topology)
    if not _configured(pair):
        return {"changes": {}, "comment": f"pair {pair['name']} has no routing in the pillar"}
    if _family() == "FreeBSD":
        return _present_freebsd(pair, test)
    return _present_linux(pair, test)


def announced(topology=None):
    """
    The VIP addresses this node announces now.  Linux: the routes of BIRD's
    ``lb_vips`` protocol (``birdc show route protocol lb_vips``); FreeBSD:
    ``bgpctl show network`` with BGP, the ``redistribute`` lines ospfd
    includes on an OSPF-only pair.  None when the daemon does not answer.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' routing.announced
    """
    if _family() == "FreeBSD":
        if _pair(topology)["routing"]["bgp"] is None:
            if _run(["service", FREEBSD_SERVICE["ospfd"], "onestatus"], quiet=True)["retcode"] != 0:
                return None
            return sorted(lb_routing.parse_redistribute(carp_common.read_text(paths()["ospfd_vips"]) or ""))
        res = _run([paths()["bgpctl"], "show", "network"], quiet=True)
        return sorted(lb_routing.parse_bgpctl_networks(res["stdout"])) if res["retcode"] == 0 else None
    res = _birdc("show", "route", "protocol", lb_routing.VIPS_PROTOCOL)
    if res["retcode"] != 0 or "ready" not in res.get("stdout", ""):
        return None
    return sorted(lb_routing.parse_bird_routes(res["stdout"]))


def desired():
    """
    The VIP addresses this node should announce (``lb_routing.desired``):
    on Linux the VIP addresses it holds; on FreeBSD those it is MASTER for,
    none in maintenance.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' routing.desired
    """
    status = __salt__["carp.status"]() if "carp.status" in __salt__ else {}
    maint = __salt__["carp.in_maintenance"]() if "carp.in_maintenance" in __salt__ else False
    return sorted(lb_routing.desired(status, maint, linux=_family() != "FreeBSD"))


def _vips_protocol_up():
    """Whether BIRD's ``lb_vips`` protocol is up (not disabled)."""
    res = _birdc("show", "protocols", lb_routing.VIPS_PROTOCOL)
    for line in res.get("stdout", "").splitlines():
        words = line.split()
        if words[:1] == [lb_routing.VIPS_PROTOCOL]:
            return len(words) > 3 and words[3] == "up"
    return False


def _repair(fam, want, have, by_vip):
    """One repair pass: FreeBSD runs the hook for each VIP that differs;
    Linux enables ``lb_vips`` (someone disabled it) or restarts it (it
    re-reads the interfaces' addresses)."""
    if fam == "FreeBSD":
        for vip in sorted(want ^ have):
            if vip not in by_vip:
                continue
            res = _run([paths()["hook"], str(by_vip[vip]), "MASTER" if vip in want else "BACKUP"])
            if res["retcode"] != 0:
                raise CommandExecutionError(
                    f"lb-routing-vip {by_vip[vip]} failed (exit {res['retcode']}): {(res.get('stderr') or '').strip()}"
                )
        return
    verb = "restart" if _vips_protocol_up() else "enable"
    res = _birdc(verb, lb_routing.VIPS_PROTOCOL)
    if res["retcode"] != 0:
        raise CommandExecutionError(
            f"birdc {verb} {lb_routing.VIPS_PROTOCOL} failed: {(res.get('stdout', '') + res.get('stderr', '')).strip()}"
        )


def sync(test=False, topology=None):
    """
    Make what this node announces what it should (``routing.desired``):
    on Linux, when BIRD's ``lb_vips`` routes differ from the VIP addresses
    the node holds, enable the protocol (when disabled) or restart it; on
    FreeBSD run the hook (lb-routing-vip) for each VIP that differs.  A
    CARP transition during the run is followed (up to SYNC_ATTEMPTS
    passes).  Returns ``{"changes": {vip: {"old", "new"}}, "comment"}``.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' routing.sync
        salt 'lb*' routing.sync test=True
    """
    pair = _pair(topology)
    if not _configured(pair):
        return {"changes": {}, "comment": f"pair {pair['name']} has no routing in the pillar"}
    fam = _family()
    vips = lb_routing.node_vips(pair, __opts__["id"], fam)
    by_vip = {vip: vhid for vhid, (_, vip) in vips.items()}
    changes = {}
    for _attempt in range(SYNC_ATTEMPTS):
        now = announced(topology)
        want = set(desired()) & set(by_vip)
        if now is None and test:
            # test mode after a routing.present that would start the
            # daemon: what it would announce once it runs, not a failure
            return {
                "changes": {vip: {"old": None, "new": True} for vip in sorted(want)},
                "comment": "the routing daemon does not answer yet (routing.present starts it); "
                + f"it would announce {', '.join(sorted(want)) or 'nothing'}",
            }
        if now is None:
            raise CommandExecutionError("the routing daemon does not answer (apply routing.present first)")
        have = set(now)
        if want == have:
            break
        for vip in sorted(want ^ have):
            changes.setdefault(vip, {"old": vip in have})["new"] = vip in want
        if test:
            return {"changes": changes, "comment": "would change the announcements"}
        _repair(fam, want, have, by_vip)
        time.sleep(0.5)
    else:
        raise CommandExecutionError(
            f"announced {', '.join(sorted(have)) or 'nothing'} but should announce {', '.join(sorted(want)) or 'nothing'} after {SYNC_ATTEMPTS} passes"
        )
    return {"changes": changes, "comment": "announced: " + (", ".join(sorted(have)) or "nothing")}


def status():
    """
    The routing daemon and the announcements: ``running`` (pid), ``announced``,
    ``desired``, and on Linux BIRD's protocols (name, state, info).

    CLI Example:

    .. code-block:: bash

        salt 'lb*' routing.status --out=json
    """
    out = {"announced": announced(), "desired": desired()}
    if _family() == "Debian":
        out["pid"] = _bird_pid()
        res = _birdc("show", "protocols")
        protos = {}
        for line in res.get("stdout", "").splitlines()[2:]:
            words = line.split()
            if len(words) >= 4:
                protos[words[0]] = {"proto": words[1], "state": words[3], "info": " ".join(words[5:]) if len(words) > 5 else ""}
        out["protocols"] = protos
    return out


def stop():
    """
    Stop BIRD (Linux; by its pid file).  Its routes leave the kernel and its
    sessions close: for taking routing off a node.

    CLI Example:

    .. code-block:: bash

        salt 'lb-a' routing.stop
    """
    pid = _bird_pid() if _family() == "Debian" else None
    if pid is None:
        return {"changes": {}, "comment": "bird is not running"}
    unit = _bird_unit()
    if unit:
        _systemctl("stop", unit)  # else systemd restarts it
    else:
        os.kill(pid, 15)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and _bird_pid() == pid:
        time.sleep(0.1)
    return {"changes": {"bird": {"old": f"running (pid {pid})", "new": "stopped"}}, "comment": "bird stopped"}
