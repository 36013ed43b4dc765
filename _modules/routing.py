"""
Dynamic routing on a load-balancer node: the daemon's configuration from the
pillar's ``lb`` topology, and the VIP announcements that follow CARP.

A thin layer over ``_utils/lb_routing.py`` (rendering, the hook, the rule for
what is announced) and ``_utils/routing_io.py`` (the daemons' processes,
control sockets and files).  Each function that changes something has a
read-only twin that says what it would change: ``present`` and
``present_pending``, ``sync`` and ``sync_pending`` (``test=True`` on the
first returns the second).  Both start from the same plan, which only
reads; the first then applies it.

Linux runs BIRD 2 (``/etc/bird/bird.conf``, checked with ``bird -p`` before
it replaces the live file, applied with ``birdc configure``: a soft
reconfiguration that keeps sessions whose settings did not change); FreeBSD
runs OpenBGPD and OpenOSPFD (``bgpd -n`` / ``ospfd -n``, then ``bgpctl
reload`` / ``ospfctl reload``).  docs/routing.md says why.

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

import os
import time

from salt.exceptions import CommandExecutionError

import carp_common
import lb_fresh
import lb_generation
import lb_parameters
import lb_routing
import lb_settings
import lb_view
import routing_io

lb_fresh.refresh()  # the pure modules as new as their files (after saltutil.sync_all)

__virtualname__ = "routing"
SYNC_ATTEMPTS = 10  # passes of routing.sync (0.5 s apart) while CARP moves under it


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
        raise CommandExecutionError(f"invalid settings: {exc}") from exc


def paths():
    """
    Where this node's routing files and tools are (lb_parameters' routing
    section for its OS, the CARP state directory from ``lb_settings:carp``), each
    replaceable by an absolute path in the ``lb_settings:routing`` config mapping.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' routing.paths
    """
    p = lb_parameters.of(_family(), "routing")
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
    """The ``lb_settings:routing`` config mapping (minion config, grains or pillar):
    absolute paths replacing entries of lb_parameters' routing section, e.g.
    for tests."""
    try:
        return lb_settings.lookup("routing", __opts__, __grains__, __pillar__)
    except ValueError as exc:
        raise CommandExecutionError(f"invalid settings: {exc}") from exc


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
    default = lb_parameters.of(fam, "routing")
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


def _cmd():
    """Salt's ``cmd.run_all``, for routing_io."""
    return __salt__["cmd.run_all"]


def _public(plan):
    """The part of a plan the caller sees."""
    return {"changes": plan["changes"], "comment": plan["comment"]}


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
    running = routing_io.bird_pid(p) is not None
    marker = f"{lb_generation.BIRD_CONSTANT} marker"
    out = lb_generation.compare(
        "BIRD", p["bird"], file_gen, routing_io.bird_loaded(_cmd(), p) if running else None, running=running, marker=marker
    )
    return {"path": p["bird"], **out}


# -- routing.present: a read-only plan, then its application -------------------


def _linux_plan(pair):
    """What ``present`` would change on Linux, and what applying it needs.
    Reads only (the file, the pid file, ``birdc eval``)."""
    p = paths()
    conf = _files(pair)[p["bird"]]
    gid = routing_io.bird_gid()
    changes = {}
    text, mode, cur_gid = routing_io.file_state(p["bird"])
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
    pid = routing_io.bird_pid(p)
    stale = None
    if pid is None:
        changes["bird"] = {"old": "stopped", "new": "running"}
    elif conf_changed:
        changes["bird"] = {"old": f"running (pid {pid})", "new": "reconfigured (birdc configure)"}
    else:
        # the file is as wanted: BIRD must run it too (a configure that
        # failed after the swap left the old one)
        running = routing_io.bird_loaded(_cmd(), p)
        if running != gen:
            stale = f"BIRD runs an older config than {p['bird']} (it reports {(running or 'no marker')[:12]}, the file is {gen[:12]})"
            changes["bird"] = {"old": stale, "new": "reconfigured (birdc configure)"}
    comment = "would apply" if changes else "BIRD runs the configuration the topology gives"
    return dict(changes=changes, comment=comment, paths=p, conf=conf, conf_changed=conf_changed, gid=gid, gen=gen, pid=pid, stale=stale)


