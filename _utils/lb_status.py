"""The pair's status view (`salt-run lb.status`), as plain functions of data.

Inputs: what the topology says each pair is (`expected`), what each node
reported (`lb_node.report` on the minion: CARP states, maintenance flag,
HAProxy's listeners and servers, config checksums), and the split brains the
master has recorded.  Outputs: one dict per pair with its warnings, and the
table an operator reads.  No Salt, no I/O; the unit tests call these with
fixed inputs.
"""

from __future__ import annotations

import time

import lb_events

SERVER_STATES = ("UP", "DOWN", "DRAIN", "MAINT", "NOLB")


def expected_pairs(model: dict) -> dict:
    """{pair: {"nodes": [ids], "groups": {vhid: {"vip", "primary"}}}} from
    the topology model (lb_topology.load)."""
    out = {}
    for name, pair in model["pairs"].items():
        out[name] = {
            "nodes": list(pair["nodes"]),
            "groups": {int(v): {"vip": str(g["vip"].ip), "primary": g["primary"]} for v, g in pair["carp"]["groups"].items()},
        }
    return out


def _carp(report: dict | None) -> dict[int, dict]:
    if not isinstance(report, dict) or not isinstance(report.get("carp"), dict):
        return {}
    out = {}
    for k, v in report["carp"].items():
        try:
            out[int(k)] = v
        except (TypeError, ValueError):
            continue
    return out


def masters_by_vhid(reports: dict[str, dict | None]) -> dict[int, list[str]]:
    """{vhid: [nodes claiming MASTER]} over the reachable nodes."""
    out: dict[int, list[str]] = {}
    for node in sorted(reports):
        for vhid, g in _carp(reports[node]).items():
            out.setdefault(vhid, [])
            if g.get("state") == "MASTER":
                out[vhid].append(node)
    return out


def split_brains(reports: dict[str, dict | None]) -> dict[int, list[str]]:
    """{vhid: nodes} for every vhid that more than one node claims as MASTER."""
    return {v: ns for v, ns in masters_by_vhid(reports).items() if len(ns) > 1}


def server_status(entry: dict) -> str:
    """UP / DOWN / DRAIN / MAINT (and NOLB) from a haproxy_cfg.list_servers
    entry: the stats page's word, normalised (``UP 1/3`` is UP, ``DOWN
    (agent)`` is DOWN), the admin flags first."""
    admin = set(entry.get("admin") or ())
    if "maint" in admin:
        return "MAINT"
    if "drain" in admin:
        return "DRAIN"
    for raw in (entry.get("status"), entry.get("operational")):
        word = (raw or "").split()[0].upper() if (raw or "").split() else ""
        if word.startswith("MAINT"):
            return "MAINT"
        if word in ("UP", "DOWN", "DRAIN", "NOLB"):
            return word
        if word in ("RUNNING", "STARTING"):
            return "UP"
        if word == "STOPPED":
            return "DOWN"
    return (entry.get("status") or entry.get("operational") or "?").upper()
    if word in ("RUNNING", "STARTING"):
        return "UP"
    if word == "STOPPED":
        return "DOWN"
    return word


def writers(servers: list[dict]) -> dict[str, str | None]:
    """{backend: the server taking its traffic} for every backend with
    backup servers (a galera pool: one writer, the others backups), from one
    node's haproxy_cfg.list_servers, in the config's order: the first active
    server that is UP, else the first backup that is UP (HAProxy's rule
    without `option allbackups`, which the gate warns against on galera
    pools); None when none is UP."""
    by_backend: dict[str, list[dict]] = {}
    for s in servers:
        by_backend.setdefault(s.get("backend"), []).append(s)
    out = {}
    for backend, members in by_backend.items():
        if not any(s.get("backup") for s in members):
            continue
        up = [s for s in members if server_status(s) == "UP"]
        first = next((s for s in up if not s.get("backup")), None) or next(iter(up), None)
        out[backend] = first.get("server") if first else None
    return out


