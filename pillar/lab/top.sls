# The lab's master serves the lab's pair to every lab minion.  carp.sls:
# the carp module's paths for a load balancer that is a Mininet host (it
# shares this machine's filesystem; lab/saltcfg.py gives its minion the
# grain), not for a booted one (`python -m lab up --booted`: its own root).
base:
  '*':
    - lb
  'db-*':
    - clustercheck
  'lb-* and G@lab_root:shared':
    - match: compound
    - carp
