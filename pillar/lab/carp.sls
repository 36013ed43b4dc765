# The lab's load balancers are Mininet hosts: their /var/lib, /etc/ucarp and
# /usr/local/sbin are this machine's, only /run (and a few others) are
# private.  The carp module keeps its state, scripts, pid files and ucarp
# passfiles under the host's own /run here, so lb-a and lb-b do not share
# them (docs/carp.md, "Paths").
lb_settings:
  carp:
    state_dir: /run/lb-carp/state
    script_dir: /run/lb-carp/sbin
    run_dir: /run/lb-carp/run
    ucarp_dir: /run/lb-carp/ucarp
