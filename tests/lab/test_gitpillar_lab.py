"""Pillar edits via git, in the lab: the lab master reads its pillar from
.lab/pillar.git (git_pillar, secrets GPG-encrypted; lab/pillar_repo.py),
whose hooks gate a push (tools/pillar_gate.py) and apply it
(tools/pillar_hooks.py).

- a commit adding an HTTP backend, pushed, ends with that server in HAProxy
  on both LB nodes, with no failed request from a client looping through
  the VIP meanwhile; the state runs are jobs on the master (jobs.lookup_jid);
- a commit with a broken topology, or one only `haproxy -c` refuses, is
  rejected at the push with the pillar path of the error, and the LBs'
  files stay byte for byte as they were;
- the secret scan: none of the pillar's secrets in clear text in any file
  the states wrote on the lab hosts, in `ps` during a state run, in the
  master's job cache, or in the master's and minions' logs, except in the
  files whose job is to hold them (listed, with their modes and owners).

Every push is reverted (the original pillar pushed back) even when a test fails.
"""

from __future__ import annotations

import fnmatch
import grp
import json
import os
import pwd
import re
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from lab import LAB_DIR, PILLAR, control, pillar_repo, saltcfg, state
from lab.carp_tools import LBS, all_on, holders, wait_for
from lab.events_tools import SETTLE, apply, salt_run

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "_utils"))
import lb_secrets  # noqa: E402
import lb_topology  # noqa: E402

HTTP_VIP = "198.18.2.5"
POOL = "web_a"
NEW_SERVER = "http_srv-3"
NEW_ADDRESS = "198.18.6.3"  # web-3, also in web_b: it serves on port 80
JOB_RE = re.compile(r"remote:\s+(\S+): state\.apply (\S+): jid (\d{20}): (.*)")

CLIENT_LOOP = r"""
import json, os, sys, time, urllib.request
url, stop, limit = sys.argv[1], sys.argv[2], float(sys.argv[3])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
ok = failed = 0
errors = []
end = time.monotonic() + limit
while time.monotonic() < end and not os.path.exists(stop):
    try:
        with opener.open(url, timeout=2) as r:
            r.read()
            if r.status == 200:
                ok += 1
            else:
                failed += 1
                errors.append(f"{time.time():.3f} HTTP {r.status}")
    except Exception as exc:
        failed += 1
        errors.append(f"{time.time():.3f} {exc}")
    time.sleep(0.02)
print(json.dumps({"ok": ok, "failed": failed, "errors": errors[:20]}))
"""


def _plain() -> str:
    return PILLAR.read_text()


def _pair() -> dict:
    return lb_topology.load(lb_topology.load_file(str(PILLAR)))["pairs"]["edge"]


def _listener_name(pool: str) -> str:
    return next(lst["name"] for lst in _pair()["haproxy"]["listeners"].values() if lst["pool"] == pool)


def _with_server(text: str) -> str:
    anchor = "              http_srv-2: {address: 198.18.6.2, port: 80}\n"
    assert anchor in text, "pillar/lab/lb.sls changed: update this test's edit"
    return text.replace(anchor, anchor + f"              {NEW_SERVER}: {{address: {NEW_ADDRESS}, port: 80}}\n", 1)


def _push(text: str, message: str, options=()) -> subprocess.CompletedProcess:
    return pillar_repo.push({"lb.sls": text}, message, options=options)


def _servers(minion: str, backend: str) -> set[str]:
    ret = saltcfg.salt_json(minion, "haproxy_cfg.list_servers", f"backend={backend}")[minion]
    assert isinstance(ret, list), ret
    return {row["server"] for row in ret}


def _lb_files() -> dict[str, bytes]:
    out = {}
    for host in LBS:
        for rel in ("etc/haproxy/haproxy.cfg", "etc/keepalived/keepalived.conf"):
            path = state.HOSTS_DIR / host / rel
            out[f"{host}:/{rel}"] = path.read_bytes() if path.exists() else None
    return out


@pytest.fixture(scope="module")
def repo(lab):
    master_cfg = (saltcfg.MASTER_DIR / "master").read_text()
    if "ext_pillar" not in master_cfg or not pillar_repo.PILLAR_GIT.is_dir():
        pytest.skip("the running lab's master predates git_pillar (lab/saltcfg.py): take the lab down and up again")
    seed_head = pillar_repo.head()
    # both LBs run HAProxy and CARP from the served pillar, out of
    # maintenance; every VIP on one node (lb-a, unless a test before this
    # one left lb-a unable to hold them: the client goes where the VIP is)
    saltcfg.wait_for_minions(list(LBS), timeout=60)
    saltcfg.salt_json("-L", ",".join(LBS), "carp.unmaintenance", timeout=120)
    for minion in LBS:
        states = apply(minion, "carp,haproxy")
        failed = {k: v.get("comment") for k, v in states.items() if v.get("result") is False}
        assert not failed, (minion, failed)
    if not wait_for(lambda: all_on("lb-a"), SETTLE):
        assert wait_for(lambda: all(len(h) == 1 for h in holders().values()), SETTLE), holders()
        print(f"note: the VIPs are not all on lb-a: {holders()}")
    yield seed_head
    # whatever happened: the original pillar back on the branch, and applied
    done = _push(_plain(), "test_gitpillar_lab: the original pillar back")
    assert done.returncode == 0, done.stderr