def _linux_apply(plan):
    p, changes, conf_changed, gid, gen, pid, stale = (plan[k] for k in ("paths", "changes", "conf_changed", "gid", "gen", "pid", "stale"))
    run_all = _cmd()
    routing_io.bird_run_dir(p)
    if conf_changed:
        # the candidate beside the live file (same include paths), checked first
        cand = os.path.join(os.path.dirname(p["bird"]), ".bird.conf.candidate")
        routing_io.swap_checked(p["bird"], cand, plan["conf"]["content"], "0640", gid, lambda path: routing_io.bird_check(run_all, path))
    elif p["bird"] in changes:
        routing_io.set_mode(p["bird"], 0o640, 0, gid)
    if pid is None:
        pid = routing_io.bird_start(run_all, p)
        routing_io.bird_wait_loaded(run_all, p, gen)
        comment = f"bird started (pid {pid})"
    elif conf_changed or stale:
        try:
            routing_io.bird_configure(run_all, p)
            routing_io.bird_wait_loaded(run_all, p, gen)
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


def _freebsd_plan(pair):
    """What ``present`` would change on FreeBSD, and what applying it needs.
    Reads only (the files, ``service ... onestatus``).  Unverified on a
    FreeBSD kernel (none runs here): the exact calls are unit-tested against
    a fake FreeBSD (tests/unit/test_routing_freebsd.py)."""
    p = paths()
    want = _files(pair)
    changes = {}
    daemons = [d for d in ("bgpd", "ospfd") if p[d] in want]
    for d in daemons:
        f = want[p[d]]
        text, mode, _ = routing_io.file_state(p[d])
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
    running = {d: routing_io.service_running(_cmd(), d) for d in daemons}
    for d in daemons:
        if not running[d]:
            changes[routing_io.FREEBSD_SERVICE[d]] = {"old": "stopped", "new": "running"}
    comment = "would apply" if changes else "the routing daemons run the configuration the topology gives"
    return dict(changes=changes, comment=comment, paths=p, want=want, daemons=daemons, running=running)


def _freebsd_apply(plan):
    p, want, changes, running = plan["paths"], plan["want"], plan["changes"], plan["running"]
    run_all = _cmd()
    if p["hook_conf"] in changes:
        routing_io.write(p["hook_conf"], want[p["hook_conf"]]["content"], "0644")
    if p.get("ospfd_vips") in changes:
        # 0600: ospfd refuses an included file others can read (check_file_secrecy)
        routing_io.ensure_private(p["ospfd_vips"])
    done = []
    for d in plan["daemons"]:
        if p[d] in changes:
            routing_io.swap_checked(
                p[d], p[d] + ".candidate", want[p[d]]["content"], "0600", None, lambda path, d=d: routing_io.freebsd_check(run_all, d, path)
            )
        argv = None
        if not running[d]:
            argv = ["service", routing_io.FREEBSD_SERVICE[d], "onestart"]
        elif p[d] in changes:
            argv = routing_io.FREEBSD_RELOAD[d]
        if argv:
            routing_io.run_checked(run_all, argv)
            done.append(" ".join(argv))
    return {"changes": changes, "comment": "; ".join(done) or "routing files updated"}


def _no_routing(pair):
    return {"changes": {}, "comment": f"pair {pair['name']} has no routing in the pillar"}


def _present_plan(topology):
    pair = _pair(topology)
    if not _configured(pair):
        return _no_routing(pair)
    return _freebsd_plan(pair) if _family() == "FreeBSD" else _linux_plan(pair)


# ---------------------------------------------------------------------------
# public


def present_pending(topology=None):
    """
    What ``routing.present`` would change, touching nothing (reads the
    files, the daemons' pids and status): ``{"changes", "comment"}``, the
    same changes ``routing.present`` makes.  Nothing without ``routing`` in
    the pair.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' routing.present_pending
    """
    return _public(_present_plan(topology))


def present(topology=None, test=False):
    """
    The routing daemon runs the configuration the topology gives this node:
    the file rendered (BIRD: /etc/bird/bird.conf; FreeBSD: bgpd.conf and
    ospfd.conf), checked by the daemon's own parser before it replaces the
    live one, the daemon started or reconfigured without a restart, and
    the announcement hook's settings (lb-routing-vip.conf) written.

    Returns ``{"changes", "comment"}`` (and ``"result": False`` when BIRD
    did not take a file that was replaced); ``test=True`` is
    ``routing.present_pending``.  Nothing to do without ``routing`` in the
    pair.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' routing.present
        salt 'lb*' routing.present test=True
    """
    if test:
        return present_pending(topology)
    plan = _present_plan(topology)
    if not plan["changes"]:
        return _public(plan)
    return _freebsd_apply(plan) if _family() == "FreeBSD" else _linux_apply(plan)


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
            if not routing_io.service_running(_cmd(), "ospfd"):
                return None
            return sorted(lb_routing.parse_redistribute(carp_common.read_text(paths()["ospfd_vips"]) or ""))
        return routing_io.bgpctl_networks(_cmd(), paths())
    return routing_io.bird_vips_routes(_cmd(), paths())


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


