"""salt-ssh, in the lab: the haproxy state applied to a load balancer with no
running minion, through the Saltfile from the repo root (docs/agentless.md).

The host without a minion is lb-b: this module stops its salt-minion (by
the pid the lab recorded) for its duration, and starts it again afterwards
in lb-b (recorded in .lab/state.json), even when a test fails.  lb-b's sshd
(lab/sshcfg.py, started by the lab's supervisor) is what salt-ssh reaches.

- with haproxy.cfg gone, `salt-ssh lb-b state.apply haproxy` writes it back,
  byte for byte what the master's run wrote, and a second run reports no
  changes;
- `test=True` on a drifted file reports what would change and changes
  nothing;
- a highstate over salt-ssh (the top file with _wrapper/lb.py's lb.roles)
  gives lb-b HAProxy's states, and nothing to change;
- none of the pillar's secrets (as the master serves them) in salt-ssh's
  output, in any process's command line during the runs (base64 blobs
  decoded: salt-ssh passes its shim that way), in salt-ssh's logs and cache
  or in the target's thin directory logs; the target's thin directory is
  root's and 0700.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from lab import REPO, control, saltcfg, sshcfg, state
from lab.events_tools import apply

sys.path.insert(0, str(REPO / "_utils"))
import lb_secrets  # noqa: E402

HOST = "lb-b"
SALT_SSH = saltcfg.BIN / "salt-ssh"
CONFIG_ID = "haproxy_section_|-lb_haproxy_config_|-/etc/haproxy/haproxy.cfg_|-managed"
B64 = re.compile(r'b64decode\("""([A-Za-z0-9+/=\s]+)"""\)')

_restarted: list[subprocess.Popen] = []  # kept referenced: the minion this module started again


def private(path: str) -> Path:
    """A file in lb-b's private directories, seen from outside."""
    return state.HOSTS_DIR / HOST / path.lstrip("/")


def salt_ssh(*args: str, target: str = HOST, timeout: float = 600) -> tuple[subprocess.CompletedProcess, dict]:
    """`salt-ssh lb-b ARGS --out=json` from the repo root (the Saltfile)."""
    proc = subprocess.run(
        [str(SALT_SSH), target, *args, "--out=json", "--static"], cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    try:
        ret = json.loads(proc.stdout)
    except json.JSONDecodeError:
        log = sshcfg.SSH_DIR / target / "sshd.log"
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:]) if log.exists() else f"(no {log})"
        raise AssertionError(
            f"salt-ssh {' '.join(args)}: rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}\n{target}'s sshd log:\n{tail}"
        ) from None
    return proc, ret


def states(ret: dict) -> dict:
    r = ret.get(HOST)
    assert isinstance(r, dict) and r and all(isinstance(v, dict) and "result" in v for v in r.values()), ret
    return r


def secret_needles(pillar_lb: dict) -> list[str]:
    """The pillar's secrets (lb_secrets), a PEM key by each of its lines."""
    out = set()
    for value in lb_secrets.values(pillar_lb):
        lines = [ln.strip() for ln in value.splitlines() if ln.strip() and not ln.startswith("-----")]
        out.update(lines if len(lines) > 1 else [value])
    return sorted(out, key=len, reverse=True)


def leaks(text: str, needles: list[str]) -> list[str]:
    """The needles found in `text` (a short one only as a whole word)."""
    found = []
    for s in needles:
        if len(s) >= 12:
            if s in text:
                found.append(s)
        elif re.search(rf"(?<![\w$./]){re.escape(s)}(?![\w$./])", text):
            found.append(s)
    return found


def decoded(cmdline: str) -> str:
    """A command line with its base64 blobs (salt-ssh's shim) decoded."""
    out = [cmdline]
    for blob in B64.findall(cmdline):
        try:
            out.append(base64.b64decode("".join(blob.split())).decode("utf-8", "replace"))
        except (binascii.Error, ValueError):
            pass
    return "\n".join(out)


class CmdlineSampler(threading.Thread):
    """Every process's command line (/proc/*/cmdline, the machine's: the
    lab hosts share its pid namespace), sampled until stopped (bounded)."""

    def __init__(self):
        super().__init__(daemon=True)
        self.halt = threading.Event()
        self.seen: set[str] = set()
        self.samples = 0

    def run(self):
        end = time.monotonic() + 900
        while not self.halt.is_set() and time.monotonic() < end:
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
                    except OSError:
                        continue
                    if raw:
                        self.seen.add(raw.replace(b"\0", b" ").decode(errors="replace"))
            self.samples += 1
            time.sleep(0.02)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.halt.set()
        self.join(timeout=10)


def _minion_record() -> dict:
    return state.load()["daemons"][f"salt-minion@{HOST}"]


