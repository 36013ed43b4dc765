{#- Every CARP event: recorded on the master (salt-run lb.history), and the
    node's pair checked for a split brain (lb.transition, _runners/lb.py). #}
lb_carp_transition:
  runner.lb.transition:
    - args:
      - tag: {{ tag }}
      - data: {{ data | json }}
