{#- lb/... events (split brain, heal, demotion): recorded on the master. #}
lb_record_event:
  runner.lb.record:
    - args:
      - tag: {{ tag }}
      - data: {{ data | json }}
