"""What the CARP beacon (`_beacons/carp.py`) decides, as plain functions of
data: which groups changed state between two reads of ``carp.status``, the
event each change becomes, and who announces it.

Two paths announce a transition: the beacon, every poll, and the daemons'
own hooks (keepalived's notify script, ucarp's up/down scripts, FreeBSD's
devd rule), which run ``lb-carp-event`` at once.  Both write a *claim* per
vhid, ``<events_dir>/<vhid>``: ``"<STATE> <epoch> <how>"``.  The beacon is
the quicker path (one poll, no process to start; ``salt-call`` needs 1.5 s
or more), so the hook first claims the transition as ``pending`` and gives
the beacon a grace period (its interval + 0.5 s, at most 3 s) to take it
over (``beacon``); only then does it send it itself (``sending``, then
``sent`` or ``failed``).  The beacon sends what is unclaimed or ``pending``,
leaves ``sent`` and ``sending`` alone (a ``sending`` claim at most
``PENDING_TIMEOUT`` seconds, then it sends it anyway), and sends what a hook
``failed`` to.  So a transition is one event, from the beacon when it runs
and from the hook when the beacon does not (a dead or stalled minion loop,
a long interval).

No Salt dunders here; the unit tests call these directly.
"""

from __future__ import annotations

import shlex

import lb_grammar

STATES = ("MASTER", "BACKUP", "INIT")
CLAIM_WINDOW = 60.0  # seconds a claim for the same state counts as this transition's
PENDING_TIMEOUT = 15.0  # seconds the beacon waits for a hook that is still sending
CLAIM_HOWS = ("pending", "sending", "sent", "failed", "beacon")
HOOK_GRACE_MAX = 3.0  # seconds a hook leaves a transition to the beacon, at most
SEND_TIMEOUT = 30  # seconds the hook's salt-call may take, then SIGTERM
SEND_KILL_AFTER = 5  # seconds after that SIGTERM, SIGKILL: a salt-call can hang on SIGTERM
HAPROXY_TAG = "haproxy/DOWN"


def snapshot(status: dict) -> dict[int, dict]:
    """``carp.status``'s return reduced to what a change is judged on:
    ``{vhid: {state, vip, interface, provider}}``, vhids as ints (Salt's
    JSON/msgpack may hand them over as strings)."""
    out = {}
    for vhid, g in (status or {}).items():
        if not isinstance(g, dict):
            continue
        try:
            key = int(vhid)
        except (TypeError, ValueError):
            continue
        state = g.get("state")
        out[key] = {
            "state": state if state in STATES else "INIT",
            "vip": g.get("vip"),
            "interface": g.get("interface"),
            "provider": g.get("provider"),
        }
    return out


def event(vhid: int, old: str, new: str, group: dict, now: float, source: str = "beacon") -> dict:
    """The beacon's return for one transition.  Salt prefixes the tag with
    ``salt/beacon/<minion>/carp/`` and adds ``id``."""
    return {
        "tag": f"{vhid}/{new}",
        "vhid": vhid,
        "vip": group.get("vip"),
        "interface": group.get("interface"),
        "old": old,
        "new": new,
        "provider": group.get("provider"),
        "timestamp": round(now, 3),
        "source": source,
    }


def changes(previous: dict | None, current: dict, now: float) -> list[dict]:
    """One event per group whose state differs between two snapshots, in
    vhid order.  ``previous`` None (the first pass): nothing.  A group that
    appears counts as coming from INIT, one that goes away as going to INIT."""
    if previous is None:
        return []
    out = []
    for vhid in sorted(set(previous) | set(current)):
        before, after = previous.get(vhid), current.get(vhid)
        old = before["state"] if before else "INIT"
        new = after["state"] if after else "INIT"
        if old != new:
            out.append(event(vhid, old, new, after or before, now))
    return out


# ---------------------------------------------------------------------------
# claims


def claim_text(state: str, epoch: float, how: str) -> str:
    if how not in CLAIM_HOWS:
        raise ValueError(f"claim: {how!r} is not one of {CLAIM_HOWS}")
    return f"{state} {epoch:.3f} {how}\n"


def parse_claim(text: str | None) -> dict | None:
    words = (text or "").split()
    if len(words) != 3 or words[0] not in STATES or words[2] not in CLAIM_HOWS:
        return None
    try:
        epoch = float(words[1])
    except ValueError:
        return None
    return {"state": words[0], "epoch": epoch, "how": words[2]}


def decide(claim: dict | None, state: str, now: float, waiting_since: float | None = None) -> str:
    """What the beacon does with a transition to ``state``, given the claim
    file it reads now:

    - ``fire``: nobody announced it (no claim, another state, a stale one),
      a hook claimed it but is still in its grace period (``pending``), a
      hook failed, or one has been ``sending`` for longer than
      PENDING_TIMEOUT;
    - ``skip``: announced already (``sent`` by a hook, or by the beacon);
    - ``wait``: a hook is sending it right now; ask again at the next pass.
    """
    if not claim or claim["state"] != state or now - claim["epoch"] > CLAIM_WINDOW:
        return "fire"
    if claim["how"] in ("sent", "beacon"):
        return "skip"
    if claim["how"] in ("failed", "pending"):
        return "fire"
    started = min(claim["epoch"], waiting_since if waiting_since is not None else now)
    return "fire" if now - started > PENDING_TIMEOUT else "wait"


def hook_grace(interval: float) -> float:
    """How long the hook leaves a transition to a beacon polling every
    ``interval`` seconds."""
    return round(min(float(interval) + 0.5, HOOK_GRACE_MAX), 1)


# ---------------------------------------------------------------------------
# HAProxy on a MASTER