class ClientLoop:
    """HTTP GETs through the VIP from the client host every ~20 ms, each on
    a new connection (2 s patience), until stopped (bounded by `limit`)."""

    def __init__(self, url: str, limit: float = 600):
        self.stop_file = LAB_DIR / f"gitpillar-client-stop-{os.getpid()}"
        self.stop_file.unlink(missing_ok=True)
        pid = control.host_pid("client")
        self.proc = subprocess.Popen(
            ["mnexec", "-a", str(pid), "python3", "-c", CLIENT_LOOP, url, str(self.stop_file), str(limit)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def finish(self) -> dict:
        self.stop_file.touch()
        try:
            out, err = self.proc.communicate(timeout=30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.stop_file.unlink(missing_ok=True)
        assert out.strip(), err
        return json.loads(out.strip().splitlines()[-1])


def _normal(data):
    """JSON's view (mapping keys as strings), as `salt --out=json` returns it."""
    return json.loads(json.dumps(data, default=str))


def test_the_master_serves_the_repository_with_its_secrets_decrypted(repo):
    import salt.config
    import salt.pillar

    served = pillar_repo.read("lb.sls")
    assert served.startswith(pillar_repo.SHEBANG)
    plain = yaml.safe_load(_plain())["lb"]
    secrets = lb_secrets.values(plain)
    assert secrets and not [s for s in secrets if s in served], "a secret is in clear text in the repository"
    # the minion's pillar: valid (a CARP password or hash still encrypted
    # would not be), and the same topology as pillar/lab; no secret is
    # fetched through a job (it would be in the job cache)
    assert saltcfg.salt_json("lb-a", "lb.validate")["lb-a"]["valid"] is True
    for key in ("nodes", "networks", "routes"):
        got = saltcfg.salt_json("lb-a", "pillar.get", f"lb:pairs:edge:{key}", "unmask=True")["lb-a"]
        assert got == _normal(plain["pairs"]["edge"][key]), key
    got = saltcfg.salt_json("lb-a", "pillar.get", "lb:pairs:edge:haproxy:pools", "unmask=True")["lb-a"]
    assert got == _normal(plain["pairs"]["edge"]["haproxy"]["pools"])
    # the master's pillar, compiled here with its own config (git_pillar's
    # checkout, the GPG renderer and key): every secret decrypted
    opts = salt.config.master_config(str(saltcfg.MASTER_DIR / "master"))
    pil = salt.pillar.Pillar(opts, {"id": "lb-a"}, "lb-a", None).compile_pillar()
    assert not pil.get("_errors"), pil.get("_errors")
    served_secrets = {p: v for p, _, v in lb_secrets.find(pil["lb"])}
    want = {p: v for p, _, v in lb_secrets.find(plain)}  # (the TLS key comes from .lab/pillar, not the repository)
    differ = sorted(p for p in want if served_secrets.get(p) != want[p])
    assert not differ, f"not decrypted to pillar/lab's value: {differ}"  # paths only: never print a secret


def test_a_pushed_backend_reaches_haproxy_on_both_nodes_with_no_failed_request(repo):
    backend = _listener_name(POOL)
    before = {m: _servers(m, backend) for m in LBS}
    assert all(NEW_SERVER not in s for s in before.values()), before
    loop = ClientLoop(f"http://{HTTP_VIP}/")
    try:
        time.sleep(2)  # the loop is running before the push
        t0 = time.time()
        done = _push(_with_server(_plain()), f"add {NEW_SERVER} to {POOL}")
        took = time.time() - t0
        time.sleep(2)  # and after it
    finally:
        result = loop.finish()
    out = done.stdout + done.stderr
    print(out)
    assert done.returncode == 0, out
    assert "pillar-gate:" in out and ": OK" in out, out
    assert "git_pillar.update: main file://" in out and "True" in out and "fatal:" not in out, out
    refreshed = re.search(r"saltutil.refresh_pillar: (\d+) minions refreshed", out)
    assert refreshed and int(refreshed.group(1)) >= len(LBS), out
    jobs = JOB_RE.findall(out)
    assert {m for m, *_ in jobs} == set(LBS), out
    assert all(mods == "haproxy" for _, mods, _, _ in jobs), out  # only the state the change touches
    assert [m for m, *_ in jobs] == ["lb-b", "lb-a"], out  # the BACKUP first
    for minion, _, jid, summary in jobs:
        assert " 0 failed" in summary, out
        job = salt_run("jobs.lookup_jid", jid)
        assert list(job) == [minion], job
        assert all(v["result"] for v in job[minion].values()), job
        assert any(v.get("changes") for k, v in job[minion].items() if "lb_haproxy_config" in k), job
    after = {m: _servers(m, backend) for m in LBS}
    for minion in LBS:
        assert after[minion] == before[minion] | {NEW_SERVER}, (minion, after)
    assert result["failed"] == 0, result
    assert result["ok"] > 50, result  # the loop ran through the whole change ({took:.0f} s)
    print(f"push to applied: {took:.1f} s; client: {result['ok']} OK, {result['failed']} failed")

    # and back: the original pushed, the server gone from both nodes
    done = _push(_plain(), f"remove {NEW_SERVER} from {POOL}")
    assert done.returncode == 0, done.stdout + done.stderr
    for minion in LBS:
        # the hook's own account of the push in the message: once (a
        # fresh-clone run) this push's hook applied nothing, and why was lost
        assert _servers(minion, backend) == before[minion], done.stdout + done.stderr


def _assert_rejected(text: str, message: str, *needles: str) -> str:
    head = pillar_repo.head()
    files = _lb_files()
    done = _push(text, message)
    out = done.stdout + done.stderr
    assert done.returncode != 0, out
    assert "pre-receive hook declined" in out, out
    for needle in needles:
        assert needle in out, (needle, out)
    assert "state.apply" not in out and "git_pillar.update" not in out, out  # post-receive never ran
    assert pillar_repo.head() == head
    assert _lb_files() == files, "a minion's file changed after a rejected push"
    return out


def test_a_broken_topology_is_rejected_at_the_push_with_its_pillar_path(repo):
    bad = _plain().replace("44: {interface: vip, vip: 198.18.2.44/24", "44: {interface: vip, vip: 198.18.9.44/24", 1)
    assert bad != _plain()
    out = _assert_rejected(bad, "a VIP outside its subnet", "lb:pairs:edge:carp:groups:44:vip", "198.18.9.44 is outside")
    print(out)


def test_a_config_only_haproxy_refuses_is_rejected_with_haproxys_message(repo):
    anchor = "          web_b:\n            kind: http\n"
    bad = _plain().replace(anchor, anchor + "            default_server: {resolvers: nosuchdns}\n", 1)
    assert bad != _plain()
    _assert_rejected(
        bad,
        "a resolvers section that does not exist",
        "haproxy -c rejects",
        "unable to find required resolvers 'nosuchdns'",
        "lb:pairs:edge:haproxy:pools:web_b:servers:",
    )


# ---------------------------------------------------------------------------
# the secret scan


def _mode_owner(path: Path) -> tuple[str, str, str]:
    st = path.stat()
    return f"{stat.S_IMODE(st.st_mode):04o}", pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name


# The files whose job is to hold a secret, with the mode and owners they
# must have (fnmatch patterns relative to .lab/): HAProxy's config (the
# stats users' password hashes; HAProxy's master reads it as root), the
# probe's option file (its MySQL password; read by the probe, run as
# clustercheck), ucarp's passfiles when a test left ucarp configured, the
# routing daemon's config (the BGP MD5 key; read by bird), the lab's own
# upstream BGP router (its side of the MD5 key: lab infrastructure, not a
# state's file), and the master's minion data cache (Salt keeps each
# minion's compiled pillar there, root only).
HOLDERS = {
    "hosts/lb-*/etc/haproxy/haproxy.cfg": ({"0640"}, "root", {"root"}),
    "hosts/db-*/etc/clustercheck/clustercheck.cnf": ({"0600"}, "clustercheck", {"clustercheck"}),
    "hosts/lb-*/run/lb-carp/ucarp/vhid-*.pass": ({"0600"}, "root", {"root"}),
    "hosts/lb-*/etc/bird/bird.conf": ({"0640", "0600"}, "root", {"bird", "root"}),
    "hosts/up1/bird.conf": ({"0600"}, "root", {"root"}),
    "master/cache/pillar/*.p": ({"0600"}, "root", {"root"}),
}
# Salt's own caches of compiled state data on a minion (root only): listed
# when found, with their modes; they must not be readable by others.
SALT_CACHE_RE = re.compile(r"^minions/[^/]+/cache/")
JOB_RE_DIR = re.compile(r"^(master/cache/jobs/[^/]+/[^/]+)/")
SKIP_PARTS = ("gpgkeys",)
MAX_SCAN = 256 << 20


def _job_fun(jid_dir: Path) -> str:
    import salt.payload

    try:
        with open(jid_dir / ".load.p", "rb") as fh:
            return str(salt.payload.load(fh).get("fun"))
    except (OSError, ValueError, AttributeError):
        return "?"


def _seeded_copy(rel: str, data: bytes) -> bool:
    """A file of a lab host's private directory that is byte for byte this
    machine's own file at that path: copied when the host was built
    (lab/supervisor.py, SEEDED_DIRS), not written in the lab."""
    parts = Path(rel).parts
    if len(parts) < 3 or parts[0] != "hosts":
        return False
    mine = Path("/", *parts[2:])
    try:
        return mine.is_file() and mine.read_bytes() == data
    except OSError:
        return False


def _scan_roots() -> list[Path]:
    return [LAB_DIR / "hosts", LAB_DIR / "master", LAB_DIR / "minions", LAB_DIR / "supervisor.log"]


def _files(root: Path):
    if root.is_file():
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in SKIP_PARTS]
        for name in filenames:
            path = Path(dirpath) / name
            if path.is_file() and not path.is_symlink():
                yield path


def _holder(rel: str):
    for pattern, want in HOLDERS.items():
        if fnmatch.fnmatch(rel, pattern):
            return pattern, want
    return None


class PsSampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.halt = threading.Event()
        self.lines: set[str] = set()
        self.samples = 0

    def run(self):
        end = time.monotonic() + 600
        while not self.halt.is_set() and time.monotonic() < end:
            out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, timeout=10).stdout
            self.lines.update(out.splitlines())
            self.samples += 1
            time.sleep(0.02)


def test_no_secret_in_clear_text_outside_the_files_that_hold_them(repo, lab):
    secrets = lb_secrets.values(yaml.safe_load(_plain())["lb"])
    assert len(secrets) >= 6, secrets
    needles = [s.encode() for s in secrets]

    # state runs (LB states and the probe) while ps is sampled
    sampler = PsSampler()
    sampler.start()
    try:
        for minion in LBS:
            apply(minion, "carp,haproxy")
        db = next(h.minion_id for h in lab.plan.hosts if h.minion_id and h.minion_id.startswith("db-"))
        apply(db, "clustercheck")
    finally:
        sampler.halt.set()
        sampler.join(timeout=10)
    assert sampler.samples > 10
    in_ps = sorted({line for line in sampler.lines for s in secrets if s in line})
    assert not in_ps, in_ps

    found, held, caches, seeded, pillar_reads = {}, {}, {}, [], set()
    for root in _scan_roots():
        for path in _files(root):
            rel = str(path.relative_to(LAB_DIR))
            try:
                if path.stat().st_size > MAX_SCAN:
                    continue
                data = path.read_bytes()
            except OSError:
                continue
            hits = [n.decode() for n in needles if n in data]
            if not hits:
                continue
            holder = _holder(rel)
            job = JOB_RE_DIR.match(rel)
            if holder:
                held[rel] = (holder, _mode_owner(path))
            elif SALT_CACHE_RE.match(rel):
                caches[rel] = _mode_owner(path)
            elif job and _job_fun(LAB_DIR / job.group(1)).startswith("pillar."):
                pillar_reads.add(job.group(1))  # a job whose function returns the pillar
            elif _seeded_copy(rel, data):
                seeded.append(rel)
            else:
                found[rel] = [f"{h[:3]}..." for h in hits]  # never print a secret
    if seeded:
        print(f"WARNING: this machine's own files hold a lab secret (copied into the hosts when the lab was built): {sorted(seeded)}")
    if pillar_reads:
        print(f"note: pillar.* jobs in the job cache return the pillar, secrets included: {sorted(pillar_reads)}")
    assert not found, f"secrets in clear text in: {found}"
    for rel, ((pattern, (modes, owner, groups)), got) in held.items():
        mode, user, group = got
        assert mode in modes and user == owner and group in groups, (rel, pattern, got)
    for rel, (mode, user, _) in caches.items():
        assert user == "root" and int(mode, 8) & 0o077 == 0, (rel, mode, user)
    # the files that must hold them do (the scan saw them)
    assert any(Path(r).match("hosts/lb-a/etc/haproxy/haproxy.cfg") for r in held), held
    assert any(Path(r).match("hosts/db-*/etc/clustercheck/clustercheck.cnf") for r in held), held
    print("secret holders:", {r: g for r, (_, g) in held.items()}, "salt caches:", caches)
