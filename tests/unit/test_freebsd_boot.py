"""FreeBSD's boot path, run on Linux as far as that goes.

The rendered /etc/rc.conf, /etc/rc.conf.d/netif and /etc/rc.conf.d/routing
go through FreeBSD's own rc code (rc.subr, network.subr, defaults/rc.conf,
rc.d/netif's netif_common and rc.d/routing's static_inet, FreeBSD
12.1-RELEASE, pinned in tests/fixtures/freebsd/rc.sha256) under dash, with
`ifconfig`, `sysctl`, `route` and `logger` replaced by small scripts that
record their argv and answer what rc asks in FreeBSD's output shapes
(`ifconfig -l`, `ifconfig -n IF`, `ifconfig IF` from
tests/fixtures/freebsd/fbsd14-vnet0-backup.txt, `sysctl -n kern.features.*`).

What this proves: the `ifconfig` command lines rc runs at boot are exactly
the ones the carp module runs live (carp_common.ifconfig_add), for every
group of the lab and seed pillars and for passwords made of every character
the validator accepts; the `route add` lines are the pillar's routes; and
sourcing the files runs no command and prints no warning.  What it does
not prove: anything about FreeBSD's kernel or its sh (dash stands in for
it: both are ash; `setvar`, a FreeBSD sh builtin, is given as a function).

FreeBSD's rc files are not in this repository: tools/freebsd-rc-fixtures.sh
puts them in tests/fixtures/freebsd/rc/ from a git repository holding them,
checked against the pinned sha256.  Without them these tests skip, saying so.
"""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import subprocess

import pytest

import carp_common
import lb_render
import lb_topology
import lb_view
from tests.support import LAB_PILLAR, REPO, SEED_PILLAR

FIXTURES = os.path.join(REPO, "tests", "fixtures", "freebsd")
RC = os.path.join(FIXTURES, "rc")
RC_FILES = ("network.subr", "rc.subr", "rc.d/netif", "rc.d/routing", "defaults/rc.conf")
DASH = shutil.which("dash")


def _pinned() -> dict[str, str]:
    out = {}
    with open(os.path.join(FIXTURES, "rc.sha256")) as fh:
        for line in fh:
            digest, name = line.split()
            out[name.removeprefix("rc/")] = digest
    return out


def _missing() -> str | None:
    if DASH is None:
        return "dash is not installed (tools/apt-packages.txt)"
    pins = _pinned()
    for f in RC_FILES:
        path = os.path.join(RC, f)
        if not os.path.exists(path):
            return f"FreeBSD's rc files are not in {RC}: run tools/freebsd-rc-fixtures.sh GIT_DIR [REV]"
        with open(path, "rb") as fh:
            if hashlib.sha256(fh.read()).hexdigest() != pins[f]:
                raise AssertionError(f"{path} is not the pinned FreeBSD 12.1 file (tests/fixtures/freebsd/rc.sha256)")
    return None


pytestmark = pytest.mark.skipif(_missing() is not None, reason=str(_missing()))

# What rc's own code is run as: netif_common and static_inet come from the
# rc.d scripts themselves (their function text), the rest is sourced as is.
DRIVER = r"""
stubs=$1 rc=$2 etc=$3
PATH=$stubs:$PATH
setvar() { eval "$1=\$2"; }   # FreeBSD sh's builtin, which dash lacks
. "$rc/rc.subr"
. "$rc/defaults/rc.conf"
. "$etc/rc.conf"
. "$etc/rc.conf.d/netif"
. "$etc/rc.conf.d/routing"
# network.subr as is, but for clone_up (cloned_interfaces, which this
# product does not use and netif_common does not call): its `;&` (case
# fall-through, FreeBSD sh has it) is a syntax error to dash 0.5.12
sed '/^clone_up()/,/^}/d' "$rc/network.subr" > "$etc/network.subr"
. "$etc/network.subr"
IFCONFIG_CMD=$stubs/ifconfig
SYSCTL=$stubs/sysctl
SYSCTL_N="$SYSCTL -n"
SYSCTL_W=$SYSCTL
ROUTE_CMD=$stubs/route
# no `/sbin/ifconfig IF` listing after netif (check_startmsgs): that path
# is absolute, so it would run the host's
rc_quiet=YES rc_startmsgs=NO
eval "$(sed -n '/^netif_common()/,/^}/p' "$rc/rc.d/netif")"
eval "$(sed -n '/^get_fibmod()/,/^}/p;/^static_inet()/,/^}/p' "$rc/rc.d/routing")"
netif_common ifn_start
static_inet add
"""

RECORD = r"""#!/bin/sh
{ printf '%s' "${0##*/}"; for a; do printf '\t%s' "$a"; done; printf '\n'; } >> "$STUB_LOG"
"""

