"""The lab's agentless path: an sshd in each load balancer and the salt-ssh
config and roster that reach them (docs/agentless.md).

`write_configs(plan)` (the supervisor calls it before it starts the sshds,
after `lab/saltcfg.py` wrote the master's config) writes, all under
.lab/ssh/ (0700) and nowhere else:

- `salt-ssh.key` (0600): the key salt-ssh logs in with, made at every `up`;
  `authorized_keys` holds it, usable only from the master's address.  That
  one file lives in `/var/lib/lb-pair-lab/<checkout hash>/` (root's, 0700):
  sshd's StrictModes refuses an authorized_keys file with a group- or
  world-writable directory anywhere above it, and a checkout may lie under
  /tmp (CI's clone, for one).  /var/lib, unlike /run, is the machine's own
  in every lab host (lab/supervisor.py), so each host's sshd sees it;
- `<host>/ssh_host_ed25519_key` and `<host>/sshd_config`: each sshd's own
  host key and config (never /etc/ssh/sshd_config, never /root/.ssh);
  `known_hosts` holds the host keys, so salt-ssh checks them;
- `master`: salt-ssh's config: the lab master's config (the same file
  roots, extension modules and pillar: `salt-ssh` applies the states the
  master applies) with its own cache, pki and log directories, and the
  repository as a module dir (for `_wrapper/`);
- `roster`: the pair's nodes from the lab pillar (`lb.roster`'s logic,
  `_utils/lb_roster.py`), each on its management address, with the lab's
  per-host options: a thin directory under the host's private /run, and a
  PATH of the system's directories only.

The Saltfile's `salt-ssh` section points at `.lab/ssh`, so from the repo root
`.venv/bin/salt-ssh 'lb*' state.apply` runs against the lab.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from lab import LAB_DIR, PILLAR, REPO
from lab.plan import Plan

sys.path.insert(0, str(REPO / "_utils"))
import lb_roster  # noqa: E402
import lb_topology  # noqa: E402

SSH_DIR = LAB_DIR / "ssh"
CONFIG = SSH_DIR / "master"  # salt-ssh -c .lab/ssh (the Saltfile says so)
CLIENT_KEY = SSH_DIR / "salt-ssh.key"
# not under the checkout: see the module's docstring
KEYS_DIR = Path("/var/lib/lb-pair-lab") / hashlib.sha256(str(REPO).encode()).hexdigest()[:12]
AUTHORIZED_KEYS = KEYS_DIR / "authorized_keys"
KNOWN_HOSTS = SSH_DIR / "known_hosts"
ROSTER = SSH_DIR / "roster"
SSHD = "/usr/sbin/sshd"
SSHD_PORT = 22
# On the target, in the host's private /run (lab/supervisor.py): salt-ssh's
# default, /var/tmp/.root_*_salt, is this machine's, shared by every host.
THIN_DIR = "/run/salt-ssh"
# The shim looks for python3 on PATH; root's login PATH on this machine
# starts with pyenv's shims, which salt-ssh cannot use.  In a lab host,
# /usr/local/{s,}bin are private and hold only the product's scripts.
SET_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PRIVSEP_DIR = "run/sshd"  # sshd's privilege separation directory, under the host's private tree

# The lab master's settings that salt-ssh gets its own copy of (the master
# runs meanwhile), and those that mean nothing to salt-ssh.
OWN_PATHS = {
    "root_dir": "",
    "pki_dir": "pki",
    "cachedir": "cache",
    "sock_dir": "run",
    "pidfile": "salt-ssh.pid",
    "log_file": "log",
    "key_logfile": "key.log",
    "ssh_log_file": "ssh.log",
}
MASTER_ONLY = ("interface", "reactor", "auto_accept", "worker_threads")


def ssh_hosts(plan: Plan) -> dict[str, str]:
    """{lab host: its management address}: the pair's nodes, as the
    roster addresses them (from the lab pillar), that are lab hosts."""
    model = lb_topology.load(lb_topology.load_file(str(PILLAR)))
    nodes = lb_roster.roster(model, pairs=plan.pair)
    names = {h.name for h in plan.hosts}
    return {node: entry["host"] for node, entry in nodes.items() if node in names}


def roster(plan: Plan) -> dict:
    """The lab's roster: lb.roster's entries plus the lab's options."""
    model = lb_topology.load(lb_topology.load_file(str(PILLAR)))
    hosts = ssh_hosts(plan)
    out = lb_roster.roster(
        model,
        pairs=plan.pair,
        user="root",
        port=SSHD_PORT,
        priv=str(CLIENT_KEY),
        identities_only=True,
        thin_dir=THIN_DIR,
        set_path=SET_PATH,
    )
    return {node: entry for node, entry in out.items() if node in hosts}


