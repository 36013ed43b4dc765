"""lb-carp-event, the hook the daemons run on a transition, run for real by
/bin/sh with a stand-in for salt-call that records its arguments (the real
salt-call is exercised in tests/lab/test_events_lab.py)."""

import json
import os
import subprocess
import time

import pytest

import carp_events
import lb_render_linux
from tests.support import carp_program


def install_hook(script, *args, **kwargs):
    """lb-carp-event as salt/carp/events.sls installs it: the program, and
    its settings (carp_events.hook_config) beside it."""
    script.write_text(carp_program(lb_render_linux.EVENT_HOOK))
    script.chmod(0o755)
    (script.parent / f"{script.name}.conf").write_text(carp_events.hook_config(*args, **kwargs))


@pytest.fixture
def hook(tmp_path):
    calls = tmp_path / "calls"
    fake = tmp_path / "salt-call"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {calls}\nprintf "%s\\n" --- >> {calls}\nexit ${{FAKE_RC:-0}}\n')
    fake.chmod(0o755)
    events = tmp_path / "events"
    script = tmp_path / "lb-carp-event"
    install_hook(script, "lb-a", str(fake), "/etc/salt", str(events), "keepalived", {4: ("eth1", "198.18.2.4/24")}, grace=0.1)

    def run(*args, rc=0):
        proc = subprocess.run(
            [str(script), *args], env={"PATH": "/usr/bin:/bin", "FAKE_RC": str(rc)}, capture_output=True, text=True, timeout=30
        )
        sent = [c.strip().split("\n") for c in (calls.read_text().split("---") if calls.exists() else []) if c.strip()]
        claim = carp_events.parse_claim((events / "4").read_text()) if (events / "4").exists() else None
        return proc.returncode, sent, claim

    return run


def test_sends_the_beacons_tag_and_data_then_records_sent(hook):
    rc, sent, claim = hook("4", "MASTER")
    assert rc == 0 and len(sent) == 1
    args = sent[0]
    assert args[:5] == ["-c", "/etc/salt", "-l", "quiet", "--retcode-passthrough"]
    assert args[5:7] == ["event.send", "salt/beacon/lb-a/carp/4/MASTER"]
    data = json.loads(args[7])
    assert {k: data[k] for k in ("vhid", "vip", "interface", "old", "new", "provider", "source", "id")} == {
        "vhid": 4,
        "vip": "198.18.2.4/24",
        "interface": "eth1",
        "old": "INIT",
        "new": "MASTER",
        "provider": "keepalived",
        "source": "hook",
        "id": "lb-a",
    }
    assert claim["state"] == "MASTER" and claim["how"] == "sent"


def test_same_state_again_is_not_sent_twice_and_old_state_is_the_last_announced(hook):
    hook("4", "MASTER")
    _, sent, _ = hook("4", "MASTER")
    assert len(sent) == 1
    _, sent, claim = hook("4", "FAULT")  # keepalived's FAULT is CARP's INIT
    assert sent[-1][6] == "salt/beacon/lb-a/carp/4/INIT" and json.loads(sent[-1][7])["old"] == "MASTER"
    assert claim["state"] == "INIT"


def test_a_failed_send_is_recorded_failed_for_the_beacon(hook):
    rc, sent, claim = hook("4", "BACKUP", rc=1)
    assert rc != 0 and len(sent) == 1 and claim["how"] == "failed"
    assert carp_events.decide(claim, "BACKUP", claim["epoch"] + 1) == "fire"


def test_a_salt_call_that_ignores_sigterm_is_killed_and_the_send_recorded_failed(tmp_path):
    """A salt-call that hangs on the hook's SIGTERM (seen in the lab: Salt
    3008, stopped while opening its channel) is SIGKILLed: the hook ends,
    nothing of the send is left running, the beacon sends the transition."""
    pidfile = tmp_path / "salt-call.pid"
    fake = tmp_path / "salt-call"
    fake.write_text(f"#!/bin/sh\ntrap '' TERM\necho $$ > {pidfile}\nwhile :; do sleep 1; done\n")
    fake.chmod(0o755)
    events = tmp_path / "events"
    script = tmp_path / "lb-carp-event"
    install_hook(
        script, "lb-a", str(fake), "/etc/salt", str(events), "keepalived", {4: ("e", "v")}, grace=0.1, send_timeout=1, kill_after=1
    )
    proc = subprocess.run([str(script), "4", "MASTER"], env={"PATH": "/usr/bin:/bin"}, capture_output=True, timeout=60)
    assert proc.returncode != 0
    pid = int(pidfile.read_text())
    assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z", "salt-call still runs"
    claim = carp_events.parse_claim((events / "4").read_text())
    assert claim["state"] == "MASTER" and claim["how"] == "failed"
    assert carp_events.decide(claim, "MASTER", claim["epoch"] + 1) == "fire"


def test_the_send_is_bounded_by_sigterm_then_sigkill():
    conf = carp_events.hook_config("lb-a", "/usr/bin/salt-call", "/etc/salt", "/var/lib/lb-carp/events", "keepalived", {4: ("e", "v")})
    assert f"send_timeout={carp_events.SEND_TIMEOUT}\n" in conf and f"kill_after={carp_events.SEND_KILL_AFTER}\n" in conf
    assert 'timeout -k "$kill_after" "$send_timeout" "$salt_call" ' in carp_program(lb_render_linux.EVENT_HOOK)