IFCONFIG = (
    RECORD
    + r"""
case $1 in
-l) echo "$STUB_IFACES"; exit 0 ;;
-n) set -- "$2" ;;
esac
if [ $# -eq 1 ]; then
	for i in $STUB_IFACES; do
		if [ "$i" = "$1" ]; then
			sed "s/vnet0/$1/g" "$STUB_IFCONFIG_OUTPUT"
			exit 0
		fi
	done
	echo "ifconfig: interface $1 does not exist" >&2
	exit 1
fi
exit 0
"""
)

SYSCTL = (
    RECORD
    + r"""
[ "$1" = -n ] && shift
case $1 in
kern.features.inet|kern.features.inet6) echo 1 ;;
net.fibs) echo 1 ;;
net.inet6.ip6.dad_count) echo 1 ;;
*) echo "sysctl: unknown oid '$1'" >&2; exit 1 ;;
esac
"""
)


def _write(path, text, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text)
    os.chmod(path, mode)


def boot(tmp_path, files: dict, devices: list[str]) -> dict:
    """Run rc's netif and static routes on the rendered files; the argv of
    every stub call, in order, and what the shell printed."""
    stubs, etc = tmp_path / "stubs", tmp_path / "etc"
    # kenv: rc.subr asks `kenv -q rc.debug` when sourced (unset: exit 1)
    stubbed = (
        ("ifconfig", IFCONFIG),
        ("sysctl", SYSCTL),
        ("route", RECORD),
        ("logger", RECORD),
        ("sleep", RECORD),
        ("kenv", RECORD + "exit 1\n"),
    )
    for name, text in stubbed:
        _write(str(stubs / name), text, 0o755)
    for path in ("/etc/rc.conf", "/etc/rc.conf.d/netif", "/etc/rc.conf.d/routing"):
        _write(str(etc / path.removeprefix("/etc/")), files[path].content)
    _write(str(tmp_path / "driver.sh"), DRIVER)
    log = tmp_path / "calls"
    log.write_text("")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/nonexistent-home",  # so a `~` that expanded would show
        "STUB_LOG": str(log),
        "STUB_IFACES": " ".join(["lo0", *devices]),
        "STUB_IFCONFIG_OUTPUT": os.path.join(FIXTURES, "fbsd14-vnet0-backup.txt"),
    }
    # cwd: an empty directory, so a word that globbed would show
    res = subprocess.run(
        [DASH, str(tmp_path / "driver.sh"), str(stubs), RC, str(etc)],
        cwd=str(tmp_path),
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    calls = [line.split("\t") for line in log.read_text().splitlines()]
    return {"calls": calls, "rc": res.returncode, "stdout": res.stdout, "stderr": res.stderr}


def _model(path):
    return lb_topology.load(lb_topology.load_file(path))


def _devices(pair, node_id):
    return [lb_view.device(i, "FreeBSD") for i in pair["nodes"][node_id]["interfaces"].values()]


def live_argvs(model, node_id):
    """What the carp module runs to add every group of the node."""
    _, groups = carp_common.node_groups(model, node_id, "FreeBSD")
    return [carp_common.ifconfig_add(g) for g in groups]


def carp_calls(calls):
    return [c for c in calls if c[0] == "ifconfig" and "vhid" in c]


def _check_node(tmp_path, model, node_id):
    pair, _ = lb_topology.find_node(model, node_id)
    files = lb_render.render_node(model, node_id, "FreeBSD")
    out = boot(tmp_path, files, _devices(pair, node_id))
    assert out["rc"] == 0, out
    assert out["stderr"] == "", out["stderr"]
    assert not [c for c in out["calls"] if c[0] == "logger"], out["calls"]
    # rc adds the CARP aliases per interface in alias-number order; the
    # module per group: compare as multisets of whole argv
    assert sorted(carp_calls(out["calls"])) == sorted(live_argvs(model, node_id))
    # every interface's own address, as the pillar gives it
    node = pair["nodes"][node_id]
    for iface in node["interfaces"].values():
        want = ["ifconfig", lb_view.device(iface, "FreeBSD"), "inet", str(iface["address"]), "netmask", str(iface["cidr"].netmask)]
        assert want in out["calls"], out["calls"]
    routes = [c for c in out["calls"] if c[0] == "route"]
    want_routes = [["route", "add", "-inet", "127.0.0.1", "-iface", "lo0"]]
    want_routes += [["route", "add", "-net", str(r["destination"]), str(r["gateway"])] for r in pair["routes"].values()]
    assert routes == want_routes
    return out


@pytest.mark.parametrize("pillar", [LAB_PILLAR, SEED_PILLAR], ids=["lab", "seed"])
@pytest.mark.parametrize("node_id", ["lb-a", "lb-b"])
def test_boot_runs_the_live_ifconfig_lines(tmp_path, pillar, node_id):
    _check_node(tmp_path, _model(pillar), node_id)


def _with_passwords(passwords, devices=None):
    raw = lb_topology.load_file(SEED_PILLAR)
    raw = copy.deepcopy(raw)
    pair = raw["pairs"]["edge"]
    for (_vhid, g), pw in zip(sorted(pair["carp"]["groups"].items()), passwords, strict=False):
        g["password"] = pw
    for node_id, devs in (devices or {}).items():
        for ifname, dev in devs.items():
            pair["nodes"][node_id]["interfaces"][ifname]["device"] = dev
    return lb_topology.load(raw)


ALLOWED_MARKS = lb_topology.CARP_PASSWORD_MARKS


def test_the_allowed_characters_are_what_the_validator_accepts():
    printable = [chr(c) for c in range(0x20, 0x7F)]
    accepted = {ch for ch in printable if lb_topology.CARP_PASSWORD_RE.fullmatch(ch)}
    assert accepted == set(ALLOWED_MARKS) | {ch for ch in printable if ch.isalnum()}


@pytest.mark.parametrize("node_id", ["lb-a", "lb-b"])
def test_passwords_at_the_edge_survive_the_boot(tmp_path, node_id):
    # every mark alone, at the start, and every mark next to a hex digit
    # (network.subr's range test looks at `[0-9a-fA-F]-`); 19 bytes, the
    # longest CARP keeps; several aliases on one interface, so the alias
    # lines take both of ifalias_af_common's paths (eval, and the last one
    # without)
    marks = ALLOWED_MARKS
    passwords = [
        marks,  # 11 marks, each at some position
        "!" + "f" * 18,
        f"a{marks}Z09"[:19],
        "".join(f"F{m}" for m in marks)[:19],
    ]
    model = _with_passwords(passwords)
    assert [g["password"] for _, g in sorted(model["pairs"]["edge"]["carp"]["groups"].items())] == passwords
    _check_node(tmp_path, model, node_id)


@pytest.mark.parametrize("mark", list(ALLOWED_MARKS))
def test_each_allowed_mark_survives_the_boot_anywhere_in_a_password(tmp_path, mark):
    # alone, first, after a hex digit, last: the positions where sh's eval
    # (a leading `~`, `#`, `!`), its globbing and network.subr's range test
    # (`[0-9a-fA-F]-`) would act
    passwords = [mark, f"{mark}Ab1", f"f{mark}9", f"9{mark}"]
    _check_node(tmp_path, _with_passwords(passwords), "lb-a")


def test_a_vlan_device_gets_the_variable_rc_looks_up(tmp_path):
    model = _with_passwords([], devices={"lb-a": {"vip": "em1.100", "mgmt": "lb-a-mgmt"}})
    files = lb_render.render_node(model, "lb-a", "FreeBSD")
    netif = files["/etc/rc.conf.d/netif"].content
    assert "ifconfig_em1_100_alias0=" in netif and "ifconfig_lb_a_mgmt=" in netif
    out = _check_node(tmp_path, model, "lb-a")
    assert any(c[:2] == ["ifconfig", "em1.100"] and "vhid" in c for c in out["calls"])


# (password, the key rc hands ifconfig instead) for passwords the old
# validator accepted; "abc-def" is left out: it recurses until the shell dies
CHANGED_AT_BOOT = [
    ("~root", "/root"),  # tilde expansion in eval
    ("x*", "xglob"),  # pathname expansion (a file named xglob in the cwd)
    ("a;true", "a"),  # `;` ends the command in eval
    ("p|true", "p"),  # a pipe
]


@pytest.mark.parametrize("bad,key", CHANGED_AT_BOOT, ids=[c[0] for c in CHANGED_AT_BOOT])
def test_a_password_rc_would_change_is_refused(tmp_path, bad, key):
    """Why the validator refuses these, shown on rc itself: at boot the key
    would not be the one the carp module sets live."""
    model = _with_passwords(["passwd4"])
    files = lb_render.render_node(model, "lb-a", "FreeBSD")
    text = files["/etc/rc.conf.d/netif"].content.replace("pass passwd4 ", f"pass {bad} ")
    changed = dict(files, **{"/etc/rc.conf.d/netif": lb_view.File(text)})
    pair, _ = lb_topology.find_node(model, "lb-a")
    (tmp_path / "xglob").write_text("")
    out = boot(tmp_path, changed, _devices(pair, "lb-a"))
    keys = [c[c.index("pass") + 1] for c in carp_calls(out["calls"]) if "pass" in c]
    assert key in keys and bad not in keys, keys
    with pytest.raises(lb_topology.TopologyError, match="password"):
        _with_passwords([bad])