def _minion_pids() -> list[int]:
    """salt-minion processes in lb-b's network namespace."""
    ns = state.lab_namespaces(state.load())
    lb_b = {k for k, v in ns.items() if v == HOST}
    out = []
    for rec in state.processes_in(lb_b):
        try:
            cmd = Path(f"/proc/{rec['pid']}/cmdline").read_bytes()
        except OSError:
            continue
        if b"salt-minion" in cmd:
            out.append(rec["pid"])
    return out


def _stop_minion() -> None:
    state.stop([_minion_record()], grace=20)
    deadline = time.monotonic() + 20
    while _minion_pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _minion_pids(), f"{HOST}'s salt-minion did not stop"


def _start_minion() -> None:
    """lb-b's salt-minion again, as the supervisor starts it (mnexec -da: in
    lb-b's namespaces, its own session), recorded in .lab/state.json."""
    if _minion_pids():
        return
    cmd = saltcfg.minion_command(HOST)
    log = saltcfg.MINIONS_DIR / HOST / "console.log"
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            ["mnexec", "-da", str(control.host_pid(HOST)), *cmd], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
        )
    _restarted.append(proc)
    st = state.load()
    st["daemons"][f"salt-minion@{HOST}"] = state.record(proc.pid, group=True, host=HOST, cmd=cmd)
    state.save(st)
    saltcfg.wait_for_minions([HOST], timeout=90)


@pytest.fixture(scope="module")
def minionless(lab):
    if f"sshd@{HOST}" not in lab.state["daemons"]:
        pytest.skip("the running lab has no sshd (it predates lab/sshcfg.py): take it down and up again")
    assert state.alive(lab.state["daemons"][f"sshd@{HOST}"])
    sshcfg.write_salt_ssh_config()  # from the master's config as it is now (a lab up before a change to it)
    # the pillar's secrets as the master serves them (decrypted), while the minion answers
    pillar_lb = saltcfg.salt_json(HOST, "pillar.get", "lb", "unmask=True")[HOST]
    needles = secret_needles(pillar_lb)
    assert len(needles) >= 6, needles
    # the reference: the haproxy state as the master applies it
    ret = apply(HOST, "haproxy")
    assert all(v["result"] for v in ret.values()), ret
    cfg = private("/etc/haproxy/haproxy.cfg")
    reference = cfg.read_bytes()
    mode = cfg.stat().st_mode & 0o7777
    _stop_minion()
    try:
        yield {"needles": needles, "reference": reference, "mode": mode}
    finally:
        try:
            if not cfg.exists() or cfg.read_bytes() != reference:
                cfg.write_bytes(reference)  # what the master's run wrote
                cfg.chmod(mode)
        finally:
            for host in sshcfg.ssh_hosts(lab.plan):  # the thin directories (lb-a's: the 'lb*' glob)
                subprocess.run(["rm", "-rf", str(state.HOSTS_DIR / host / sshcfg.THIN_DIR.lstrip("/"))], timeout=30)
            _start_minion()
        ret = apply(HOST, "haproxy")  # the minion's own view again: nothing to change
        assert all(v["result"] for v in ret.values()), ret


def test_lb_b_has_no_minion_and_sshd_listens_on_its_management_address_only(lab, minionless):
    assert _minion_pids() == []
    assert saltcfg.salt_json(HOST, "test.ping", "-t", "5").get(HOST) is not True
    listening = control.run(HOST, "ss", "-Hltnp").stdout.splitlines()
    sshd = [line.split()[3] for line in listening if '"sshd"' in line]
    assert sshd == [f"{sshcfg.ssh_hosts(lab.plan)[HOST]}:{sshcfg.SSHD_PORT}"], listening
    # lab-only: its own config and host key, under .lab/ssh
    cmd = state.load()["daemons"][f"sshd@{HOST}"]["cmd"]
    assert cmd == sshcfg.sshd_command(HOST) and str(sshcfg.SSH_DIR) in cmd[-1]


