"""Run by tests/functional/test_host_sls.py inside a network namespace of the
test's own and a private mount namespace whose /etc/sysctl.d,
/etc/network/if-up.d, /etc/default, /etc/systemd/system and /etc/tmpfiles.d
are the test's directories: applies the real `host`
SLS through Salt's loader as lb-a of the lab pillar, step by step, and prints
what each step returned and what the kernel and the files held after it, as
one JSON document.  Never run by itself on a host: it writes the sysctls and
routes of the namespace it runs in.

usage: host_sls_env.py ROOT
"""

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # the repository (tests.support)

from tests.support import LAB_PILLAR, private_minion  # noqa: E402

KEYS = ("net.ipv4.ip_forward", "net.ipv4.ip_nonlocal_bind")


def sh(*argv, check=True):
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=check).stdout


def observe(plan):
    files = {}
    for path in plan["files"]:
        try:
            st = os.lstat(path)
            if os.path.islink(path):
                files[path] = {"mode": "0777", "uid": st.st_uid, "gid": st.st_gid, "content": "", "link": os.readlink(path)}
                continue
            files[path] = {"mode": f"{st.st_mode & 0o7777:04o}", "uid": st.st_uid, "gid": st.st_gid, "content": open(path).read()}
        except FileNotFoundError:
            files[path] = None
    return {
        "sysctl": {k: sh("sysctl", "-n", k).strip() for k in KEYS},
        "routes": sh("ip", "-4", "route", "show", "table", "main"),
        "files": files,
    }


def results(ret):
    out = {}
    for r in ret:
        out[r.id] = {"result": r.result, "changes": r.changes, "comment": str(r.comment), "duration": r.full_return.get("duration")}
    return out


def main(root):
    import salt.config
    from saltfactories.utils.functional import Loaders

    conf = private_minion(root, id="lb-a", pillar_roots={"base": [os.path.dirname(LAB_PILLAR)]})
    loaders = Loaders(salt.config.minion_config(conf))
    plan = loaders.modules.lb.host()
    steps = {"plan": plan, "preview": loaders.modules.lb.preview(), "before": observe(plan)}

    def apply(name, **kw):
        t0 = time.monotonic()
        ret = loaders.modules.state.sls("host", **kw)
        steps[name] = {"ret": results(ret), "after": observe(plan), "seconds": time.monotonic() - t0}

    apply("dry", test=True)
    apply("apply")
    apply("again")
    # what a user breaks by hand: a pillar route gone, forwarding off
    sh("ip", "-4", "route", "del", "198.18.4.0/23")
    sh("sysctl", "-qw", "net.ipv4.ip_forward=0")
    apply("broken_dry", test=True)
    apply("repair")
    # the boot path without Salt: ifupdown's if-up.d program (its routes in
    # /etc/default/lb-pair-routes), and the sysctl file
    sh("ip", "-4", "route", "del", "198.18.4.0/23")
    sh("ip", "-4", "route", "del", "198.19.1.0/24")
    sh("sysctl", "-qw", "net.ipv4.ip_forward=0", "net.ipv4.ip_nonlocal_bind=0")
    env = dict(os.environ, IFACE="lb-a-eth2", MODE="start", PHASE="post-up")
    script = subprocess.run(["/etc/network/if-up.d/lb-pair-routes"], env=env, capture_output=True, text=True, timeout=30)
    sh("sysctl", "-q", "-p", plan["sysctl_file"])
    steps["boot"] = {"script_rc": script.returncode, "script_err": script.stderr, "after": observe(plan)}
    json.dump(steps, sys.stdout, default=str)


if __name__ == "__main__":
    main(sys.argv[1])