def pair_view(name: str, expected: dict, reports: dict[str, dict | None], recorded: dict | None = None, now: float | None = None) -> dict:
    """The status of one pair.

    reports
        {node: lb_node.report's return, or None/str when the node did not
        answer}.
    recorded
        {vhid: {"since", "nodes"}}: split brains the master recorded for
        this pair and has not seen resolved.
    """
    now = time.time() if now is None else now
    recorded = {int(k): v for k, v in (recorded or {}).items()}
    nodes = list(expected["nodes"])
    reachable = {n: isinstance(reports.get(n), dict) for n in nodes}
    live = {n: reports[n] for n in nodes if reachable[n]}
    warnings: list[str] = []

    for n in nodes:
        if not reachable[n]:
            why = reports.get(n)
            warnings.append(f"{n}: unreachable ({why})" if isinstance(why, str) and why else f"{n}: unreachable (no answer)")

    masters = masters_by_vhid(live)
    splits = {}
    groups = []
    for vhid in sorted(set(expected["groups"]) | set(masters)):
        want = expected["groups"].get(vhid, {})
        states = {n: (_carp(live[n]).get(vhid) or {}).get("state", "-") if n in live else "?" for n in nodes}
        ms = masters.get(vhid, [])
        vip = want.get("vip") or next(
            (lb_events.vip_address(_carp(live[n])[vhid].get("vip")) for n in live if vhid in _carp(live[n])), None
        )
        if vhid not in expected["groups"]:
            warnings.append(f"vhid {vhid}: configured on {', '.join(n for n in live if vhid in _carp(live[n]))} but not in the pillar")
        if len(ms) > 1:
            rec = recorded.get(vhid)
            since = f" since {time.strftime('%H:%M:%S', time.localtime(rec['since']))}" if rec and rec.get("since") else ""
            splits[vhid] = {"nodes": ms, "since": rec.get("since") if rec else None}
            warnings.append(f"SPLIT BRAIN: vhid {vhid} ({vip}) is MASTER on {' and '.join(ms)}{since}")
        elif not ms and live:
            if len(live) == len(nodes):
                warnings.append(f"vhid {vhid} ({vip}): no MASTER")
            else:
                warnings.append(f"vhid {vhid} ({vip}): no MASTER among the reachable nodes")
        elif vhid in recorded and len(live) < len(nodes):
            # cannot tell it is resolved while a node does not answer
            splits[vhid] = {"nodes": recorded[vhid].get("nodes", []), "since": recorded[vhid].get("since"), "unconfirmed": True}
            warnings.append(f"SPLIT BRAIN recorded for vhid {vhid} ({vip}); not confirmed resolved while a node is unreachable")
        groups.append(
            {"vhid": vhid, "vip": vip, "primary": want.get("primary"), "master": ms[0] if len(ms) == 1 else (ms or None), "states": states}
        )

    node_rows = {}
    listeners: dict[str, dict[str, str]] = {}
    servers: dict[str, dict[str, str]] = {}
    for n in nodes:
        rep = live.get(n)
        if rep is None:
            node_rows[n] = {"reachable": False}
            continue
        hap = rep.get("haproxy") or {}
        drift_map = {p: d for p, d in (rep.get("drift") or {}).items() if isinstance(d, dict)}
        drift = sorted(p for p, d in drift_map.items() if not d.get("match"))
        # the file is as the pillar renders it, but its daemon has not loaded it
        not_loaded = [p for p in drift if drift_map[p].get("loaded") is False and drift_map[p].get("file_match")]
        node_rows[n] = {
            "reachable": True,
            "maintenance": bool(rep.get("maintenance")),
            "haproxy": "running" if hap.get("running") else "stopped",
            "provider": rep.get("provider"),
            "config_drift": drift,
            "not_loaded": not_loaded,
            "masters": sorted(v for v, g in _carp(rep).items() if g.get("state") == "MASTER"),
        }
        for path in drift:
            if path in not_loaded:
                why = drift_map[path].get("reason") or "the running process has not loaded it"
                warnings.append(f"{n}: {path} is as the pillar renders it, but not loaded: {why} (run state.apply: it reloads)")
            else:
                warnings.append(f"{n}: {path} differs from what the pillar renders (run state.apply)")
        if not hap.get("running") and node_rows[n]["masters"]:
            warnings.append(f"{n}: MASTER of vhid {', '.join(map(str, node_rows[n]['masters']))} but HAProxy is not running")
        for err in rep.get("errors") or []:
            warnings.append(f"{n}: {err}")
        for lst in rep.get("listeners") or []:
            listeners.setdefault(lst["name"], {})[n] = lst.get("status") or "?"
        writing = writers(rep.get("servers") or [])
        for s in rep.get("servers") or []:
            key = f"{s.get('backend')}/{s.get('server')}"
            servers.setdefault(key, {})[n] = server_status(s) + (" writer" if writing.get(s.get("backend")) == s.get("server") else "")

    return {
        "pair": name,
        "nodes": node_rows,
        "groups": groups,
        "listeners": {k: listeners[k] for k in sorted(listeners)},
        "servers": {k: servers[k] for k in sorted(servers)},
        "splitbrain": {str(v): s for v, s in sorted(splits.items())},
        "warnings": warnings,
        "checked": round(now, 3),
    }