def test_salt_ssh_restores_haproxy_cfg_and_a_second_run_changes_nothing(minionless):
    cfg = private("/etc/haproxy/haproxy.cfg")
    cfg.unlink()  # drift: the file is gone (HAProxy runs on with what it read)
    root_ssh_before = os.path.lexists("/root/.ssh")
    with CmdlineSampler() as sampler:
        first, ret1 = salt_ssh("state.apply", "haproxy")
        second, ret2 = salt_ssh("state.apply", "haproxy")
    s1, s2 = states(ret1), states(ret2)

    assert all(v["result"] is True for v in s1.values()), {k: v["comment"] for k, v in s1.items()}
    assert s1[CONFIG_ID]["changes"], s1[CONFIG_ID]
    assert cfg.read_bytes() == minionless["reference"], "salt-ssh wrote another haproxy.cfg than the master's run"
    assert cfg.stat().st_mode & 0o7777 == minionless["mode"]
    status = control.run(HOST, "cat", "/run/haproxy.pid")
    assert status.returncode == 0 and status.stdout.strip().isdigit()
    assert os.path.exists(f"/proc/{status.stdout.strip()}"), "HAProxy is not running in lb-b"

    assert all(v["result"] is True and not v["changes"] for v in s2.values()), {k: v["changes"] for k, v in s2.items()}
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr

    needles = minionless["needles"]
    assert sampler.samples > 20
    assert any("salt-call" in c and "state.pkg" in c for c in sampler.seen), "the sampler never saw the remote state run"
    in_ps = {c[:200]: leaks(decoded(c), needles) for c in sampler.seen}
    assert not {c: found for c, found in in_ps.items() if found}
    for proc in (first, second):
        assert not leaks(proc.stdout + proc.stderr, needles)
    # salt-ssh's own files (config, logs, job cache) and the target's thin
    # directory (its salt-call's log and cache); tarballs aside: the thin
    # and the modules are code, and the state tarball (the lowstate and this
    # host's pillar, which salt-ssh leaves on the target) is root's, 0600
    thin = private(sshcfg.THIN_DIR)
    assert thin.is_dir() and thin.stat().st_uid == 0 and thin.stat().st_mode & 0o7777 == 0o700
    state_tar = thin / "salt_state.tgz"
    assert not state_tar.exists() or state_tar.stat().st_mode & 0o077 == 0
    scanned = 0
    for root in (sshcfg.SSH_DIR, thin):
        for path in root.rglob("*"):
            if path.is_file() and not path.name.endswith(".tgz"):
                scanned += 1
                assert not leaks(path.read_bytes().decode(errors="replace"), needles), path
    assert scanned > 10
    assert os.path.lexists("/root/.ssh") == root_ssh_before, "salt-ssh or ssh touched /root/.ssh"


def test_test_true_reports_a_drift_and_changes_nothing(minionless):
    cfg = private("/etc/haproxy/haproxy.cfg")
    text = minionless["reference"].decode()
    drifted = re.sub(r"(\bweight )(\d+)", lambda m: f"{m.group(1)}{int(m.group(2)) - 10}", text, count=1)
    assert drifted != text, "no server weight in haproxy.cfg to change"
    cfg.write_text(drifted)
    before = cfg.stat()

    proc, ret = salt_ssh("state.apply", "haproxy", "test=True")
    s = states(ret)
    assert s[CONFIG_ID]["result"] is None and s[CONFIG_ID]["changes"], s[CONFIG_ID]
    assert "would be updated" in s[CONFIG_ID]["comment"]
    assert all(v["result"] is not False for v in s.values()), {k: v["comment"] for k, v in s.items()}
    assert cfg.read_text() == drifted and cfg.stat().st_mtime_ns == before.st_mtime_ns, "test=True changed haproxy.cfg"
    assert not leaks(proc.stdout + proc.stderr, minionless["needles"])

    # and the real run puts the master's file back; then test=True has nothing to report
    _, ret = salt_ssh("state.apply", "haproxy")
    assert all(v["result"] is True for v in states(ret).values())
    assert cfg.read_bytes() == minionless["reference"]
    _, ret = salt_ssh("state.apply", "haproxy", "test=True")
    assert all(v["result"] is True and not v["changes"] for v in states(ret).values()), states(ret)


def test_a_highstate_over_salt_ssh_applies_the_agentless_states(minionless):
    """The top file under salt-ssh: lb.roles is _wrapper/lb.py's (the pillar
    is where salt-ssh compiles), and an LB gets the host's states (sysctls,
    routes: _wrapper/lb.py's lb.host) and HAProxy's only."""
    _, roles = salt_ssh("lb.roles")
    assert roles[HOST]["lb"] == ["edge"] and roles[HOST]["agentless"] is True, roles
    # the roster's glob, as an operator types it: both nodes, host and HAProxy only
    _, top = salt_ssh("state.show_top", target="lb*")
    assert top == {"lb-a": {"base": ["host", "haproxy"]}, HOST: {"base": ["host", "haproxy"]}}, top
    proc, ret = salt_ssh("state.apply", "test=True")
    s = states(ret)
    assert {v["__sls__"] for v in s.values()} == {"host", "haproxy"}, sorted(s)
    assert all(v["result"] is True and not v["changes"] for v in s.values()), {k: v["changes"] for k, v in s.items()}
    assert not leaks(proc.stdout + proc.stderr, minionless["needles"])
