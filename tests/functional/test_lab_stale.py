"""`python -m lab up` on a machine where an earlier lab left interfaces
(another clone's lab, or one whose record was lost): Mininet would fail on
the first name it finds taken ("RTNETLINK answers: File exists"), so `up`
deletes the plan's root-namespace names first (lab/state.delete_interfaces),
with the machine's lab lock held and no lab recorded.

Run in a private network and mount namespace (`unshare -n -m`, with its
own /sys): the machine's own lab, if one is up, is not touched."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.support import REPO

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare")

SCRIPT = """
import json, subprocess
from pathlib import Path
from lab import PILLAR, state
from lab.plan import plan_from_pillar
plan = plan_from_pillar(PILLAR)
def ip(*a):
    subprocess.run(["ip", *a], check=True, capture_output=True, timeout=10)
ip("link", "add", plan.master.device, "type", "veth", "peer", "name", plan.master.port)
ip("link", "add", plan.bridges[0], "type", "bridge")
ip("link", "add", "keep-me", "type", "veth", "peer", "name", "keep-me2")
removed = state.delete_interfaces(plan.bridges + plan.root_links)
left = sorted(p.name for p in Path("/sys/class/net").iterdir())
print(json.dumps({"removed": removed, "left": left, "again": state.delete_interfaces(plan.bridges + plan.root_links)}))
"""


def test_up_removes_what_an_earlier_lab_left_and_nothing_else():
    from lab import PILLAR
    from lab.plan import plan_from_pillar

    plan = plan_from_pillar(PILLAR)
    r = subprocess.run(
        ["unshare", "-n", "-m", "sh", "-c", 'mount -t sysfs sysfs /sys && exec "$0" -c "$1"', sys.executable, SCRIPT],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    # a veth's two ends go together: deleting the bridge port removes the master's end
    assert out["removed"] == [plan.bridges[0], plan.master.port]
    assert set(out["left"]) == {"lo", "keep-me", "keep-me2"}
    assert out["again"] == []