def salt_ssh_config(master: dict) -> dict:
    """salt-ssh's config from the lab master's: the same file roots, pillar
    (pillar_roots, ext_pillar, renderers' keys) and extension modules; its
    own cache, pki, logs; the lab's roster, key and known hosts."""
    cfg = {k: v for k, v in master.items() if k not in MASTER_ONLY and k not in OWN_PATHS}
    for key, rel in OWN_PATHS.items():
        cfg[key] = str(SSH_DIR / rel) if rel else str(SSH_DIR)
    cfg.update(
        {
            # _wrapper/lb.py (lb.roles where salt-ssh has the pillar):
            # salt-ssh's wrapper loader finds <module_dir>/_wrapper; it does
            # not pass wrapper_dirs on to the loader it runs a wrapper with
            "module_dirs": [str(REPO)],
            "roster_file": str(ROSTER),
            "ssh_priv": str(CLIENT_KEY),
            "ssh_user": "root",
            "ssh_identities_only": True,
            "known_hosts_file": str(KNOWN_HOSTS),
            "log_level_logfile": "warning",
        }
    )
    return cfg


def sshd_config(host: str, address: str) -> str:
    d = SSH_DIR / host
    return "\n".join(
        [
            f"# Written by lab/sshcfg.py for the lab host {host}: lab-only, read with sshd -f.",
            f"ListenAddress {address}:{SSHD_PORT}",
            f"HostKey {d / 'ssh_host_ed25519_key'}",
            f"AuthorizedKeysFile {AUTHORIZED_KEYS}",
            "AllowUsers root",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes yes",
            "PidFile none",
            "PermitUserEnvironment no",
            "X11Forwarding no",
            "AllowTcpForwarding no",
            "AllowAgentForwarding no",
            "PermitTunnel no",
            "PrintMotd no",
            "PrintLastLog no",
            "UseDNS no",
            # salt-ssh sends the thin and the state tarball with scp, which
            # speaks SFTP (OpenSSH 9)
            "Subsystem sftp internal-sftp",
            "LogLevel INFO",
            "",
        ]
    )


def write_configs(plan: Plan) -> None:
    """Keys, sshd configs, known hosts, salt-ssh's config and roster (all
    new at every `up`; an earlier lab's keys are dropped)."""
    shutil.rmtree(SSH_DIR, ignore_errors=True)
    SSH_DIR.mkdir(mode=0o700, parents=True)
    SSH_DIR.chmod(0o700)
    remove_keys()
    KEYS_DIR.parent.mkdir(mode=0o755, exist_ok=True)
    KEYS_DIR.mkdir(mode=0o700)
    _keygen(CLIENT_KEY, "salt-ssh@lab")
    client_pub = CLIENT_KEY.with_suffix(".key.pub").read_text().strip()
    _write(AUTHORIZED_KEYS, f'restrict,from="{plan.master_ip}" {client_pub}\n', 0o600)
    known = []
    hosts = ssh_hosts(plan)
    for host, address in hosts.items():
        d = SSH_DIR / host
        d.mkdir(mode=0o700)
        key = d / "ssh_host_ed25519_key"
        _keygen(key, f"{host}@lab")
        pub = " ".join(key.with_suffix(".pub").read_text().split()[:2])
        known.append(f"{address} {pub}")
        _write(d / "sshd_config", sshd_config(host, address), 0o600)
    _write(KNOWN_HOSTS, "\n".join(known) + "\n", 0o600)
    _write(ROSTER, "# Written by lab/sshcfg.py from the lab pillar (lb.roster).\n" + _yaml(roster(plan)), 0o600)
    write_salt_ssh_config()


def remove_keys() -> None:
    """The authorized_keys directory of this checkout's lab (at `down`)."""
    shutil.rmtree(KEYS_DIR, ignore_errors=True)


def write_salt_ssh_config() -> None:
    """salt-ssh's config from the lab master's, as it is now (keys, roster
    and sshds untouched: safe on a running lab)."""
    from lab import saltcfg

    master = yaml.safe_load((saltcfg.MASTER_DIR / "master").read_text())
    _write(CONFIG, "# Written by lab/sshcfg.py from the lab master's config.\n" + _yaml(salt_ssh_config(master)), 0o600)


def sshd_command(host: str) -> list[str]:
    """sshd in the foreground (-D), logging to stderr (-e): a supervisor daemon."""
    return [SSHD, "-D", "-e", "-f", str(SSH_DIR / host / "sshd_config")]


def prepare_host(host_dir: Path) -> None:
    """sshd's privilege separation directory in the host's private /run
    (`host_dir` is .lab/hosts/<host>): root's, 0755, as sshd requires."""
    path = host_dir / PRIVSEP_DIR
    path.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chown(path, 0, 0)
    path.chmod(0o755)


def _keygen(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True, capture_output=True, timeout=30
    )
    path.chmod(0o600)


def _write(path: Path, text: str, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    path.chmod(mode)


def _yaml(data) -> str:
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=False)
