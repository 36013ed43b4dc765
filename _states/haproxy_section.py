"""
HAProxy configuration, section by section, validated before it goes live.

- ``haproxy_section.managed``: this node's whole configuration rendered from
  the ``lb`` pillar (and its TLS PEM files); sections the pillar does not
  own are kept or removed, as the explicit ``unmanaged`` argument says;
- ``haproxy_section.present`` / ``haproxy_section.absent``: one section;
- ``haproxy_section.running``: HAProxy runs (master-worker mode).

Every write goes through ``haproxy_cfg.write`` (candidate beside the live
file, real ``haproxy -c``, then ``os.replace``); a refused candidate fails
the state with HAProxy's own message and the live file stays as it was.
HAProxy is reloaded (``haproxy_cfg.reload``: no connection dropped) when
something changed, and when the file is as wanted but the running HAProxy
reports an older generation (``haproxy_cfg.loaded``: the file's
``description lb-config-sha256=`` marker against ``show info``): "up to
date" means the file is as wanted *and* HAProxy runs it.  A reload that
fails after the swap fails the state with its changes.  With ``test=True`` nothing is touched: the result
is None and ``changes`` holds what would change.

The state only compares and delegates: all I/O is in ``haproxy_cfg``.

.. code-block:: yaml

    haproxy-config:
      haproxy_section.managed:
        - unmanaged: remove

    haproxy-extra-backend:
      haproxy_section.present:
        - name: be_legacy
        - kind: backend
        - lines:
          - balance roundrobin
          - server old1 10.6.6.50:80 check
"""

from salt.exceptions import CommandExecutionError

import haproxy_config
import lb_fresh
import lb_state

lb_fresh.refresh()  # the pure modules as new as their files (after saltutil.sync_all)

__virtualname__ = "haproxy_section"


def __virtual__():
    if "haproxy_cfg.write" in __salt__:
        return __virtualname__
    return (False, "haproxy_section needs the haproxy_cfg execution module")


def _section_changes(merge_or_labels, old_text, new_text, path, show_diff):
    changes = {}
    if isinstance(merge_or_labels, haproxy_config.MergeResult):
        sections = {k: v for k, v in merge_or_labels.sections().items() if v != "kept"}
    else:
        sections = merge_or_labels
    if sections:
        changes["sections"] = sections
    if show_diff and old_text != new_text:
        # secrets (password hashes, stats auth) are redacted in the diff
        changes["diff"] = haproxy_config.diff(old_text or "", new_text, path) or "(only redacted secrets changed)"
    return changes


def _reload(path):
    """Reload HAProxy, then check that it runs `path` (the generation it
    reports is the file's); raises CommandExecutionError otherwise."""
    r = __salt__["haproxy_cfg.reload"]()
    gen = __salt__["haproxy_cfg.loaded"](path, wait=3)
    if gen["current"] is False:
        raise CommandExecutionError(f"HAProxy was reloaded but does not run {path}: {gen['reason']}")
    return {"master": r.get("master"), "new_workers": r.get("new_workers") or r.get("workers")}, (
        "HAProxy reloaded" if r.get("reloaded") else "HAProxy started"
    )


def _apply(ret, path, text, files, mode, pending, reload):
    """Write (validate-then-swap) and reload; fills `ret`.  A failed write
    raises (nothing changed); a failed reload after the swap fails the state
    with its changes (the file did change) and says HAProxy still runs the
    old config: the next run sees that and reloads."""
    __salt__["haproxy_cfg.write"](text, path=path, files=files, mode=mode)
    comments = [f"{path}: {', '.join(pending.get(path, [])) or 'files it reads'} updated after haproxy -c"]
    if reload:
        st = __salt__["haproxy_cfg.status"]()
        if st["running"]:
            try:
                ret["changes"]["reload"], done = _reload(path)
                comments.append(done)
            except CommandExecutionError as exc:
                ret["result"] = False
                comments.append(f"the reload failed, HAProxy still runs the old config (the next run reloads it): {exc}")
        else:
            comments.append("HAProxy is not running (haproxy_section.running starts it)")
    ret["comment"] = "; ".join(comments)


