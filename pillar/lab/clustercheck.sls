# The Galera probe's per-minion settings in the lab (docs/clustercheck.md).
# The lab's database hosts share this machine's /var/lib, but each has its own
# /run: the maintenance file goes there, so draining db-1 drains db-1 only.
# (On real servers the default, /var/lib/clustercheck/maintenance, survives
# reboots; keep it.)
lb_settings:
  clustercheck:
    pair: edge
    maintenance_file: /run/clustercheck/maintenance