def view(
    expected: dict, reports: dict[str, dict | None], recorded: dict | None = None, now: float | None = None, pillar: list[str] | None = None
) -> dict:
    """Every pair: {"pairs": {name: pair_view}, "warnings": [pair: warning]},
    and ``pillar``: what the minions' pillars disagree on
    (lb_bookkeeping.site_model), first among the warnings."""
    recorded = recorded or {}
    pairs = {}
    warnings = [f"pillar: {p}" for p in pillar or []]
    for name in sorted(expected):
        pv = pair_view(name, expected[name], reports, recorded.get(name), now)
        pairs[name] = pv
        warnings += [f"{name}: {w}" for w in pv["warnings"]]
    out = {"pairs": pairs, "warnings": warnings}
    if pillar:
        out["pillar"] = list(pillar)
    return out


# ---------------------------------------------------------------------------
# the table


def _grid(header: list[str], rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = indent + "  ".join(f"{{:<{w}}}" for w in widths)
    return [fmt.format(*header).rstrip(), *(fmt.format(*map(str, r)).rstrip() for r in rows)]


def _config_cell(row: dict) -> str:
    """'matches pillar' only when every file is as the pillar renders it
    and loaded by its daemon."""
    if not row["config_drift"]:
        return "matches pillar"
    loaded = row.get("not_loaded") or []
    differs = [p for p in row["config_drift"] if p not in loaded]
    parts = (["DIFFERS: " + ", ".join(differs)] if differs else []) + (["NOT LOADED: " + ", ".join(loaded)] if loaded else [])
    return "; ".join(parts)


def table(v: dict) -> str:
    """The view as text, one block per pair."""
    out = []
    for name, pv in v["pairs"].items():
        nodes = list(pv["nodes"])
        out.append(f"pair {name}")
        rows = []
        for g in pv["groups"]:
            m = g["master"]
            master = "-" if not m else (m if isinstance(m, str) else "SPLIT: " + "+".join(m))
            rows.append([g["vhid"], g["vip"] or "?", master, *(g["states"][n] for n in nodes)])
        out += _grid(["VHID", "VIP", "MASTER", *nodes], rows)
        out.append("")
        rows = []
        for n in nodes:
            r = pv["nodes"][n]
            if not r["reachable"]:
                rows.append([n, "no", "?", "?", "?"])
                continue
            rows.append(
                [
                    n,
                    "yes",
                    "yes" if r["maintenance"] else "no",
                    r["haproxy"],
                    _config_cell(r),
                ]
            )
        out += _grid(["NODE", "REACHABLE", "MAINTENANCE", "HAPROXY", "CONFIG"], rows)
        if pv["listeners"]:
            out.append("")
            out += _grid(["LISTENER", *nodes], [[k, *(st.get(n, "-") for n in nodes)] for k, st in pv["listeners"].items()])
        if pv["servers"]:
            out.append("")
            out += _grid(["BACKEND/SERVER", *nodes], [[k, *(st.get(n, "-") for n in nodes)] for k, st in pv["servers"].items()])
        out.append("")
        if pv["warnings"]:
            out.append("  warnings:")
            out += [f"  ! {w}" for w in pv["warnings"]]
        else:
            out.append("  no warnings")
        out.append("")
    if not v["pairs"]:
        out.append("no load-balancer pair in the topology")
    if v.get("pillar"):
        out.append("the minions' pillars:")
        out += [f"  ! {p}" for p in v["pillar"]]
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------------------
# history


def history_table(records: list[dict]) -> str:
    """Recorded transitions and events, oldest first, one line each."""
    rows = []
    for r in records:
        t = r.get("timestamp") or r.get("received")
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if isinstance(t, (int, float)) else "?"
        what = r.get("what") or ""
        rows.append([when, r.get("node") or "-", r.get("vhid") if r.get("vhid") is not None else "-", what, r.get("source") or "-"])
    if not rows:
        return "no transitions recorded\n"
    return "\n".join(_grid(["TIME", "NODE", "VHID", "EVENT", "SOURCE"], rows, indent="")) + "\n"


def history_record(tag: str, data: dict, received: float) -> dict:
    """One line of the master's event log, from an event's tag and data:
    CARP transitions (``salt/beacon/<id>/carp/<vhid>/<STATE>``), HAProxy
    down (``.../carp/haproxy/DOWN``), and the ``lb/...`` events the reactor
    and runner fire (split brain, demotion, heal)."""
    parts = tag.split("/")
    rec = {
        "tag": tag,
        "received": round(received, 3),
        "timestamp": data.get("timestamp") or round(received, 3),
        "source": data.get("source"),
    }
    if tag.startswith("salt/beacon/") and len(parts) >= 6 and parts[3] == "carp":
        rec["node"] = parts[2]
        if parts[4] == "haproxy":
            rec["what"] = f"HAProxy {parts[5]} while MASTER of {', '.join(map(str, data.get('masters') or []))}"
        else:
            rec["vhid"] = int(parts[4]) if parts[4].isdigit() else parts[4]
            rec["vip"] = lb_events.vip_address(data.get("vip"))
            rec["what"] = f"{data.get('old') or '?'} -> {parts[5]} ({rec['vip'] or '?'})"
            rec["old"], rec["new"] = data.get("old"), parts[5]
    else:
        rec["node"] = data.get("node") or data.get("id")
        rec["vhid"] = data.get("vhid")
        rec["what"] = data.get("message") or tag
    return rec


def split_update(pair: str, expected: dict, known: dict, splits: dict[int, list[str]], all_answered: bool, now: float, confirmed: bool):
    """One pair's split-brain record after a look at its nodes.

    ``known``: the pair's record ``{str(vhid): {"since", "nodes", "vip"}}``;
    ``splits``: :func:`split_brains` of the nodes' answers now;
    ``all_answered``: both nodes answered (only then is a recorded split
    brain resolved: a silent node may still hold the VIP); ``confirmed``:
    the split brains in ``splits`` have lasted the confirmation time (a
    new one is declared only then).

    Returns (the new record, the ``(tag, data)`` events to fire, the vhids
    split now but not yet recorded: to confirm later)."""
    rec = {k: dict(v) for k, v in known.items()}
    fire = []
    pending = sorted(v for v in splits if str(v) not in rec)
    if confirmed:
        for vhid in pending:
            vip = expected["groups"].get(vhid, {}).get("vip")
            msg = f"split brain: vhid {vhid} ({vip}) is MASTER on {' and '.join(splits[vhid])}"
            rec[str(vhid)] = {"since": now, "nodes": splits[vhid], "vip": vip}
            fire.append((f"lb/splitbrain/{pair}/{vhid}", {"pair": pair, "vhid": vhid, "vip": vip, "nodes": splits[vhid], "message": msg}))
        pending = []
    if all_answered:
        for key in sorted((k for k in rec if int(k) not in splits), key=int):
            old = rec.pop(key)
            msg = f"split brain resolved: vhid {key} ({old.get('vip')}) has one MASTER again"
            fire.append(
                (
                    f"lb/splitbrain/{pair}/{key}/resolved",
                    {"pair": pair, "vhid": int(key), "vip": old.get("vip"), "message": msg, "since": old.get("since")},
                )
            )
    return rec, fire, pending