def test_the_settings_are_quoted_sh_assignments_of_checked_values(tmp_path):
    conf = carp_events.hook_config(
        "lb-a",
        "/usr/bin/salt-call",
        "/etc/salt",
        "/var/lib/lb-carp/events",
        "keepalived",
        {5: ("eth2", "10.0.0.5/24"), 4: ("eth1", "10.0.0.4/24")},
    )
    assert "groups='4=eth1,10.0.0.4/24 5=eth2,10.0.0.5/24'\n" in conf and "pidfile=''\n" in conf
    # sourced by sh, it sets exactly these variables
    out = subprocess.run(
        ["sh", "-c", '. "$1"; printf "%s|%s|%s" "$minion_id" "$groups" "$claim_window"', "sh", "/dev/stdin"],
        input=conf,
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert out.stdout == f"lb-a|4=eth1,10.0.0.4/24 5=eth2,10.0.0.5/24|{int(carp_events.CLAIM_WINDOW)}"
    # a hook without its settings says so and sends nothing
    script = tmp_path / "lb-carp-event"
    script.write_text(carp_program(lb_render_linux.EVENT_HOOK))
    script.chmod(0o755)
    res = subprocess.run([str(script), "4", "MASTER"], capture_output=True, text=True, timeout=10)
    assert res.returncode == 1 and f"no settings in {script}.conf" in res.stderr


def test_the_beacon_taking_it_in_the_grace_period_means_no_send(tmp_path):
    calls = tmp_path / "calls"
    fake = tmp_path / "salt-call"
    fake.write_text(f"#!/bin/sh\necho called >> {calls}\n")
    fake.chmod(0o755)
    events = tmp_path / "events"
    script = tmp_path / "lb-carp-event"
    install_hook(script, "lb-a", str(fake), "/etc/salt", str(events), "keepalived", {4: ("e", "v")}, grace=1.0)
    proc = subprocess.Popen([str(script), "4", "MASTER"])
    for _ in range(40):
        if (events / "4").exists():
            break
        time.sleep(0.02)
    assert carp_events.parse_claim((events / "4").read_text())["how"] == "pending"
    (events / "4").write_text(carp_events.claim_text("MASTER", time.time(), "beacon"))  # what the beacon does
    assert proc.wait(timeout=10) == 0
    assert not calls.exists()
    assert carp_events.parse_claim((events / "4").read_text())["how"] == "beacon"


def test_grace_follows_the_beacon_interval():
    assert carp_events.hook_grace(1) == 1.5
    assert carp_events.hook_grace(30) == carp_events.HOOK_GRACE_MAX


def test_devd_style_and_ucarp_style_arguments(hook):
    _, sent, _ = hook("4@vtnet1", "BACKUP")
    assert json.loads(sent[-1][7])["interface"] == "vtnet1"
    _, sent, _ = hook("4", "MASTER", "eth9", "198.18.2.4/24")
    assert json.loads(sent[-1][7])["interface"] == "eth9"
    rc, sent2, _ = hook("x4", "MASTER")
    assert rc == 0 and sent2 == sent  # not a vhid: ignored


@pytest.mark.skipif(os.geteuid() != 0, reason="unshare --net needs root")
def test_a_hook_of_a_minion_in_another_network_namespace_does_nothing(tmp_path):
    calls = tmp_path / "calls"
    fake = tmp_path / "salt-call"
    fake.write_text(f"#!/bin/sh\necho called >> {calls}\n")
    fake.chmod(0o755)
    other = subprocess.Popen(["unshare", "--net", "sleep", "30"])
    try:
        for pid, sent in ((other.pid, False), (os.getpid(), True)):
            time.sleep(0.2)
            pidfile = tmp_path / "minion.pid"
            pidfile.write_text(f"{pid}\n")
            script = tmp_path / "lb-carp-event"
            install_hook(script, "lb-a", str(fake), "/etc/salt", str(tmp_path / f"ev{pid}"), "keepalived", {4: ("e", "v")}, str(pidfile))
            subprocess.run([str(script), "4", "MASTER"], timeout=30, check=False)
            assert calls.exists() is sent, pid
    finally:
        other.kill()
        other.wait(timeout=5)


def test_devd_rule_names_the_hook():
    rule = carp_events.devd_rule("/usr/local/sbin/lb-carp-event")
    assert 'match "system"\t\t"CARP";' in rule
    assert 'action "/usr/local/sbin/lb-carp-event $subsystem $type";' in rule


def test_runs_the_routing_hook_first_with_the_normalized_state(tmp_path):
    calls = tmp_path / "routing-calls"
    routing = tmp_path / "lb-routing-vip"
    routing.write_text(f'#!/bin/sh\necho "$*" >> {calls}\n')
    routing.chmod(0o755)
    fake = tmp_path / "salt-call"
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    script = tmp_path / "lb-carp-event"
    install_hook(
        script,
        "lb-a",
        str(fake),
        "/etc/salt",
        str(tmp_path / "events"),
        "keepalived",
        {4: ("eth1", "198.18.2.4/24")},
        grace=0.1,
        routing_hook=str(routing),
    )
    for args in (("4", "MASTER"), ("4", "FAULT"), ("4@eth1", "BACKUP"), ("x", "MASTER")):
        subprocess.run([str(script), *args], env={"PATH": "/usr/bin:/bin"}, capture_output=True, timeout=30)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and (not calls.exists() or len(calls.read_text().splitlines()) < 3):
        time.sleep(0.05)
    assert sorted(calls.read_text().splitlines()) == ["4 BACKUP", "4 INIT", "4 MASTER"]
