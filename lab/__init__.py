"""The lab: the seed's network on this machine (Mininet), with a real salt-master
and salt-minions.  `python -m lab up|down|status|exec`; see lab/README.md."""

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LAB_DIR = REPO / ".lab"
MASTER_DIR = LAB_DIR / "master"  # the lab salt-master's root (lab/saltcfg.py), its GPG keys (lab/pillar_repo.py)
PILLAR = REPO / "pillar" / "lab" / "lb.sls"
BIN = Path(sys.prefix) / "bin"  # the venv's salt-master, salt-minion, salt ...