def _up_to_date(ret, path, comment, reload):
    """The file is as wanted: "up to date" only if HAProxy runs it too;
    otherwise reload (a change), or fail if the reload fails."""
    gen = __salt__["haproxy_cfg.loaded"](path)
    if gen["current"] is not False:
        ret["comment"] = comment + ("; HAProxy runs it" if gen["current"] else f"; {gen['reason']}")
        return ret
    if not reload:
        ret["comment"] = f"{comment}, but {gen['reason']} (reload=False: not reloaded)"
        return ret
    if __opts__["test"]:
        ret["result"] = None
        ret["changes"] = {"reload": gen["reason"]}
        ret["comment"] = f"{gen['reason']}; it would be reloaded"
        return ret
    try:
        entry, _ = _reload(path)
    except CommandExecutionError as exc:
        ret["result"] = False
        ret["comment"] = f"{gen['reason']}, and the reload failed: {exc}"
        return ret
    ret["changes"] = {"reload": dict(entry, reason=gen["reason"])}
    ret["comment"] = f"{gen['reason']}; reloaded"
    return ret


def managed(name=None, unmanaged=None, node=None, os_family=None, topology=None, reload=True, prometheus=None, show_diff=True):
    """
    This node's HAProxy configuration from the ``lb`` pillar.

    name
        The config file (default: ``haproxy_cfg.settings`` ``config``).
    unmanaged
        Required, ``keep`` or ``remove``: what happens to sections of the live
        file that the pillar does not render (an operator's backend, the
        package's defaults).  Kept sections stay where they were.
    node, os_family, topology
        Default: this minion's id, its ``os_family`` grain, the pillar.
    reload
        Reload HAProxy when something changed (default True).
    prometheus
        Render the exporter (default: if ``haproxy -vv`` lists it).
    show_diff
        Put a diff into the changes (secrets redacted; TLS keys are never
        diffed, their files are only named).
    """
    ret = lb_state.ret(name)
    if unmanaged not in haproxy_config.UNMANAGED_CHOICES:
        ret["result"] = False
        ret["comment"] = "unmanaged is required: 'keep' or 'remove' the sections the pillar does not own (an explicit choice, no default)"
        return ret
    try:
        settings = __salt__["haproxy_cfg.settings"]()
        files = __salt__["haproxy_cfg.render"](node=node, os_family=os_family, topology=topology, prometheus=prometheus, secrets=True)
        config = files.pop(settings["config"])
        path = name or settings["config"]
        ret["name"] = path
        extra = {p: {"content": f["content"], "mode": f["mode"]} for p, f in files.items()}
        live = __salt__["haproxy_cfg.read"](path)
        # the generation marker is not a section's content: merged without
        # it, then set for the result (haproxy_config.stamp)
        merged = haproxy_config.merge(
            haproxy_config.parse(haproxy_config.unstamp(live or "")), haproxy_config.parse(config["content"]), unmanaged
        )
        text = haproxy_config.stamp(merged.text)
        pending = __salt__["haproxy_cfg.pending"](text, path=path, files=extra, mode=config["mode"])
        # PEM files of TLS listeners the pillar no longer has (keys on disk)
        stale = __salt__["haproxy_cfg.prune_certs_pending"](keep=list(extra))
        if not pending and not stale:
            comment = f"{path} is up to date ({len(merged.config.sections)} sections"
            comment += f", {len(merged.kept)} kept that the pillar does not own)" if merged.kept else ")"
            return _up_to_date(ret, path, comment, reload)
        changes = _section_changes(merged, live, text, path, show_diff)
        if path in pending and "content" not in pending[path] and "new file" not in pending[path]:
            changes["mode"] = pending[path]
        tls = {p: ", ".join(r) for p, r in pending.items() if p != path}
        tls.update({p: "removed" for p in stale})
        if tls:
            changes["files"] = tls  # never their content
        if __opts__["test"]:
            chk = __salt__["haproxy_cfg.check"](text=text, files=extra)
            ret["changes"] = changes
            if not chk["valid"]:
                ret["result"] = False
                ret["comment"] = f"{path} would change, but haproxy -c refuses the result:\n{chk['message']}"
            else:
                ret["result"] = None
                ret["comment"] = (
                    f"{path} would be updated ({', '.join(f'{k} {v}' for k, v in changes.get('sections', {}).items()) or 'files'}) and HAProxy reloaded"
                )
            return ret
        ret["changes"] = changes
        if pending:
            _apply(ret, path, text, extra, config["mode"], pending, reload)
        if stale:
            __salt__["haproxy_cfg.prune_certs"](keep=list(extra))
            ret["comment"] = "; ".join(x for x in (ret["comment"], f"removed {', '.join(stale)}") if x)
    except (CommandExecutionError, haproxy_config.ConfigError) as exc:
        ret["changes"] = {}
        ret["result"] = False
        ret["comment"] = str(exc)
    return ret