# -- routing.sync: a read-only pass, then the repair ---------------------------


def _sync_plan(pair, topology):
    """One read-only pass: what is announced (``have``, None when the daemon
    does not answer) against what should be (``want``), the changes, and the
    VHID of each VIP (for the hook)."""
    vips = lb_routing.node_vips(pair, __opts__["id"], _family())
    by_vip = {vip: vhid for vhid, (_, vip) in vips.items()}
    now = announced(topology)
    want = set(desired()) & set(by_vip)
    if now is None:
        # after a routing.present that would start the daemon: what it
        # would announce once it runs (applying it fails: the daemon first)
        return {
            "changes": {vip: {"old": None, "new": True} for vip in sorted(want)},
            "comment": "the routing daemon does not answer yet (routing.present starts it); "
            + f"it would announce {', '.join(sorted(want)) or 'nothing'}",
            "want": want,
            "have": None,
            "by_vip": by_vip,
        }
    have = set(now)
    changes = {vip: {"old": vip in have, "new": vip in want} for vip in sorted(want ^ have)}
    comment = "would change the announcements" if changes else "announced: " + (", ".join(sorted(have)) or "nothing")
    return {"changes": changes, "comment": comment, "want": want, "have": have, "by_vip": by_vip}


def _repair(plan):
    """One repair pass: FreeBSD runs the hook for each VIP that differs;
    Linux enables ``lb_vips`` (someone disabled it) or restarts it (it
    re-reads the interfaces' addresses)."""
    want, have, by_vip = plan["want"], plan["have"], plan["by_vip"]
    if _family() != "FreeBSD":
        routing_io.bird_vips_renew(_cmd(), paths())
        return
    for vip in sorted(want ^ have):
        if vip in by_vip:
            routing_io.run_hook(_cmd(), paths()["hook"], by_vip[vip], vip in want)


def sync_pending(topology=None):
    """
    What ``routing.sync`` would change, touching nothing: ``{"changes":
    {vip: {"old", "new"}}, "comment"}`` for what this node announces
    against what it should (``routing.desired``).  While the daemon does
    not answer (``routing.present`` would start it): what it would announce.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' routing.sync_pending
    """
    pair = _pair(topology)
    return _public(_sync_plan(pair, topology) if _configured(pair) else _no_routing(pair))


def sync(test=False, topology=None):
    """
    Make what this node announces what it should (``routing.desired``):
    on Linux, when BIRD's ``lb_vips`` routes differ from the VIP addresses
    the node holds, enable the protocol (when disabled) or restart it; on
    FreeBSD run the hook (lb-routing-vip) for each VIP that differs.  A
    CARP transition during the run is followed (up to SYNC_ATTEMPTS
    passes).  Returns ``{"changes": {vip: {"old", "new"}}, "comment"}``;
    ``test=True`` is ``routing.sync_pending``.

    CLI Example:

    .. code-block:: bash

        salt 'lb*' routing.sync
        salt 'lb*' routing.sync test=True
    """
    if test:
        return sync_pending(topology)
    pair = _pair(topology)
    if not _configured(pair):
        return _no_routing(pair)
    changes = {}
    for _attempt in range(SYNC_ATTEMPTS):
        plan = _sync_plan(pair, topology)
        if plan["have"] is None:
            raise CommandExecutionError("the routing daemon does not answer (apply routing.present first)")
        if not plan["changes"]:
            break
        for vip, change in plan["changes"].items():
            changes.setdefault(vip, {"old": change["old"]})["new"] = change["new"]
        _repair(plan)
        time.sleep(0.5)
    else:
        raise CommandExecutionError(
            f"announced {', '.join(sorted(plan['have'])) or 'nothing'} but should announce "
            + f"{', '.join(sorted(plan['want'])) or 'nothing'} after {SYNC_ATTEMPTS} passes"
        )
    return {"changes": changes, "comment": "announced: " + (", ".join(sorted(plan["have"])) or "nothing")}


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
        out["pid"] = routing_io.bird_pid(paths())
        out["protocols"] = routing_io.bird_protocols(_cmd(), paths())
    return out


def stop():
    """
    Stop BIRD (Linux; by its pid file).  Its routes leave the kernel and its
    sessions close: for taking routing off a node.

    CLI Example:

    .. code-block:: bash

        salt 'lb-a' routing.stop
    """
    pid = routing_io.bird_pid(paths()) if _family() == "Debian" else None
    if pid is None:
        return {"changes": {}, "comment": "bird is not running"}
    routing_io.bird_stop(_cmd(), paths(), pid)
    return {"changes": {"bird": {"old": f"running (pid {pid})", "new": "stopped"}}, "comment": "bird stopped"}