def masters(current: dict) -> list[int]:
    return sorted(v for v, g in current.items() if g["state"] == "MASTER")


def haproxy_event(current: dict, running: bool, last_fired: float | None, now: float, refire: float) -> dict | None:
    """``haproxy/DOWN`` when this node is MASTER of a group and HAProxy does
    not run: once per outage, again every ``refire`` seconds while it lasts
    (the reactor heals it or demotes the node, which ends it either way)."""
    held = masters(current)
    if running or not held:
        return None
    if last_fired is not None and now - last_fired < refire:
        return None
    return {
        "tag": HAPROXY_TAG,
        "masters": held,
        "vips": [current[v]["vip"] for v in held],
        "provider": current[held[0]]["provider"],
        "timestamp": round(now, 3),
        "source": "beacon",
    }


def validate(config) -> tuple[bool, str]:
    """The beacon's config: a list of one-key dicts (Salt's beacon form) or
    a dict.  Keys: ``interval`` (seconds, > 0), ``haproxy`` (bool: watch
    HAProxy on a MASTER), ``haproxy_refire`` (seconds, > 0),
    ``events_dir`` (absolute path)."""
    if isinstance(config, list):
        merged = {}
        for item in config:
            if not isinstance(item, dict):
                return False, f"carp beacon: each item of the config list must be a mapping, got {item!r}"
            merged.update(item)
        config = merged
    if not isinstance(config, dict):
        return False, f"carp beacon: the config must be a list of mappings, got {type(config).__name__}"
    known = {"interval", "haproxy", "haproxy_refire", "events_dir", "disable_during_state_run", "beacon_module"}
    unknown = sorted(set(config) - known)
    if unknown:
        return False, f"carp beacon: unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
    for key in ("interval", "haproxy_refire"):
        if key in config:
            value = config[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                return False, f"carp beacon: {key} must be a number of seconds > 0, got {value!r}"
    if "haproxy" in config and not isinstance(config["haproxy"], bool):
        return False, f"carp beacon: haproxy must be true or false, got {config['haproxy']!r}"
    if "events_dir" in config and not (isinstance(config["events_dir"], str) and config["events_dir"].startswith("/")):
        return False, f"carp beacon: events_dir must be an absolute path, got {config['events_dir']!r}"
    return True, "valid carp beacon configuration"


# ---------------------------------------------------------------------------
# the hook: lb-carp-event, and FreeBSD's devd rule


def hook_config(
    minion_id: str,
    salt_call: str,
    config_dir: str,
    events_dir: str,
    provider: str,
    groups: dict[int, tuple[str, str]],
    pidfile: str = "",
    grace: float = 1.5,
    routing_hook: str = "",
    send_timeout: int = SEND_TIMEOUT,
    kill_after: int = SEND_KILL_AFTER,
) -> str:
    """lb-carp-event.conf: the settings of the hook (salt/carp/files/
    lb-carp-event.sh, which sources this file from beside itself), one sh
    assignment a line.  ``groups`` ({vhid: (interface, vip)}) fills in what
    keepalived's notify does not pass; ``pidfile`` is the minion's (on
    Linux the hook does nothing when that minion runs in another network
    namespace); ``routing_hook`` is FreeBSD's lb-routing-vip (see
    lb_routing.hook_config; Linux has none, its announcements follow the
    addresses).  Every value must be a word sh neither splits nor expands
    (lb_grammar; ValueError naming it), and is quoted besides."""
    lb_grammar.require(lb_grammar.HAPROXY_NAME, minion_id, "minion id")
    for what, value in (("salt-call", salt_call), ("config_dir", config_dir), ("events_dir", events_dir)):
        lb_grammar.require(lb_grammar.SH_PATH, value, what)
    for what, value in (("pidfile", pidfile), ("routing_hook", routing_hook)):
        if value:
            lb_grammar.require(lb_grammar.SH_PATH, value, what)
    lb_grammar.require(lb_grammar.KEEPALIVED_WORD, provider, "provider")
    for v, (i, p) in groups.items():
        lb_grammar.require(lb_grammar.DEVICE, i, f"group {v} interface")
        lb_grammar.require(lb_grammar.KEEPALIVED_WORD, p, f"group {v} vip")
    values = {
        "minion_id": minion_id,
        "salt_call": salt_call,
        "config_dir": config_dir,
        "events_dir": events_dir,
        "provider": provider,
        "pidfile": pidfile,
        "routing_hook": routing_hook,
        "grace": f"{float(grace):g}",
        "send_timeout": str(int(send_timeout)),
        "kill_after": str(int(kill_after)),
        "claim_window": str(int(CLAIM_WINDOW)),
        "groups": " ".join(f"{int(v)}={i},{p}" for v, (i, p) in sorted(groups.items())),
    }
    lines = [
        f"# lb-carp-event's settings for minion {minion_id}, rendered by lb_node.event_hook",
        "# (salt/carp/events.sls). Do not edit: the next state run writes them again.",
    ]
    return "\n".join(lines + [f"{k}={shlex.quote(v)}" for k, v in values.items()]) + "\n"


def devd_rule(hook: str) -> str:
    """FreeBSD devd: the kernel announces every CARP transition as system
    CARP, subsystem <vhid>@<interface>, type MASTER/BACKUP/INIT."""
    return f"""# Installed by salt/carp/events.sls. Do not edit.
# Every CARP transition, at once, to the master's event bus (lb-carp-event).
notify 0 {{
	match "system"		"CARP";
	match "subsystem"	"[0-9]+@[0-9a-z_.]+";
	match "type"		"(MASTER|BACKUP|INIT)";
	action "{hook} $subsystem $type";
}};
"""