def present(name, kind, lines, config=None, after=None, reload=True):
    """
    One section with exactly these directives.  Compared directive by
    directive (whitespace and comments do not count), so a hand-formatted
    section that says the same is left alone; otherwise only this section's
    lines are rewritten.

    name
        The section's name (``""`` for ``global`` / an unnamed ``defaults``).
    kind
        backend, frontend, listen, userlist, peers, resolvers, ...
    lines
        The directives, without indentation.
    config
        The config file (default: the live one).
    after
        ``"<kind> <name>"`` of the section to insert a new one after
        (default: at the end).
    """
    ret = lb_state.ret(name)
    try:
        path = config or __salt__["haproxy_cfg.settings"]()["config"]
        wanted = haproxy_config.make_section(kind, name, [str(x) for x in (lines or [])])
        live = __salt__["haproxy_cfg.read"](path)
        if live is None:
            raise CommandExecutionError(f"{path} does not exist")
        cfg = haproxy_config.parse(haproxy_config.unstamp(live))
        current = cfg.find(kind, name)
        if current is not None and current.directives() == wanted.directives():
            if not cfg.end_with_newline():
                return _up_to_date(ret, path, f"{wanted.label} is as wanted in {path}", reload)
            # as wanted, but HAProxy refuses the file: its last line has no newline
            what = "kept (the file's final newline added)"
        else:
            what = "changed" if current is not None else "added"
        anchor = None
        if current is None and after:
            parts = str(after).split(None, 1)
            anchor = (parts[0], parts[1] if len(parts) > 1 else "")
        if current is None or current.directives() != wanted.directives():
            cfg.set(wanted, after=anchor)
        _change_one(ret, cfg, live, path, wanted.label, what, reload)
    except (CommandExecutionError, haproxy_config.ConfigError) as exc:
        ret["changes"] = {}
        ret["result"] = False
        ret["comment"] = str(exc)
    return ret


def _change_one(ret, cfg, live, path, label, what, reload):
    """The end of `present` and `absent`: one section `what` (added,
    changed, removed) in `cfg`; in test mode what would change, else the
    checked write (and the reload)."""
    text = haproxy_config.stamp(cfg.render())
    ret["changes"] = _section_changes({label: what}, live, text, path, True)
    if __opts__["test"]:
        ret["result"] = None
        ret["comment"] = f"{label} would be {what} {'from' if what == 'removed' else 'in'} {path}"
        return
    _apply(ret, path, text, None, None, {path: [f"{label} {what}"]}, reload)


def absent(name, kind, config=None, reload=True):
    """
    No such section (with the comment lines right above it).

    name
        The section's name.
    kind
        Its type (backend, listen, ...).
    config
        The config file (default: the live one).
    """
    ret = lb_state.ret(name)
    try:
        path = config or __salt__["haproxy_cfg.settings"]()["config"]
        live = __salt__["haproxy_cfg.read"](path)
        cfg = haproxy_config.parse(haproxy_config.unstamp(live or ""))
        key_label = haproxy_config.label((kind, name))
        if live is None:
            ret["comment"] = f"{key_label} is not in {path}"
            return ret
        if not cfg.remove(kind, name):
            return _up_to_date(ret, path, f"{key_label} is not in {path}", reload)
        _change_one(ret, cfg, live, path, key_label, "removed", reload)
    except (CommandExecutionError, haproxy_config.ConfigError) as exc:
        ret["changes"] = {}
        ret["result"] = False
        ret["comment"] = str(exc)
    return ret


def running(name="haproxy"):
    """
    HAProxy runs in master-worker mode: started (``haproxy_cfg.start``) if
    it does not run, taken over if it runs without a master (e.g. started by
    the package with its default config).  A running HAProxy is not
    reloaded here: ``managed`` reloads when the configuration changes.
    """
    ret = lb_state.ret(name)
    try:
        st = __salt__["haproxy_cfg.status"]()
        if st["running"] and st["master_worker"]:
            ret["comment"] = f"HAProxy runs (master {st['master']}, workers {st['workers']})"
            return ret
        action = "started" if not st["running"] else f"taken over from pids {st['pids']} (not in master-worker mode)"
        if __opts__["test"]:
            ret["result"] = None
            ret["changes"] = {"haproxy": f"would be {action}"}
            ret["comment"] = f"HAProxy would be {action}"
            return ret
        r = __salt__["haproxy_cfg.reload"]() if st["running"] else __salt__["haproxy_cfg.start"]()
        ret["changes"] = {"haproxy": action, "master": r.get("master")}
        ret["comment"] = f"HAProxy {action}"
    except CommandExecutionError as exc:
        ret["result"] = False
        ret["comment"] = str(exc)
    return ret
